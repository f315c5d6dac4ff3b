"""The task store in Redis: one hash per task, and two sets that make the active count O(1).

Every status change is one Lua script, so a record's status and its membership in the
`queued`/`running` sets can never disagree, and a change that comes twice (a redelivered
message) is a no-op the second time.
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

    @property
    def queued(self) -> str:
        return f"{self.prefix}queued"

    @property
    def running(self) -> str:
        return f"{self.prefix}running"

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


# KEYS: task, queued, running, lease, outbox. ARGV: id, started_at, executor, attempt, lease ms.
# Returns the record when the caller now holds the task, else its status (or nil if unknown).
_CLAIM = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return nil end
if status ~= 'queued' and status ~= 'running' then return status end
redis.call('HSET', KEYS[1], 'status', 'running', 'started_at', ARGV[2],
           'executor', ARGV[3], 'attempt', ARGV[4])
redis.call('SREM', KEYS[2], ARGV[1])
redis.call('SADD', KEYS[3], ARGV[1])
redis.call('ZREM', KEYS[5], ARGV[1])
redis.call('SET', KEYS[4], ARGV[3], 'PX', ARGV[5])
return redis.call('HGETALL', KEYS[1])
"""

# KEYS: task, queued, running, lease, outbox.
# ARGV: id, status, finished_at, seconds to keep the record, then field, value, ...
# Returns 1 if the task was active and is now finished, 0 if it had finished already.
_FINISH = """
local status = redis.call('HGET', KEYS[1], 'status')
if status ~= 'queued' and status ~= 'running' then return 0 end
redis.call('HSET', KEYS[1], 'status', ARGV[2], 'finished_at', ARGV[3], unpack(ARGV, 5))
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('SREM', KEYS[2], ARGV[1])
redis.call('SREM', KEYS[3], ARGV[1])
redis.call('DEL', KEYS[4])
redis.call('ZREM', KEYS[5], ARGV[1])
return 1
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


class TaskStore:
    def __init__(self, client: redis.Redis, prefix: str, record_ttl: int = 7 * 24 * 3600) -> None:
        self.redis = client
        self.keys = Keys(prefix)
        self.record_ttl = record_ttl
        self._claim = client.register_script(_CLAIM)
        self._finish = client.register_script(_FINISH)
        self._renew = client.register_script(_RENEW)

    @_translated
    def ping(self) -> None:
        self.redis.ping()

    @_translated
    def create(self, task: Task) -> None:
        """Record a queued task, in the outbox until `published` says RabbitMQ has it."""
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(self.keys.task(task.id), mapping=task.to_redis())
            pipe.sadd(self.keys.queued, task.id)
            pipe.zadd(self.keys.outbox, {task.id: time.time()})
            pipe.execute()

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
            pipe.srem(self.keys.queued, task_id)
            pipe.zrem(self.keys.outbox, task_id)
            pipe.execute()

    @_translated
    def get(self, task_id: str) -> Task | None:
        record = self.redis.hgetall(self.keys.task(task_id))
        return Task.from_redis(record) if record else None

    @_translated
    def claim(self, task_id: str, executor: str, attempt: int, lease: float) -> Task | None:
        """Mark a task running and held by `executor` for `lease` seconds; return it, or
        None if it is unknown or finished already.

        A `running` task can be claimed again: its message was redelivered because the
        executor that held it died, and the new one takes over.
        """
        args = [task_id, now(), executor, attempt, int(lease * 1000)]
        reply = self._claim(keys=self._task_keys(task_id), args=args)
        if not isinstance(reply, list):
            return None
        return Task.from_redis(dict(zip(reply[::2], reply[1::2], strict=True)))

    def complete(self, task_id: str, result: dict[str, Any], **extra: int) -> bool:
        """Record a result, with `extra` fields such as the read statistics.

        False if the task had finished already (a redelivered message): nothing changes."""
        fields = {"result": jsoncodec.dumps(result), **extra}
        return self._finish_as(task_id, TaskStatus.DONE, fields)

    def fail(self, task_id: str, error: str, **extra: int) -> bool:
        return self._finish_as(task_id, TaskStatus.FAILED, {"error": error, **extra})

    @_translated
    def _finish_as(self, task_id: str, status: TaskStatus, fields: dict[str, Any]) -> bool:
        pairs = [str(item) for pair in fields.items() for item in pair]
        args = [task_id, status.value, now(), self.record_ttl, *pairs]
        return self._finish(keys=self._task_keys(task_id), args=args) == 1

    @_translated
    def renew_lease(self, task_id: str, executor: str, lease: float) -> bool:
        args = [executor, int(lease * 1000)]
        return self._renew(keys=[self.keys.lease(task_id)], args=args) == 1

    @_translated
    def abandoned(self) -> list[str]:
        """Running tasks whose executor stopped renewing its lease: it is gone."""
        running = self.redis.smembers(self.keys.running)
        if not running:
            return []
        ids = sorted(running)
        leases = self.redis.mget([self.keys.lease(task_id) for task_id in ids])
        return [task_id for task_id, lease in zip(ids, leases, strict=True) if lease is None]

    @_translated
    def lock(self, name: str, seconds: float) -> bool:
        """True for one caller per `seconds`: for work that one executor at a time does."""
        return bool(self.redis.set(name, "1", nx=True, px=int(seconds * 1000)))

    @_translated
    def counts(self) -> dict[str, int]:
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.scard(self.keys.queued)
            pipe.scard(self.keys.running)
            queued, running = pipe.execute()
        return {"active": queued + running, "queued": queued, "running": running}

    def _task_keys(self, task_id: str) -> list[str]:
        keys = self.keys
        return [keys.task(task_id), keys.queued, keys.running, keys.lease(task_id), keys.outbox]
