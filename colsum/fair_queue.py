"""The fair queue: what decides which client's task enters RabbitMQ's queue next.

RabbitMQ's queue is first in, first out: a client that submits a thousand big files would
make every other client wait behind all of them. So the queue is kept a short buffer, and
tasks wait in Redis instead, in one backlog per client:

- `backlog:<client>` holds the client's queued tasks, its `high` ones first, then `normal`,
  then `low`, each in the order they came.
- `backlogs` holds the clients with a non-empty backlog, scored by their virtual time.
- A task leaves its backlog (it is *dispatched*: put in the outbox, then published, or
  claimed at once by the executor whose task just ended) only while fewer than W tasks are
  dispatched or running, W being one per live executor (`DISPATCH_WINDOW` overrides it):
  the queue never holds more than the executors can take.
- The task dispatched is the head of the backlog of the client with the smallest virtual
  time: start-time fair queuing. Each client's virtual time advances by the task's cost (its
  bytes) over the client's weight; a client coming back after a pause starts at the global
  virtual time `vtime`, so idling earns no credit. Bytes are known only once a task has
  run: a task is charged the client's average so far when dispatched, and the difference
  when it finishes, so the shares are those of the bytes actually read.

A client alone gets the whole pool; two clients of equal weight get half each; priorities
reorder a client's own backlog, never its share. Dispatching is one Lua function, run in
the scripts that create a task and record its result, and on its own after any other end
of a task, when an executor starts or idles, and by the sweeper, so that no task waits on
an event that was lost. A dispatcher that dies between the script and the publish (or the
claim) leaves the task in the outbox, which the sweeper publishes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from colsum.errors import StoreUnavailable

log = logging.getLogger(__name__)

# Backlog order within a client: the priority's rank, then the task's sequence number.
RANKS = {"high": 0, "normal": 1, "low": 2}
RANK_SPAN = 2**40  # above any sequence number; rank * span + seq stays exact in a double

# The cost charged for a client's first task, before any of its tasks has been measured.
FIRST_ESTIMATE = 1 << 20

# Lua shared by the store's scripts. Virtual times are stored with 17 digits: Redis turns a
# Lua number into a string with 14, which would round them once they pass 1e14 bytes.
LUA = """
local function fmt(x) return string.format('%.17g', x) end

local function weight(prefix, client)
  local w = tonumber(redis.call('HGET', prefix .. 'client:' .. client, 'weight') or '1')
  if not w or w <= 0 then return 1 end
  return w
end

-- Puts a queued task in its client's backlog; a client that had none starts at the
-- global virtual time, or where its own stands if that is later.
local function enqueue(prefix, client, id, score)
  redis.call('ZADD', prefix .. 'backlog:' .. client, score, id)
  if not redis.call('ZSCORE', prefix .. 'backlogs', client) then
    local v = tonumber(redis.call('GET', prefix .. 'vtime') or '0')
    local f = tonumber(redis.call('HGET', prefix .. 'fair:' .. client, 'finish') or '0')
    redis.call('ZADD', prefix .. 'backlogs', fmt(math.max(v, f)), client)
  end
end

-- Takes a task out of its backlog and the dispatched set, wherever it is: it was claimed,
-- cancelled or finished. (A record from before clients has no client, nor a backlog.)
local function unqueue(prefix, client, id)
  redis.call('ZREM', prefix .. 'dispatched', id)
  if not client then return end
  local backlog = prefix .. 'backlog:' .. client
  if redis.call('ZREM', backlog, id) == 1 and redis.call('ZCARD', backlog) == 0 then
    redis.call('ZREM', prefix .. 'backlogs', client)
  end
end

-- Once a task is finished: charges its client the bytes it read instead of the estimate
-- it was dispatched with, and learns the client's average task.
local function settle(prefix, client, task)
  local cost = tonumber(redis.call('HGET', task, 'cost') or '')
  if not cost then return end
  redis.call('HDEL', task, 'cost')
  local read = redis.call('HMGET', task, 'bytes_read', 'bytes_total')
  local actual = tonumber(read[1] or read[2] or '0') or 0
  local fair = prefix .. 'fair:' .. client
  local f = tonumber(redis.call('HGET', fair, 'finish') or '0')
  f = f + (actual - cost) / weight(prefix, client)
  redis.call('HSET', fair, 'finish', fmt(f))
  if actual > 0 then
    local avg = tonumber(redis.call('HGET', fair, 'avg') or '')
    redis.call('HSET', fair, 'avg', fmt(avg and (avg + actual) / 2 or actual))
  end
  if redis.call('ZSCORE', prefix .. 'backlogs', client) then
    redis.call('ZADD', prefix .. 'backlogs', fmt(f), client)
  end
end

-- Moves tasks from the backlogs to the outbox while fewer than the window are dispatched
-- or running; returns their ids, for the caller to publish. `window` 0: one per executor
-- that beat within `ttl` seconds (at least one, so that a task is never held back for
-- want of an executor that has not registered yet).
local function dispatch(prefix, now, window, ttl, estimate)
  local room = tonumber(window)
  if room <= 0 then
    room = math.max(1, redis.call('ZCOUNT', prefix .. 'executors', now - ttl, '+inf'))
  end
  local busy = redis.call('ZCARD', prefix .. 'dispatched')
             + redis.call('ZCARD', prefix .. 'status:running')
  local out = {}
  if busy >= room then return out end
  local v = tonumber(redis.call('GET', prefix .. 'vtime') or '0')
  while busy < room do
    local head = redis.call('ZRANGE', prefix .. 'backlogs', 0, 0, 'WITHSCORES')
    if #head == 0 then break end
    local client, f = head[1], tonumber(head[2])
    local backlog = prefix .. 'backlog:' .. client
    local id = redis.call('ZRANGE', backlog, 0, 0)[1]
    if id then
      redis.call('ZREM', backlog, id)
      local task = prefix .. 'task:' .. id
      if redis.call('HGET', task, 'status') == 'queued' then
        local fair = prefix .. 'fair:' .. client
        local cost = tonumber(redis.call('HGET', fair, 'avg') or estimate)
        local start = math.max(v, f)
        v = start
        f = start + cost / weight(prefix, client)
        redis.call('HSET', task, 'cost', fmt(cost), 'dispatched_at', now)
        redis.call('HSET', fair, 'finish', fmt(f))
        redis.call('ZADD', prefix .. 'dispatched', now, id)
        redis.call('ZADD', prefix .. 'outbox', now, id)
        out[#out + 1] = id
        busy = busy + 1
      end
    end
    if redis.call('ZCARD', backlog) == 0 then
      redis.call('ZREM', prefix .. 'backlogs', client)
    else
      redis.call('ZADD', prefix .. 'backlogs', fmt(f), client)
    end
  end
  redis.call('SET', prefix .. 'vtime', fmt(v))
  return out
end
"""


def backlog_score(priority: str, seq: int) -> int:
    return RANKS[priority] * RANK_SPAN + seq


def publish_all(
    task_ids: Iterable[str], publish: Callable[[str], None], published: Callable[[str], None]
) -> None:
    """Publish dispatched tasks in order, each marked published once RabbitMQ confirmed it.

    A publish that fails raises; the tasks not yet published stay in the outbox, where the
    sweeper finds them after OUTBOX_GRACE, so none is lost."""
    for task_id in task_ids:
        publish(task_id)
        try:
            published(task_id)
        except StoreUnavailable as error:  # it is queued: the sweeper's duplicate is harmless
            log.warning("task %s is published but stays in the outbox (%s)", task_id, error)
