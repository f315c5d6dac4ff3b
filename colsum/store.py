"""The task store in Redis: one hash per task, and sorted sets that index the tasks.

Every task gets a sequence number when it is created. `tasks` holds all of them and
`status:<status>` those in each status, scored by that number: newest first is a reverse
range, a page ends where the next begins, and the active count is two ZCARDs. Every status
change is one Lua script, so a record's status and the indexes can never disagree, and a
change that comes twice (a redelivered message) is a no-op the second time. Finishing
publishes on `finished:<id>` for clients that wait.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

import redis

from colsum import jsoncodec
from colsum.errors import StoreUnavailable
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


# Shared by the scripts: KEYS[1] is the task, ARGV[1] its id; `prefix` is ARGV's last.
_LUA_MOVE = """
local function move(prefix, id, from, to, seq)
  redis.call('ZREM', prefix .. 'status:' .. from, id)
  redis.call('ZADD', prefix .. 'status:' .. to, seq, id)
end
"""

# KEYS: task. ARGV: id, created (unix s), prefix, then field, value, ...
_CREATE = """
local prefix = ARGV[3]
local seq = redis.call('INCR', prefix .. 'sequence')
redis.call('HSET', KEYS[1], 'seq', seq, unpack(ARGV, 4))
redis.call('ZADD', prefix .. 'tasks', seq, ARGV[1])
redis.call('ZADD', prefix .. 'status:queued', seq, ARGV[1])
redis.call('ZADD', prefix .. 'outbox', ARGV[2], ARGV[1])
return seq
"""

# KEYS: task. ARGV: id, started_at, executor, attempt, lease ms, prefix.
# Returns the record when the caller now holds the task, else its status (or nil if unknown).
_CLAIM = (
    _LUA_MOVE
    + """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return nil end
if status ~= 'queued' and status ~= 'running' then return status end
local prefix = ARGV[6]
redis.call('HSET', KEYS[1], 'status', 'running', 'started_at', ARGV[2],
           'executor', ARGV[3], 'attempt', ARGV[4])
move(prefix, ARGV[1], status, 'running', redis.call('HGET', KEYS[1], 'seq'))
redis.call('ZREM', prefix .. 'outbox', ARGV[1])
redis.call('SET', prefix .. 'lease:' .. ARGV[1], ARGV[3], 'PX', ARGV[5])
return redis.call('HGETALL', KEYS[1])
"""
)

# KEYS: task. ARGV: id, status, finished_at, seconds to keep the record, prefix,
# then field, value, ... Returns the status the task had if it was active (queued or
# running) and is now finished; else false.
_FINISH = (
    _LUA_MOVE
    + """
local status = redis.call('HGET', KEYS[1], 'status')
if status ~= 'queued' and status ~= 'running' then return false end
local prefix = ARGV[5]
redis.call('HSET', KEYS[1], 'status', ARGV[2], 'finished_at', ARGV[3], unpack(ARGV, 6))
redis.call('EXPIRE', KEYS[1], ARGV[4])
move(prefix, ARGV[1], status, ARGV[2], redis.call('HGET', KEYS[1], 'seq'))
redis.call('DEL', prefix .. 'lease:' .. ARGV[1])
redis.call('ZREM', prefix .. 'outbox', ARGV[1])
redis.call('PUBLISH', prefix .. 'finished:' .. ARGV[1], ARGV[2])
if redis.call('HEXISTS', KEYS[1], 'callback_url') == 1 then
  local now = redis.call('TIME')
  redis.call('HSET', KEYS[1], 'webhook_status', 'pending', 'webhook_attempts', 0)
  redis.call('ZADD', prefix .. 'webhooks', tonumber(now[1]) + tonumber(now[2]) / 1e6, ARGV[1])
end
return status
"""
)

# KEYS: webhooks. ARGV: now, seconds a claim lasts. Takes the first due delivery, and
# puts it back for later in case the claimant dies before it is done.
_CLAIM_WEBHOOK = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 1)[1]
if not due then return false end
redis.call('ZADD', KEYS[1], ARGV[1] + ARGV[2], due)
return due
"""

# KEYS: task. ARGV: field, value, ... Records progress while the task runs; returns the
# status, so that the executor learns of a cancellation in the same round trip.
_PROGRESS = """
local status = redis.call('HGET', KEYS[1], 'status')
if status == 'running' then redis.call('HSET', KEYS[1], unpack(ARGV)) end
return status
"""

# KEYS: lease. ARGV: executor, lease ms. Renews the lease only while this executor holds it.
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) and 1
end
return 0
"""


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


@dataclass(frozen=True)
class Page:
    tasks: list[Task]
    next_cursor: str | None  # None on the last page


class TaskStore:
    def __init__(self, client: redis.Redis, prefix: str, record_ttl: int = 7 * 24 * 3600) -> None:
        self.redis = client
        self.keys = Keys(prefix)
        self.record_ttl = record_ttl
        self._create = client.register_script(_CREATE)
        self._claim = client.register_script(_CLAIM)
        self._finish = client.register_script(_FINISH)
        self._progress = client.register_script(_PROGRESS)
        self._renew = client.register_script(_RENEW)
        self._claim_webhook = client.register_script(_CLAIM_WEBHOOK)

    @_translated
    def create(self, task: Task) -> None:
        """Record a queued task, in the outbox until `published` says RabbitMQ has it."""
        pairs = [item for pair in task.to_redis().items() for item in pair]
        args = [task.id, time.time(), self.prefix, *pairs]
        self._create(keys=[self.keys.task(task.id)], args=args)

    @property
    def prefix(self) -> str:
        return self.keys.prefix

    @_translated
    def published(self, task_id: str) -> None:
        self.redis.zrem(self.keys.outbox, task_id)

    @_translated
    def unpublished(self, older_than: float) -> list[str]:
        """Tasks recorded more than `older_than` seconds ago and never confirmed published:
        their backend died between the two steps."""
        return self.redis.zrangebyscore(self.keys.outbox, "-inf", time.time() - older_than)

    @_translated
    def discard(self, task_id: str) -> None:
        """Remove a task that was never published, so it cannot sit `queued` forever."""
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(self.keys.task(task_id))
            for key in (self.keys.tasks, self.keys.status(TaskStatus.QUEUED), self.keys.outbox):
                pipe.zrem(key, task_id)
            pipe.execute()

    @_translated
    def get(self, task_id: str) -> Task | None:
        record = self.redis.hgetall(self.keys.task(task_id))
        return Task.from_redis(record) if record else None

    @_translated
    def page(self, status: TaskStatus | None, limit: int, cursor: str | None) -> Page:
        """Tasks newest first, `limit` at most, older than `cursor` (from the previous page)."""
        key = self.keys.tasks if status is None else self.keys.status(status)
        top = f"({cursor}" if cursor else "+inf"
        entries = self.redis.zrevrangebyscore(key, top, "-inf", start=0, num=limit, withscores=True)
        with self.redis.pipeline(transaction=False) as pipe:
            for task_id, _ in entries:
                pipe.hgetall(self.keys.task(task_id))
            records = pipe.execute()
        tasks, expired = [], []
        for (task_id, _), record in zip(entries, records, strict=True):
            if record:
                tasks.append(Task.from_redis(record))
            else:
                expired.append(task_id)
        if expired:  # their records ran out of RECORD_TTL: drop them from the indexes too
            self._unindex(expired)
        more = len(entries) == limit
        return Page(tasks, f"{int(entries[-1][1])}" if more else None)

    def _unindex(self, task_ids: list[str]) -> None:
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.zrem(self.keys.tasks, *task_ids)
            for status in TaskStatus:
                if status.finished:
                    pipe.zrem(self.keys.status(status), *task_ids)
            pipe.execute()

    @_translated
    def claim(self, task_id: str, executor: str, attempt: int, lease: float) -> Task | None:
        """Mark a task running and held by `executor` for `lease` seconds; return it, or
        None if it is unknown or finished already.

        A `running` task can be claimed again: its message was redelivered because the
        executor that held it died, and the new one takes over.
        """
        args = [task_id, now(), executor, attempt, int(lease * 1000), self.prefix]
        reply = self._claim(keys=[self.keys.task(task_id)], args=args)
        if not isinstance(reply, list):
            return None
        return Task.from_redis(dict(zip(reply[::2], reply[1::2], strict=True)))

    def complete(self, task_id: str, result: dict[str, Any], **extra: int) -> bool:
        """Record a result, with `extra` fields such as the read statistics.

        False if the task had finished already (a redelivered message): nothing changes."""
        fields = {"result": jsoncodec.dumps(result), **extra}
        return self._finish_as(task_id, TaskStatus.DONE, fields) is not None

    def fail(self, task_id: str, error: str, **extra: int) -> bool:
        return self._finish_as(task_id, TaskStatus.FAILED, {"error": error, **extra}) is not None

    def cancel(self, task_id: str) -> TaskStatus | None:
        """Cancel a queued or running task; the status it had, or None if it had finished."""
        return self._finish_as(task_id, TaskStatus.CANCELLED, {})

    @_translated
    def _finish_as(
        self, task_id: str, status: TaskStatus, fields: dict[str, Any]
    ) -> TaskStatus | None:
        pairs = [str(item) for pair in fields.items() for item in pair]
        args = [task_id, status.value, now(), self.record_ttl, self.prefix, *pairs]
        previous = self._finish(keys=[self.keys.task(task_id)], args=args)
        return TaskStatus(previous) if previous else None

    @_translated
    def progress(self, task_id: str, **fields: int) -> TaskStatus | None:
        """Record how far a running task has got; its status now (None if unknown)."""
        args = [str(item) for pair in fields.items() for item in pair]
        status = self._progress(keys=[self.keys.task(task_id)], args=args)
        return TaskStatus(status) if status else None

    @_translated
    def renew_lease(self, task_id: str, executor: str, lease: float) -> bool:
        args = [executor, int(lease * 1000)]
        return self._renew(keys=[self.keys.lease(task_id)], args=args) == 1

    @_translated
    def abandoned(self) -> list[str]:
        """Running tasks whose executor stopped renewing its lease: it is gone."""
        ids = self.redis.zrange(self.keys.status(TaskStatus.RUNNING), 0, -1)
        if not ids:
            return []
        leases = self.redis.mget([self.keys.lease(task_id) for task_id in ids])
        return [task_id for task_id, lease in zip(ids, leases, strict=True) if lease is None]

    @_translated
    def due_webhook(self, claim_for: float) -> str | None:
        """A task whose webhook is due, held for `claim_for` seconds; None if none is."""
        return self._claim_webhook(keys=[self.keys.webhooks], args=[time.time(), claim_for])

    @_translated
    def webhook_tried(
        self, task_id: str, attempts: int, status: str, error: str | None, retry_in: float | None
    ) -> None:
        """Record a delivery attempt; due again in `retry_in` seconds, or settled."""
        fields = {"webhook_status": status, "webhook_attempts": attempts}
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(self.keys.task(task_id), mapping=fields)
            if error is not None:
                pipe.hset(self.keys.task(task_id), "webhook_error", error)
            if retry_in is None:
                pipe.zrem(self.keys.webhooks, task_id)
            else:
                pipe.zadd(self.keys.webhooks, {task_id: time.time() + retry_in})
            pipe.execute()

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
    def lock(self, name: str, seconds: float) -> bool:
        """True for one caller per `seconds`: for work that one executor at a time does."""
        return bool(self.redis.set(name, "1", nx=True, px=int(seconds * 1000)))

    @_translated
    def counts(self) -> dict[str, int]:
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.zcard(self.keys.status(TaskStatus.QUEUED))
            pipe.zcard(self.keys.status(TaskStatus.RUNNING))
            queued, running = pipe.execute()
        return {"active": queued + running, "queued": queued, "running": running}

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
