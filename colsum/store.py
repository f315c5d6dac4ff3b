"""The task store in Redis: one hash per task, and sorted sets that index the tasks.

Every task gets a sequence number when it is created. `tasks` holds all of them and
`status:<status>` those in each status, scored by that number: newest first is a reverse
range, a page ends where the next begins, and the active count is two ZCARDs. Every status
change is one Lua script, so a record's status and the indexes can never disagree, and a
change that comes twice (a redelivered message) is a no-op the second time. Finishing
publishes on `finished:<id>` for clients that wait. Each client has the same indexes of
its own (`by-client:<client>:...`), and queued tasks wait in their client's backlog until
the fair queue dispatches them (colsum.fair_queue).
"""

from __future__ import annotations

import functools
import os
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

import redis
from redis.commands.core import Script

from colsum import fair_queue, jsoncodec
from colsum.errors import StoreUnavailable, TooManyQueued
from colsum.settings import Settings
from colsum.task import Task, TaskStatus, now

P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True)
class Keys:
    """Every Redis key Colsum uses, under one prefix."""

    prefix: str

    def task(self, task_id: str) -> str:
        return f"{self.prefix}task:{task_id}"

    def status(self, status: TaskStatus | str) -> str:
        return f"{self.prefix}status:{status}"

    @property
    def tasks(self) -> str:
        return f"{self.prefix}tasks"

    @property
    def sequence(self) -> str:
        return f"{self.prefix}sequence"

    def lease(self, task_id: str) -> str:
        """Exists while the executor holding the task is alive: it renews it as it works."""
        return f"{self.prefix}lease:{task_id}"

    @property
    def outbox(self) -> str:
        """Tasks recorded but not yet confirmed by RabbitMQ, scored by creation time."""
        return f"{self.prefix}outbox"

    @property
    def sweeper(self) -> str:
        return f"{self.prefix}sweeper"

    def finished(self, task_id: str) -> str:
        """The pub/sub channel told when a task finishes."""
        return f"{self.prefix}finished:{task_id}"

    @property
    def executors(self) -> str:
        """Live executors, scored by their last heartbeat."""
        return f"{self.prefix}executors"

    def executor(self, name: str) -> str:
        return f"{self.prefix}executor:{name}"

    @property
    def webhooks(self) -> str:
        """Finished tasks whose record is to be POSTed to their callback_url, by due time."""
        return f"{self.prefix}webhooks"

    @property
    def prune(self) -> str:
        """Where the sweeper's pruning walks have got to: a hash, one field per walk."""
        return f"{self.prefix}prune"

    def client_tasks(self, client: str) -> str:
        """A client's tasks, as `tasks` holds everyone's."""
        return f"{self.prefix}by-client:{client}:tasks"

    def client_status(self, client: str, status: TaskStatus | str) -> str:
        return f"{self.prefix}by-client:{client}:status:{status}"

    @property
    def indexed_clients(self) -> str:
        """The clients that have indexes of their own, for the sweeper to prune."""
        return f"{self.prefix}indexed-clients"

    def backlog(self, client: str) -> str:
        """A client's queued tasks not yet dispatched (colsum.fair_queue)."""
        return f"{self.prefix}backlog:{client}"

    @property
    def backlogs(self) -> str:
        """Clients with a backlog, by virtual time (colsum.fair_queue)."""
        return f"{self.prefix}backlogs"

    @property
    def dispatched(self) -> str:
        """Tasks dispatched to the queue and not yet claimed, by dispatch time."""
        return f"{self.prefix}dispatched"

    def part(self, part_id: str) -> str:
        """A part of a split task (`<task id>:<index>`, executor/split.py)."""
        return f"{self.prefix}part:{part_id}"

    @property
    def parts(self) -> str:
        """Parts not finished yet, for the sweeper to find those whose executor vanished."""
        return f"{self.prefix}parts"

    def record(self, task_id: str) -> str:
        """The hash of a task or of a part."""
        return self.part(task_id) if part_of(task_id) else self.task(task_id)


def part_id(task_id: str, index: int) -> str:
    """The id of a split task's part: its messages carry it in place of a task id."""
    return f"{task_id}:{index}"


def part_of(some_id: str) -> tuple[str, int] | None:
    """(task id, index) for a part's id; None for a task's."""
    task_id, colon, index = some_id.partition(":")
    return (task_id, int(index)) if colon and index.isdigit() else None


def owner(some_id: str) -> str:
    """The task an id belongs to: itself, or a part's task."""
    part = part_of(some_id)
    return part[0] if part else some_id


# Shared by the scripts: a status change moves the task between the indexes, everyone's
# and its client's (a record older than clients has none).
_LUA_MOVE = """
local function move(prefix, id, from, to, seq, client)
  redis.call('ZREM', prefix .. 'status:' .. from, id)
  redis.call('ZADD', prefix .. 'status:' .. to, seq, id)
  if client then
    local mine = prefix .. 'by-client:' .. client .. ':status:'
    redis.call('ZREM', mine .. from, id)
    redis.call('ZADD', mine .. to, seq, id)
  end
end
"""

# The scripts that may dispatch take, after their own ARGV: now (unix s), window, executor
# ttl (s), first estimate (bytes): `TaskStore._dispatch_args`.

# KEYS: task. ARGV: id, created (unix s), prefix, client, priority rank, most queued
# tasks the client may have (0: any), the dispatch arguments, then field, value, ...
# `queued_ts` (unix s) tells the sweeper how long a queued record has waited. Returns the
# tasks dispatched (maybe this one, maybe others), or -1 if the client has too many queued.
_CREATE = (
    fair_queue.LUA
    + """
local id, prefix, client = ARGV[1], ARGV[3], ARGV[4]
local mine = prefix .. 'by-client:' .. client .. ':'
local most = tonumber(ARGV[6])
if most > 0 and redis.call('ZCARD', mine .. 'status:queued') >= most then return -1 end
local seq = redis.call('INCR', prefix .. 'sequence')
redis.call('HSET', KEYS[1], 'seq', seq, 'queued_ts', ARGV[2], unpack(ARGV, 11))
redis.call('ZADD', prefix .. 'tasks', seq, id)
redis.call('ZADD', prefix .. 'status:queued', seq, id)
redis.call('ZADD', mine .. 'tasks', seq, id)
redis.call('ZADD', mine .. 'status:queued', seq, id)
redis.call('SADD', prefix .. 'indexed-clients', client)
enqueue(prefix, client, id, tonumber(ARGV[5]) * """
    + str(fair_queue.RANK_SPAN)
    + """ + seq)
return dispatch(prefix, tonumber(ARGV[7]), ARGV[8], tonumber(ARGV[9]), ARGV[10])
"""
)

# ARGV: prefix, then the dispatch arguments. Dispatches what there is room for.
_DISPATCH = (
    fair_queue.LUA
    + """
return dispatch(ARGV[1], tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4]), ARGV[5])
"""
)

# KEYS: task. ARGV: id, prefix. Forgets a task that was never published.
_DISCARD = (
    fair_queue.LUA
    + """
local client = redis.call('HGET', KEYS[1], 'client')
local prefix = ARGV[2]
redis.call('DEL', KEYS[1])
for _, index in ipairs({'tasks', 'status:queued', 'outbox'}) do
  redis.call('ZREM', prefix .. index, ARGV[1])
end
if client then
  redis.call('ZREM', prefix .. 'by-client:' .. client .. ':tasks', ARGV[1])
  redis.call('ZREM', prefix .. 'by-client:' .. client .. ':status:queued', ARGV[1])
end
unqueue(prefix, client, ARGV[1])
return 0
"""
)

# KEYS: task. ARGV: id, started_at, executor, attempt, lease ms, prefix, then the ids of
# tasks published, to take out of the outbox.
# Returns the record when the caller now holds the task; else its status (nil if unknown),
# or {'held', holder, lease ms left} while another executor's lease on it lasts. Taking
# the task clears `republished_at`: should this claimant vanish too, the sweeper may
# publish the task again at once.
_CLAIM = (
    fair_queue.LUA
    + _LUA_MOVE
    + """
local prefix = ARGV[6]
if #ARGV > 6 then redis.call('ZREM', prefix .. 'outbox', unpack(ARGV, 7)) end
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return nil end
if status ~= 'queued' and status ~= 'running' then return status end
local lease = prefix .. 'lease:' .. ARGV[1]
local holder = redis.call('GET', lease)
if holder and holder ~= ARGV[3] then return {'held', holder, redis.call('PTTL', lease)} end
redis.call('HSET', KEYS[1], 'status', 'running', 'started_at', ARGV[2],
           'executor', ARGV[3], 'attempt', ARGV[4])
redis.call('HDEL', KEYS[1], 'republished_at')
local client = redis.call('HGET', KEYS[1], 'client')
move(prefix, ARGV[1], status, 'running', redis.call('HGET', KEYS[1], 'seq'), client)
unqueue(prefix, client, ARGV[1])
redis.call('ZREM', prefix .. 'outbox', ARGV[1])
redis.call('SET', lease, ARGV[3], 'PX', ARGV[5])
return redis.call('HGETALL', KEYS[1])
"""
)

# KEYS: task. ARGV: id, status, finished_at, seconds to keep the record, prefix, holder,
# '1' to dispatch then what its place lets in, the dispatch arguments, then field,
# value, ... Returns the status the task had if it was active (queued or running) and is
# now finished, followed by the tasks dispatched; else false. A `holder` (an executor; ''
# for anyone) may finish only a running task claimed by it whose lease no other executor
# has taken: an executor that lost its task never overwrites the outcome of the one that
# took it over.
_FINISH = (
    fair_queue.LUA
    + _LUA_MOVE
    + """
local status = redis.call('HGET', KEYS[1], 'status')
if status ~= 'queued' and status ~= 'running' then return false end
local prefix = ARGV[5]
if ARGV[6] ~= '' then
  if status ~= 'running' or redis.call('HGET', KEYS[1], 'executor') ~= ARGV[6] then
    return false
  end
  local lease = redis.call('GET', prefix .. 'lease:' .. ARGV[1])
  if lease and lease ~= ARGV[6] then return false end
end
redis.call('HSET', KEYS[1], 'status', ARGV[2], 'finished_at', ARGV[3], unpack(ARGV, 12))
redis.call('EXPIRE', KEYS[1], ARGV[4])
local client = redis.call('HGET', KEYS[1], 'client')
move(prefix, ARGV[1], status, ARGV[2], redis.call('HGET', KEYS[1], 'seq'), client)
unqueue(prefix, client, ARGV[1])
if client then settle(prefix, client, KEYS[1]) end
redis.call('DEL', prefix .. 'lease:' .. ARGV[1])
redis.call('ZREM', prefix .. 'outbox', ARGV[1])
redis.call('PUBLISH', prefix .. 'finished:' .. ARGV[1], ARGV[2])
if redis.call('HEXISTS', KEYS[1], 'callback_url') == 1 then
  local now = redis.call('TIME')
  redis.call('HSET', KEYS[1], 'webhook_status', 'pending', 'webhook_attempts', 0)
  redis.call('ZADD', prefix .. 'webhooks', tonumber(now[1]) + tonumber(now[2]) / 1e6, ARGV[1])
end
local out = {status}
if ARGV[7] == '1' then
  for _, id in ipairs(dispatch(prefix, tonumber(ARGV[8]), ARGV[9], tonumber(ARGV[10]), ARGV[11])) do
    out[#out + 1] = id
  end
end
return out
"""
)

# KEYS: webhooks. ARGV: now, seconds a claim lasts, prefix. Takes the first due delivery,
# and puts it back for later in case the claimant dies before it is done. A delivery
# whose record expired is dropped on the way: nothing is left to deliver.
_CLAIM_WEBHOOK = """
for _ = 1, 100 do
  local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 1)[1]
  if not due then return false end
  if redis.call('EXISTS', ARGV[3] .. 'task:' .. due) == 1 then
    redis.call('ZADD', KEYS[1], ARGV[1] + ARGV[2], due)
    return due
  end
  redis.call('ZREM', KEYS[1], due)
end
return false
"""

# KEYS: task, webhooks. ARGV: id, retry at (unix s, '' when settled), field, value, ...
# Records a delivery attempt only while the record exists: an HSET on an expired record
# would create a hash without id or TTL, which no page could show.
_WEBHOOK_TRIED = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('ZREM', KEYS[2], ARGV[1])
  return 0
end
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
if ARGV[2] == '' then
  redis.call('ZREM', KEYS[2], ARGV[1])
else
  redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
end
return 1
"""

# KEYS: task. ARGV: executor, then field, value, ... Records progress while the task runs
# on this executor; returns the status, so that the executor learns of a cancellation in
# the same round trip, or 'lost' if another executor has taken the task over.
_PROGRESS = """
local status = redis.call('HGET', KEYS[1], 'status')
if status ~= 'running' then return status end
if redis.call('HGET', KEYS[1], 'executor') ~= ARGV[1] then return 'lost' end
-- Split: its parts count its progress (the executor that split it may report once more).
local split = redis.call('HMGET', KEYS[1], 'parts_total', 'unsplit')
if split[1] and not split[2] then return status end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
return status
"""

# KEYS: lease, task. ARGV: executor, lease ms. Renews the lease while this executor holds
# it, or takes it back if it lapsed (Redis was unreachable for a while) and nobody claimed
# the task since; 0 when the task is no longer this executor's to run.
_RENEW = """
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] or (not holder and redis.call('HGET', KEYS[2], 'status') == 'running'
                         and redis.call('HGET', KEYS[2], 'executor') == ARGV[1]) then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""

# KEYS: task, lease. ARGV: executor. Gives up this executor's lease, so that whoever gets
# the task's message next takes it over at once instead of waiting for the lease to lapse.
_RELEASE = """
if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
return 0
"""

# KEYS: status:running. ARGV: prefix, now (unix s), grace (s), at most.
# Running tasks whose lease lapsed (their executor is gone), each once per `grace`: the
# mark is cleared when the task is claimed again.
_ABANDONED = """
local found = {}
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  if #found >= tonumber(ARGV[4]) then break end
  local task = ARGV[1] .. 'task:' .. id
  -- A split task has no lease of its own while its parts run: they have theirs.
  local split = redis.call('HMGET', task, 'parts_total', 'unsplit')
  if redis.call('EXISTS', ARGV[1] .. 'lease:' .. id) == 0 and redis.call('EXISTS', task) == 1
     and (not split[1] or split[2]) then
    local marked = tonumber(redis.call('HGET', task, 'republished_at') or '0')
    if tonumber(ARGV[2]) - marked >= tonumber(ARGV[3]) then
      redis.call('HSET', task, 'republished_at', ARGV[2])
      table.insert(found, id)
    end
  end
end
return found
"""

# KEYS: dispatched. ARGV: prefix, now (unix s), grace (s), at most, how many to look at.
# The tasks dispatched longest ago, still queued, that waited longer than `grace` since
# they were dispatched or last published again, marked as published now.
_STALE_QUEUED = """
local found = {}
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[5]) - 1)) do
  if #found >= tonumber(ARGV[4]) then break end
  local task = ARGV[1] .. 'task:' .. id
  local fields = redis.call('HMGET', task, 'status', 'dispatched_at', 'republished_at')
  if fields[1] == 'queued' and redis.call('ZSCORE', ARGV[1] .. 'outbox', id) == false then
    local since = math.max(tonumber(fields[2] or '0'), tonumber(fields[3] or '0'))
    if tonumber(ARGV[2]) - since >= tonumber(ARGV[3]) then
      redis.call('HSET', task, 'republished_at', ARGV[2])
      table.insert(found, id)
    end
  end
end
return found
"""

# KEYS: an index (a sorted set of task ids), the prune hash. ARGV: prefix, at most, the
# latest queued_ts a record can have and be expired (now - RECORD_TTL).
# Walks the index from where the last walk stopped (a rank), dropping ids whose record is
# gone (expired; a hash without an id, left by an old client, is deleted with it), `at
# most` entries per call. Indexes run from old to new, so the walk starts over at the
# first record too young to have expired, and at the end: it covers the entries that may
# have expired, with bounded work per call. Returns how many were dropped.
_PRUNE = """
local start = tonumber(redis.call('HGET', KEYS[2], KEYS[1]) or '0')
local limit = tonumber(ARGV[2])
local ids = redis.call('ZRANGE', KEYS[1], start, start + limit - 1)
local dropped, over = 0, #ids < limit
for _, id in ipairs(ids) do
  local task = ARGV[1] .. 'task:' .. id
  local fields = redis.call('HMGET', task, 'id', 'queued_ts')
  if not fields[1] then
    redis.call('DEL', task)
    redis.call('ZREM', KEYS[1], id)
    dropped = dropped + 1
  elseif tonumber(fields[2] or '0') > tonumber(ARGV[3]) then
    over = true
    break
  end
end
if over then
  redis.call('HDEL', KEYS[2], KEYS[1])
else
  redis.call('HSET', KEYS[2], KEYS[1], start + limit - dropped)
end
return dropped
"""


# Split tasks (executor/split.py). A task's record gains `split` (its header's lessons),
# `parts_total`, `parts_done`, `parts_failed`, `parts_executors` (space-separated) and,
# once it is to be summed again as one stream, `unsplit`. Each part has a hash
# `part:<task>:<index>` (status queued, running, done or failed; start, end, first) and a
# lease like a task's. A part counts into its task's bytes_read and rows_read what it
# reported beyond its last report, so a part run again takes back the bytes and rows it
# had counted, and adds the attempts and resumes its reads cost again.

# KEYS: task. ARGV: id, prefix, executor, now (unix s), seconds to keep the parts, split,
# bytes_total, bytes_read, attempts, resumes, then start, end of each part. Splits a
# running task its caller holds, once; the part ids, put in the outbox, to be published;
# false if not the caller's to split.
_SPLIT = """
local task, id, prefix, executor = KEYS[1], ARGV[1], ARGV[2], ARGV[3]
local fields = redis.call('HMGET', task, 'status', 'executor', 'parts_total')
if fields[1] ~= 'running' or fields[2] ~= executor or fields[3] then return false end
local lease = prefix .. 'lease:' .. id
local holder = redis.call('GET', lease)
if holder and holder ~= executor then return false end
local total = (#ARGV - 10) / 2
redis.call('HSET', task, 'split', ARGV[6], 'parts_total', total, 'parts_done', 0,
           'parts_failed', 0, 'parts_executors', '', 'bytes_total', ARGV[7],
           'bytes_read', ARGV[8], 'rows_read', 0, 'attempts', ARGV[9], 'resumes', ARGV[10])
local ids = {}
for k = 0, total - 1 do
  local part_id = id .. ':' .. k
  local part = prefix .. 'part:' .. part_id
  redis.call('DEL', part)
  redis.call('HSET', part, 'status', 'queued', 'start', ARGV[11 + 2 * k],
             'end', ARGV[12 + 2 * k], 'first', k == 0 and 1 or 0)
  redis.call('EXPIRE', part, ARGV[5])
  redis.call('ZADD', prefix .. 'outbox', ARGV[4], part_id)
  redis.call('ZADD', prefix .. 'parts', ARGV[4], part_id)
  ids[#ids + 1] = part_id
end
redis.call('DEL', lease)
return ids
"""

# Shared by the part scripts: the task's status while its parts may run ('running'), or
# what it is instead; and the accounting of a part's progress into its task's.
_LUA_PARTS = """
local function split_status(task)
  local fields = redis.call('HMGET', task, 'status', 'unsplit')
  if fields[1] == 'running' and fields[2] then return 'unsplit' end
  return fields[1]
end

local function holds(part, lease, executor)
  if redis.call('HGET', part, 'status') ~= 'running' then return false end
  if redis.call('HGET', part, 'executor') ~= executor then return false end
  local holder = redis.call('GET', lease)
  return not holder or holder == executor
end

-- `read`: bytes_read, rows_read, attempts, resumes as ARGV strings, from `at` on.
local function account(part, task, at)
  local range = redis.call('HMGET', part, 'start', 'end')
  local span = tonumber(range[2]) - tonumber(range[1])
  local names = {'bytes_read', 'rows_read', 'attempts', 'resumes'}
  local before = redis.call('HMGET', part, unpack(names))
  for i, name in ipairs(names) do
    local now = tonumber(ARGV[at + i - 1])
    if name == 'bytes_read' then now = math.min(now, span) end
    redis.call('HINCRBY', task, name, now - tonumber(before[i] or '0'))
    redis.call('HSET', part, name, now)
  end
end
"""

# KEYS: part, task. ARGV: part id, executor, lease ms, prefix. As _CLAIM for a part:
# {'claimed', part record, task record}; 'finished' if the part is (its task may wait for
# its merge); {'held', holder, ms left}; or nil when the task no longer runs its parts.
_CLAIM_PART = (
    _LUA_PARTS
    + """
if split_status(KEYS[2]) ~= 'running' then return nil end
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return nil end
if status == 'done' or status == 'failed' then return 'finished' end
local lease = ARGV[4] .. 'lease:' .. ARGV[1]
local holder = redis.call('GET', lease)
if holder and holder ~= ARGV[2] then return {'held', holder, redis.call('PTTL', lease)} end
-- A new run's reads cost attempts anew; its bytes and rows replace the last run's.
redis.call('HSET', KEYS[1], 'status', 'running', 'executor', ARGV[2], 'attempts', 0, 'resumes', 0)
redis.call('HDEL', KEYS[1], 'republished_at')
redis.call('SET', lease, ARGV[2], 'PX', ARGV[3])
redis.call('ZREM', ARGV[4] .. 'outbox', ARGV[1])
local who = redis.call('HGET', KEYS[2], 'parts_executors') or ''
if not string.find(' ' .. who .. ' ', ' ' .. ARGV[2] .. ' ', 1, true) then
  redis.call('HSET', KEYS[2], 'parts_executors', who == '' and ARGV[2] or who .. ' ' .. ARGV[2])
end
return {'claimed', redis.call('HGETALL', KEYS[1]), redis.call('HGETALL', KEYS[2])}
"""
)

# KEYS: part, task. ARGV: executor, bytes read, rows read, attempts, resumes. As
# _PROGRESS for a part: the
# task's status (a cancelled task's parts stop), or 'lost'.
_PART_PROGRESS = (
    _LUA_PARTS
    + """
local status = split_status(KEYS[2])
if status ~= 'running' then return status end
if redis.call('HGET', KEYS[1], 'executor') ~= ARGV[1] then return 'lost' end
account(KEYS[1], KEYS[2], 2)
return status
"""
)

# KEYS: part, task. ARGV: part id, executor, status (done or failed), prefix, bytes read,
# rows read, attempts, resumes, then field, value, ... Records a part's outcome, once, by
# its holder while its task runs its parts: 'last' when every part has one now (the
# caller merges), else 'more'; false if nothing changed.
_FINISH_PART = (
    _LUA_PARTS
    + """
if split_status(KEYS[2]) ~= 'running' then return false end
local lease = ARGV[4] .. 'lease:' .. ARGV[1]
if not holds(KEYS[1], lease, ARGV[2]) then return false end
account(KEYS[1], KEYS[2], 5)
redis.call('HSET', KEYS[1], 'status', ARGV[3], unpack(ARGV, 9))
redis.call('DEL', lease)
redis.call('ZREM', ARGV[4] .. 'parts', ARGV[1])
redis.call('HINCRBY', KEYS[2], ARGV[3] == 'done' and 'parts_done' or 'parts_failed', 1)
local counts = redis.call('HMGET', KEYS[2], 'parts_total', 'parts_done', 'parts_failed')
if tonumber(counts[2]) + tonumber(counts[3]) >= tonumber(counts[1]) then return 'last' end
return 'more'
"""
)

# KEYS: part, task. ARGV: part id, executor, prefix, now (unix s), most failures. A part
# whose storage kept failing goes back to the queue alone ('retry': its id is in the
# outbox), until it failed `most failures` times ('give up': the caller fails the task).
_RETRY_PART = (
    _LUA_PARTS
    + """
if split_status(KEYS[2]) ~= 'running' then return false end
local lease = ARGV[3] .. 'lease:' .. ARGV[1]
if not holds(KEYS[1], lease, ARGV[2]) then return false end
redis.call('DEL', lease)
if redis.call('HINCRBY', KEYS[1], 'failures', 1) >= tonumber(ARGV[5]) then return 'give up' end
redis.call('HSET', KEYS[1], 'status', 'queued', 'queued_at', ARGV[4])
redis.call('ZADD', ARGV[3] .. 'outbox', ARGV[4], ARGV[1])
return 'retry'
"""
)

# KEYS: task. ARGV: id, prefix, now (unix s). A split task whose parts cannot give its
# sums (a part started inside quotes, the file changed) is to be summed as one stream:
# marked `unsplit` (its parts stop), put in the outbox; false if it was already, or is
# no longer running.
_UNSPLIT = (
    _LUA_PARTS
    + """
if split_status(KEYS[1]) ~= 'running' then return false end
redis.call('HSET', KEYS[1], 'unsplit', 1, 'bytes_read', 0, 'rows_read', 0)
redis.call('DEL', ARGV[2] .. 'lease:' .. ARGV[1])
redis.call('ZADD', ARGV[2] .. 'outbox', ARGV[3], ARGV[1])
return 1
"""
)

# KEYS: parts. ARGV: prefix, now (unix s), grace (s), at most. As _ABANDONED for parts:
# running parts whose lease lapsed, each once per `grace`; the parts of a task that no
# longer runs them are dropped from the set on the way.
_ABANDONED_PARTS = (
    _LUA_PARTS
    + """
local found = {}
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, 999)) do
  if #found >= tonumber(ARGV[4]) then break end
  local part = ARGV[1] .. 'part:' .. id
  local task = ARGV[1] .. 'task:' .. string.match(id, '^(.*):%d+$')
  if split_status(task) ~= 'running' or redis.call('EXISTS', part) == 0 then
    redis.call('ZREM', KEYS[1], id)
  elseif redis.call('HGET', part, 'status') == 'running'
         and redis.call('EXISTS', ARGV[1] .. 'lease:' .. id) == 0 then
    local marked = tonumber(redis.call('HGET', part, 'republished_at') or '0')
    if tonumber(ARGV[2]) - marked >= tonumber(ARGV[3]) then
      redis.call('HSET', part, 'republished_at', ARGV[2])
      table.insert(found, id)
    end
  end
end
return found
"""
)


# KEYS: parts. ARGV: prefix, now (unix s), grace (s), at most (0: none, only the count).
# As _STALE_QUEUED for parts: {published queued parts (each should have a message in the
# queue), then those of them that waited `grace` since they were split, put back or last
# published again, each once per grace}.
_STALE_QUEUED_PARTS = (
    _LUA_PARTS
    + """
local published, found = 0, {}
local ids = redis.call('ZRANGE', KEYS[1], 0, 999, 'WITHSCORES')
for k = 1, #ids, 2 do
  local id, part = ids[k], ARGV[1] .. 'part:' .. ids[k]
  local task = ARGV[1] .. 'task:' .. string.match(id, '^(.*):%d+$')
  local fields = redis.call('HMGET', part, 'status', 'queued_at', 'republished_at')
  if fields[1] == 'queued' and split_status(task) == 'running'
     and redis.call('ZSCORE', ARGV[1] .. 'outbox', id) == false then
    published = published + 1
    local since = math.max(tonumber(ids[k + 1]), tonumber(fields[2] or '0'),
                           tonumber(fields[3] or '0'))
    if #found < tonumber(ARGV[4]) and tonumber(ARGV[2]) - since >= tonumber(ARGV[3]) then
      redis.call('HSET', part, 'republished_at', ARGV[2])
      table.insert(found, id)
    end
  end
end
return {published, found}
"""
)


def _translated(method: Callable[P, R]) -> Callable[P, R]:
    """Turn redis-py's connection errors into StoreUnavailable at the boundary."""

    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(*args, **kwargs)
        except (redis.ConnectionError, redis.TimeoutError) as error:
            raise StoreUnavailable(f"Redis is unavailable: {error}") from error
        except redis.exceptions.OutOfMemoryError as error:
            # maxmemory-policy noeviction: a full Redis refuses writes instead of dropping
            # records, and the refusal must reach the caller as such.
            raise StoreUnavailable(f"Redis is full: {error}") from error

    return wrapper


def connect(url: str) -> redis.Redis:
    """A client whose pool opens connections lazily, so it is safe to create before a fork."""
    return redis.Redis.from_url(
        url,
        decode_responses=True,
        socket_connect_timeout=5,
        socket_timeout=10,
        health_check_interval=30,
    )


def _resp(commands: tuple[tuple[str | int | float, ...], ...]) -> bytes:
    """Commands in Redis's wire format (RESP arrays of bulk strings); numbers are written
    as redis-py writes them."""
    out = []
    for command in commands:
        out.append(b"*%d\r\n" % len(command))
        for argument in command:
            if not isinstance(argument, str):
                if isinstance(argument, bool) or not isinstance(argument, int | float):
                    raise TypeError(f"not a Redis argument: {argument!r}")
                argument = repr(argument)
            data = argument.encode()
            out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


@dataclass(frozen=True)
class Held:
    """A claim refused: `executor` holds the task's lease for `lease_left` more seconds."""

    executor: str
    lease_left: float


def _read(fields: dict[str, int]) -> list[int]:
    """What a part's reads cost, as the part scripts take it (ReadStats.to_record)."""
    return [fields.get(name, 0) for name in ("bytes_read", "rows_read", "attempts", "resumes")]


def _pairs(flat: list[str]) -> dict[str, str]:
    return dict(zip(flat[::2], flat[1::2], strict=True))


def _task(record: dict[str, str], raw_result: bool = False) -> Task | None:
    """The task in a record; None for a hash without an id, written after its record
    expired by a client older than the EXISTS guards, which must not break a page."""
    return Task.from_redis(record, raw_result) if record.get("id") else None


@dataclass(frozen=True)
class Page:
    tasks: list[Task]
    next_cursor: str | None  # None on the last page


# Seconds after its last heartbeat that an executor no longer counts as live.
EXECUTOR_TTL = 15.0


class TaskStore:
    def __init__(
        self,
        client: redis.Redis,
        prefix: str,
        record_ttl: int = 7 * 24 * 3600,
        dispatch_window: int = 0,
    ) -> None:
        self.redis = client
        self.keys = Keys(prefix)
        self.record_ttl = record_ttl
        self.dispatch_window = dispatch_window
        self._local = threading.local()  # _quickly's connections
        self._create = client.register_script(_CREATE)
        self._dispatch = client.register_script(_DISPATCH)
        self._discard = client.register_script(_DISCARD)
        self._claim = client.register_script(_CLAIM)
        self._finish = client.register_script(_FINISH)
        self._progress = client.register_script(_PROGRESS)
        self._renew = client.register_script(_RENEW)
        self._claim_webhook = client.register_script(_CLAIM_WEBHOOK)
        self._webhook_tried = client.register_script(_WEBHOOK_TRIED)
        self._release = client.register_script(_RELEASE)
        self._abandoned = client.register_script(_ABANDONED)
        self._stale_queued = client.register_script(_STALE_QUEUED)
        self._prune = client.register_script(_PRUNE)
        self._split = client.register_script(_SPLIT)
        self._claim_part = client.register_script(_CLAIM_PART)
        self._part_progress = client.register_script(_PART_PROGRESS)
        self._finish_part = client.register_script(_FINISH_PART)
        self._retry_part = client.register_script(_RETRY_PART)
        self._unsplit = client.register_script(_UNSPLIT)
        self._abandoned_parts = client.register_script(_ABANDONED_PARTS)
        self._stale_queued_parts = client.register_script(_STALE_QUEUED_PARTS)

    @classmethod
    def from_settings(cls, settings: Settings) -> TaskStore:
        return cls(
            connect(settings.redis_url),
            settings.redis_prefix,
            settings.record_ttl,
            settings.dispatch_window,
        )

    def _dispatch_args(self) -> list[Any]:
        return [time.time(), self.dispatch_window, EXECUTOR_TTL, fair_queue.FIRST_ESTIMATE]

    @_translated
    def create(self, task: Task, max_queued: int = 0) -> list[str]:
        """Record a queued task in its client's backlog, and dispatch what there is room
        for: the ids returned are in the outbox, to be published (then `published`).

        TooManyQueued if the client has `max_queued` (> 0) tasks queued already."""
        pairs = [item for pair in task.to_redis().items() for item in pair]
        rank = fair_queue.RANKS[task.priority]
        args = [task.id, time.time(), self.prefix, task.client, rank, max_queued]
        dispatched = self._run(
            self._create, [self.keys.task(task.id)], [*args, *self._dispatch_args(), *pairs]
        )
        if dispatched == -1:
            raise TooManyQueued(
                f"client {task.client!r} has {max_queued} tasks queued, the most it may have; "
                "submit more once some have started"
            )
        return dispatched

    @_translated
    def dispatch(self) -> list[str]:
        """Dispatch the tasks there is room for now (see colsum.fair_queue); their ids,
        in the outbox, to be published."""
        return self._run(self._dispatch, [], [self.prefix, *self._dispatch_args()])

    @property
    def prefix(self) -> str:
        return self.keys.prefix

    @_translated
    def published(self, *task_ids: str) -> None:
        """Out of the outbox: RabbitMQ confirmed the tasks' messages. Once per task on the
        busiest paths, and harmless to miss (the claim takes it out too), so read the
        quick way."""
        self._quickly(("ZREM", self.keys.outbox, *task_ids))

    @_translated
    def unpublished(self, older_than: float) -> list[str]:
        """Tasks recorded more than `older_than` seconds ago and never confirmed published:
        their backend died between the two steps."""
        return self.redis.zrangebyscore(self.keys.outbox, "-inf", time.time() - older_than)

    @_translated
    def discard(self, task_id: str) -> None:
        """Remove a task that was never published, so it cannot sit `queued` forever."""
        self._discard(keys=[self.keys.task(task_id)], args=[task_id, self.prefix])

    @_translated
    def get(self, task_id: str, raw_result: bool = False) -> Task | None:
        """The task; with `raw_result`, its result as the JSON text stored (to be shown)."""
        return _task(self.redis.hgetall(self.keys.task(task_id)), raw_result)

    @_translated
    def show(self, task_id: str) -> Task | None:
        """The task as GET /tasks/<id> shows it (its result as the stored JSON text), read
        the quick way (`_quickly`)."""
        (record,) = self._quickly(("HGETALL", self.keys.task(task_id)))
        if isinstance(record, list):  # RESP2 answers a hash as a flat list
            record = dict(zip(record[::2], record[1::2], strict=True))
        return _task(record, raw_result=True)

    def _quickly(self, *commands: tuple[str | int | float, ...]) -> list[Any]:
        """The answers to `commands`, sent in one round trip on this thread's own connection,
        without redis-py's per-call machinery (command objects, retry policies, the pool's
        check-out and event hooks: half of a GET's own CPU under load). For reads and
        idempotent writes only: a connection found broken (Redis restarted since its last
        use) is opened again and the commands sent once more, as redis-py would."""
        try:
            return self._round_trip(commands)
        except redis.ConnectionError:
            return self._round_trip(commands)

    def read_quickly(self, *commands: tuple[str | int | float, ...]) -> list[Any]:
        """`_quickly` for other readers of this Redis: colsum/clients.py's token lookups."""
        return self._quickly(*commands)

    def _run(self, script: Script, keys: list[str], args: list[Any]) -> Any:
        """`script(keys, args)` the quick way (`_quickly`), for the scripts every task runs;
        loaded first if Redis does not know it (restarted empty, or SCRIPT FLUSH). Sent
        once more after a broken connection, as redis-py's retries would."""
        command = ("EVALSHA", script.sha, len(keys), *keys, *args)
        try:
            (reply,) = self._quickly(command)
        except redis.exceptions.NoScriptError:
            self.redis.script_load(script.script)
            (reply,) = self._quickly(command)
        return reply

    def _round_trip(self, commands: tuple[tuple[str | int | float, ...], ...]) -> list[Any]:
        connection = self._own_connection()
        try:
            connection.send_packed_command([_resp(commands)])
            return [connection.read_response() for _ in commands]
        except BaseException:
            connection.disconnect()  # the next use opens it again; no half-read answers
            raise

    def hurry(self, seconds: float) -> None:
        """This thread's quick reads (`_quickly`) give up after `seconds`: for an event loop,
        which serves nothing else while it waits on a Redis that hangs. The thread gets a
        connection of its own for them, opened at its first use."""
        pool = self.redis.connection_pool
        timeouts = {"socket_timeout": seconds, "socket_connect_timeout": seconds}
        connection = pool.connection_class(**{**pool.connection_kwargs, **timeouts})
        self._local.connection = (os.getpid(), connection)
        weakref.finalize(threading.current_thread(), connection.disconnect)

    def _own_connection(self) -> redis.connection.AbstractConnection:
        """This thread's connection, taken from the pool once and kept (a few per gunicorn
        worker); a forked process takes its own."""
        mine = getattr(self._local, "connection", None)
        if mine is None or mine[0] != os.getpid():
            pool = self.redis.connection_pool
            mine = self._local.connection = (os.getpid(), pool.get_connection())
            # Back to the pool once the thread is gone (a pool's threads come and go).
            weakref.finalize(threading.current_thread(), pool.release, mine[1])
        return mine[1]

    @_translated
    def page(
        self, status: TaskStatus | None, limit: int, cursor: str | None, client: str | None = None
    ) -> Page:
        """Tasks newest first, `limit` at most, older than `cursor` (from the previous page);
        everyone's, or one client's."""
        key = self._index(status, client)
        top = f"({cursor}" if cursor else "+inf"
        # One more than asked: a page is the last exactly when the one after it is empty.
        entries = self.redis.zrevrangebyscore(
            key, top, "-inf", start=0, num=limit + 1, withscores=True
        )
        more, entries = len(entries) > limit, entries[:limit]
        with self.redis.pipeline(transaction=False) as pipe:
            for task_id, _ in entries:
                pipe.hgetall(self.keys.task(task_id))
            records = pipe.execute()
        tasks, expired = [], []
        for (task_id, _), record in zip(entries, records, strict=True):
            if (task := _task(record)) is not None:
                tasks.append(task)
            elif not record:
                expired.append(task_id)
        if expired:  # their records ran out of RECORD_TTL: drop them from the indexes too
            self._unindex(expired, client)
        return Page(tasks, f"{int(entries[-1][1])}" if more else None)

    def _index(self, status: TaskStatus | None, client: str | None) -> str:
        if client is None:
            return self.keys.tasks if status is None else self.keys.status(status)
        if status is None:
            return self.keys.client_tasks(client)
        return self.keys.client_status(client, status)

    def _unindex(self, task_ids: list[str], client: str | None) -> None:
        finished = [status for status in TaskStatus if status.finished]
        with self.redis.pipeline(transaction=False) as pipe:
            for owner in {None, client}:
                pipe.zrem(self._index(None, owner), *task_ids)
                for status in finished:
                    pipe.zrem(self._index(status, owner), *task_ids)
            pipe.execute()

    @_translated
    def claim(
        self,
        task_id: str,
        executor: str,
        attempt: int,
        lease: float,
        published: Sequence[str] = (),
    ) -> Task | Held | None:
        """Mark a task running and held by `executor` for `lease` seconds; return it, or
        None if it is unknown or finished already, or Held while another executor's lease
        on it lasts. Takes the `published` tasks out of the outbox on the way: the
        executor's own `published`, without a round trip of its own.

        A `running` task can be claimed again once its lease lapsed: its message was
        redelivered (or published again by the sweeper) because the executor that held it
        died, and the new one takes over.
        """
        args = [task_id, now(), executor, attempt, int(lease * 1000), self.prefix, *published]
        reply = self._run(self._claim, [self.keys.task(task_id)], args)
        if not isinstance(reply, list):
            return None
        if reply[0] == "held":
            return Held(reply[1], max(0, int(reply[2])) / 1000)
        return _task(dict(zip(reply[::2], reply[1::2], strict=True)))

    def complete(
        self, task_id: str, result: dict[str, Any], holder: str = "", **extra: int
    ) -> bool:
        """Record a result, with `extra` fields such as the read statistics; with a
        `holder`, only while that executor still holds the task.

        False if the task had finished already (a redelivered message) or is no longer
        the holder's: nothing changes."""
        fields = {"result": jsoncodec.dumps(result), **extra}
        return self._finish_as(task_id, TaskStatus.DONE, fields, holder)[0] is not None

    def complete_and_dispatch(
        self, task_id: str, result: dict[str, Any], holder: str = "", **extra: int
    ) -> list[str] | None:
        """`complete`, and in the same round trip dispatch what the task's place lets in
        (colsum.fair_queue): the ids to publish; None if nothing changed."""
        fields = {"result": jsoncodec.dumps(result), **extra}
        previous, dispatched = self._finish_as(task_id, TaskStatus.DONE, fields, holder, True)
        return dispatched if previous is not None else None

    def fail(self, task_id: str, error: str, holder: str = "", **extra: int) -> bool:
        """Record a failure; a part's (its time limit, its dead letter) fails its task."""
        if part_of(task_id):
            task_id, holder, extra = owner(task_id), "", {}
        fields = {"error": error, **extra}
        return self._finish_as(task_id, TaskStatus.FAILED, fields, holder)[0] is not None

    def cancel(self, task_id: str) -> TaskStatus | None:
        """Cancel a queued or running task; the status it had, or None if it had finished."""
        return self._finish_as(task_id, TaskStatus.CANCELLED, {})[0]

    @_translated
    def _finish_as(
        self,
        task_id: str,
        status: TaskStatus,
        fields: dict[str, Any],
        holder: str = "",
        dispatch: bool = False,
    ) -> tuple[TaskStatus | None, list[str]]:
        """The status the task had (None: nothing changed), and the tasks dispatched."""
        pairs = [str(item) for pair in fields.items() for item in pair]
        args = [task_id, status.value, now(), self.record_ttl, self.prefix, holder]
        args += [int(dispatch), *self._dispatch_args(), *pairs]
        reply = self._run(self._finish, [self.keys.task(task_id)], args)
        return (TaskStatus(reply[0]), reply[1:]) if reply else (None, [])

    @_translated
    def progress(self, task_id: str, holder: str, **fields: int) -> TaskStatus | None:
        """Record how far a running task (or part) has got on `holder`; its status now
        (a part's task's), or None if it is unknown or another executor has taken it over."""
        if part_of(task_id):
            keys = [self.keys.part(task_id), self.keys.task(owner(task_id))]
            status = self._part_progress(keys=keys, args=[holder, *_read(fields)])
            return TaskStatus(status) if status in set(TaskStatus) else None
        args = [holder, *(str(item) for pair in fields.items() for item in pair)]
        status = self._progress(keys=[self.keys.task(task_id)], args=args)
        return TaskStatus(status) if status and status != "lost" else None

    @_translated
    def renew_lease(self, task_id: str, executor: str, lease: float) -> bool:
        """False once the task is no longer this executor's: cancelled, finished, or taken
        over by another executor after the lease lapsed."""
        keys = [self.keys.lease(task_id), self.keys.record(task_id)]
        return self._renew(keys=keys, args=[executor, int(lease * 1000)]) == 1

    @_translated
    def release_lease(self, task_id: str, executor: str) -> None:
        """Give up the lease on a task handed back to the queue."""
        self._release(keys=[self.keys.task(task_id), self.keys.lease(task_id)], args=[executor])

    # -- split tasks (executor/split.py) -------------------------------------------------

    @_translated
    def split(
        self,
        task_id: str,
        executor: str,
        split: str,
        ranges: list[tuple[int, int]],
        bytes_total: int,
        read: dict[str, int],
    ) -> list[str]:
        """Split a running task held by `executor` into parts of these byte ranges, with
        what reading its header cost (`read`: ReadStats.to_record); the parts' ids, in the
        outbox, to be published. [] if the task is not the executor's to split
        (cancelled, taken over, or split already)."""
        bounds = [str(bound) for pair in ranges for bound in pair]
        args = [task_id, self.prefix, executor, time.time(), self.record_ttl, split]
        bytes_read, _, attempts, resumes = _read(read)
        args += [bytes_total, bytes_read, attempts, resumes, *bounds]
        return self._split(keys=[self.keys.task(task_id)], args=args) or []

    @_translated
    def claim_part(
        self, part_id: str, executor: str, lease: float
    ) -> tuple[dict[str, str], dict[str, str]] | Held | str | None:
        """As `claim`, for a part: (its record, its task's record), Held, "finished" if
        the part has its outcome already (its task may await the merge), or None when its
        task no longer runs its parts (cancelled, finished, summed as one stream)."""
        keys = [self.keys.part(part_id), self.keys.task(owner(part_id))]
        reply = self._claim_part(
            keys=keys, args=[part_id, executor, int(lease * 1000), self.prefix]
        )
        if not isinstance(reply, list):
            return reply
        if reply[0] == "held":
            return Held(reply[1], max(0, int(reply[2])) / 1000)
        return _pairs(reply[1]), _pairs(reply[2])

    @_translated
    def finish_part(
        self, part_id: str, executor: str, failed: bool, fields: dict[str, str], **read: int
    ) -> bool | None:
        """Record a part's outcome, once, by its holder: True when it was the last (the
        caller merges), False if more are to come, None if nothing changed."""
        pairs = [item for pair in fields.items() for item in pair]
        keys = [self.keys.part(part_id), self.keys.task(owner(part_id))]
        status = "failed" if failed else "done"
        args = [part_id, executor, status, self.prefix, *_read(read), *pairs]
        reply = self._finish_part(keys=keys, args=args)
        return None if not reply else reply == "last"

    @_translated
    def retry_part(self, part_id: str, executor: str, most: int) -> str | None:
        """Put back a part whose storage kept failing: "retry" (its id is in the outbox,
        to be published) or, after `most` failures, "give up"; None if not the holder's."""
        keys = [self.keys.part(part_id), self.keys.task(owner(part_id))]
        args = [part_id, executor, self.prefix, time.time(), most]
        return self._retry_part(keys=keys, args=args) or None

    @_translated
    def unsplit(self, task_id: str) -> bool:
        """Have a split task summed as one stream: its id is in the outbox, to be
        published. False if it was already, or no longer runs."""
        args = [task_id, self.prefix, time.time()]
        return bool(self._unsplit(keys=[self.keys.task(task_id)], args=args))

    @_translated
    def parts(self, task_id: str) -> tuple[dict[str, str], list[dict[str, str]]]:
        """A split task's record and its parts' records, in file order."""
        record = self.redis.hgetall(self.keys.task(task_id))
        total = int(record.get("parts_total") or 0)
        with self.redis.pipeline(transaction=False) as pipe:
            for index in range(total):
                pipe.hgetall(self.keys.part(part_id(task_id, index)))
            return record, pipe.execute()

    @_translated
    def abandoned_parts(self, grace: float, limit: int = 100) -> list[str]:
        """Running parts whose executor stopped renewing its lease, each returned once
        per `grace` seconds until an executor claims it again."""
        args = [self.prefix, time.time(), grace, limit]
        return self._abandoned_parts(keys=[self.keys.parts], args=args)

    @_translated
    def abandoned(self, grace: float, limit: int = 100) -> list[str]:
        """Running tasks whose executor stopped renewing its lease (it is gone), each
        returned once per `grace` seconds until an executor claims it again."""
        key = self.keys.status(TaskStatus.RUNNING)
        return self._abandoned(keys=[key], args=[self.prefix, time.time(), grace, limit])

    @_translated
    def stale_queued(self, grace: float, limit: int, scan: int = 1000) -> list[str]:
        """Up to `limit` of the `scan` tasks dispatched longest ago, published (not in the
        outbox) but queued for more than `grace` seconds since they were published last;
        each is marked as published again now."""
        key = self.keys.dispatched
        args = [self.prefix, time.time(), grace, limit, scan]
        return self._stale_queued(keys=[key], args=args)

    @_translated
    def prune(self, limit: int, clients: int = 10) -> int:
        """Drop index entries whose record expired, looking at `limit` entries of each
        index per call, in turn, among those old enough to have expired; how many were
        dropped. The clients' own indexes are walked `clients` (chosen at random) a call."""
        finished = [status for status in TaskStatus if status.finished]
        indexes = [self.keys.tasks, *(self.keys.status(s) for s in finished), self.keys.webhooks]
        for client in self.redis.srandmember(self.keys.indexed_clients, clients):
            indexes += [self._index(None, client), *(self._index(s, client) for s in finished)]
        dropped = 0
        for index in indexes:
            args = [self.prefix, limit, time.time() - self.record_ttl]
            dropped += self._prune(keys=[index, self.keys.prune], args=args)
        return dropped

    @_translated
    def exist(self, task_ids: list[str]) -> list[bool]:
        """Whether each task still has a record."""
        with self.redis.pipeline(transaction=False) as pipe:
            for task_id in task_ids:
                pipe.exists(self.keys.task(task_id))
            return [bool(found) for found in pipe.execute()]

    @_translated
    def published_queued(self) -> int:
        """Queued tasks and parts that should have a message in the queue: dispatched or
        split, not in the outbox."""
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.zcard(self.keys.dispatched)
            pipe.zcard(self.keys.outbox)
            dispatched, unpublished = pipe.execute()
        return dispatched - unpublished + self._stale_parts(0, 0)[0]

    @_translated
    def stale_queued_parts(self, grace: float, limit: int) -> list[str]:
        """As `stale_queued`, for parts: published, queued for `grace` seconds, each once
        per grace, at most `limit`."""
        return self._stale_parts(grace, limit)[1]

    def _stale_parts(self, grace: float, limit: int) -> tuple[int, list[str]]:
        args = [self.prefix, time.time(), grace, limit]
        published, found = self._stale_queued_parts(keys=[self.keys.parts], args=args)
        return published, found

    @_translated
    def backlogs(self) -> dict[str, int]:
        """Each client's tasks waiting in its backlog, not yet dispatched to the queue."""
        clients = self.redis.zrange(self.keys.backlogs, 0, -1)
        with self.redis.pipeline(transaction=False) as pipe:
            for client in clients:
                pipe.zcard(self.keys.backlog(client))
            return dict(zip(clients, pipe.execute(), strict=True))

    @_translated
    def due_webhook(self, claim_for: float) -> str | None:
        """A task whose webhook is due, held for `claim_for` seconds; None if none is."""
        args = [time.time(), claim_for, self.prefix]
        return self._claim_webhook(keys=[self.keys.webhooks], args=args)

    @_translated
    def webhook_tried(
        self, task_id: str, attempts: int, status: str, error: str | None, retry_in: float | None
    ) -> None:
        """Record a delivery attempt; due again in `retry_in` seconds, or settled. Nothing
        is written once the record has expired."""
        fields = {"webhook_status": status, "webhook_attempts": attempts}
        if error is not None:
            fields["webhook_error"] = error
        pairs = [str(item) for pair in fields.items() for item in pair]
        due = "" if retry_in is None else time.time() + retry_in
        keys = [self.keys.task(task_id), self.keys.webhooks]
        self._webhook_tried(keys=keys, args=[task_id, due, *pairs])

    @_translated
    def heartbeat(self, name: str, fields: dict[str, Any], ttl: float) -> None:
        """Register or renew an executor; it drops out `ttl` seconds after its last beat."""
        with self.redis.pipeline(transaction=True) as pipe:
            key = self.keys.executor(name)
            pipe.hset(key, mapping={k: "" if v is None else str(v) for k, v in fields.items()})
            pipe.pexpire(key, int(ttl * 1000))
            pipe.zadd(self.keys.executors, {name: time.time()})
            pipe.execute()

    @_translated
    def live_executors(self, ttl: float) -> list[dict[str, str]]:
        """The executors that beat within `ttl` seconds; the others are forgotten here."""
        self.redis.zremrangebyscore(self.keys.executors, "-inf", time.time() - ttl)
        names = self.redis.zrange(self.keys.executors, 0, -1)
        with self.redis.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.hgetall(self.keys.executor(name))
            return [record for record in pipe.execute() if record]

    @_translated
    def ping(self) -> None:
        self.redis.ping()

    @_translated
    def cursor(self, name: str, value: str | None = None) -> str | None:
        """A walk's position, kept between sweeps (which any executor may run); with a
        value, set it ('' starts the walk over)."""
        if value is None:
            return self.redis.hget(self.keys.prune, name)
        self.redis.hset(self.keys.prune, name, value)
        return value

    @_translated
    def lock(self, name: str, seconds: float) -> bool:
        """True for one caller per `seconds`: for work that one executor at a time does."""
        return bool(self.redis.set(name, "1", nx=True, px=int(seconds * 1000)))

    @_translated
    def counts(self, client: str | None = None) -> dict[str, int]:
        """Everyone's active tasks, or one client's."""
        return self.counts_of(client)[0]

    def counts_of(self, *clients: str | None) -> list[dict[str, int]]:
        """`counts` of each of `clients` (None: everyone), in one round trip, read the
        quick way (`_quickly`): it is what dashboards and autoscalers poll."""
        replies = self._quickly(
            *(
                ("ZCARD", self._index(status, client))
                for client in clients
                for status in (TaskStatus.QUEUED, TaskStatus.RUNNING)
            )
        )
        pairs = zip(replies[::2], replies[1::2], strict=True)
        return [{"active": q + r, "queued": q, "running": r} for q, r in pairs]

    @_translated
    def wait(self, task_id: str, seconds: float) -> Task | None:
        """The task once it has finished, or as it is after `seconds`; blocks on pub/sub,
        not in a polling loop."""
        with self.redis.pubsub(ignore_subscribe_messages=True) as channel:
            channel.subscribe(self.keys.finished(task_id))
            task = self.get(task_id)  # after subscribing: a finish in between is not missed
            deadline = time.monotonic() + seconds
            while task is not None and not task.status.finished:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                if channel.get_message(timeout=remaining) is not None:
                    task = self.get(task_id)
            return task
