"""The task store's rules, against the real Redis: who may run a task, and what expired
records leave behind."""

from __future__ import annotations

import dataclasses
import gc
import socket
import threading
import time
import uuid

import pytest

from colsum.clients import ClientRegistry
from colsum.errors import StoreUnavailable
from colsum.store import Held, TaskStore
from colsum.task import LocalSource, Task, TaskStatus


def created(store) -> Task:
    task = Task(source=LocalSource(path="a.csv"))
    store.create(task)
    store.published(task.id)
    return task


def in_outbox(store) -> set[str]:
    return set(store.unpublished(older_than=-60))


def test_a_claim_takes_the_tasks_published_meanwhile_out_of_the_outbox(store):
    task = created(store)
    second, third = uuid.uuid4().hex, uuid.uuid4().hex
    store.redis.zadd(store.keys.outbox, {second: time.time(), third: time.time()})
    store.claim(task.id, "first:1", attempt=1, lease=30, published=[second])
    assert in_outbox(store) == {third}
    store.claim("0" * 32, "first:1", attempt=1, lease=30, published=[third])  # unknown
    assert in_outbox(store) == set()


def test_a_running_task_with_a_live_lease_is_not_claimed_by_another_executor(store):
    task = created(store)
    assert store.claim(task.id, "first:1", attempt=1, lease=30).status is TaskStatus.RUNNING
    refused = store.claim(task.id, "second:2", attempt=2, lease=30)
    assert isinstance(refused, Held)
    assert refused.executor == "first:1"
    assert 0 < refused.lease_left <= 30
    assert store.get(task.id).executor == "first:1"


def test_a_running_task_whose_lease_lapsed_is_claimed_by_another_executor(store):
    task = created(store)
    store.claim(task.id, "first:1", attempt=1, lease=30)
    store.redis.delete(store.keys.lease(task.id))  # as when the lease runs out
    taken = store.claim(task.id, "second:2", attempt=2, lease=30)
    assert (taken.executor, taken.attempt) == ("second:2", 2)


def test_an_executor_that_lost_its_task_writes_no_result(store):
    task = created(store)
    store.claim(task.id, "first:1", attempt=1, lease=30)
    store.redis.delete(store.keys.lease(task.id))
    store.claim(task.id, "second:2", attempt=2, lease=30)
    assert not store.complete(task.id, {"rows": 1, "columns": []}, holder="first:1")
    assert not store.fail(task.id, "boom", holder="first:1")
    assert not store.renew_lease(task.id, "first:1", lease=30)
    assert store.progress(task.id, "first:1", rows_read=5) is None
    record = store.get(task.id)
    assert (record.status, record.rows_read) == (TaskStatus.RUNNING, None)
    assert store.complete(task.id, {"rows": 1, "columns": []}, holder="second:2")


def test_a_lapsed_lease_is_taken_back_by_its_executor_while_nobody_else_claimed(store):
    task = created(store)
    store.claim(task.id, "first:1", attempt=1, lease=30)
    store.redis.delete(store.keys.lease(task.id))  # Redis was out of reach for a while
    assert store.renew_lease(task.id, "first:1", lease=30)
    assert store.redis.get(store.keys.lease(task.id)) == "first:1"


def test_a_cancelled_task_is_no_longer_its_executors_to_run(store):
    task = created(store)
    store.claim(task.id, "first:1", attempt=1, lease=30)
    store.cancel(task.id)
    assert not store.renew_lease(task.id, "first:1", lease=30)
    assert store.progress(task.id, "first:1", rows_read=5) is TaskStatus.CANCELLED


def test_a_webhook_attempt_after_the_record_expired_writes_nothing(store):
    task = created(store)
    store.redis.delete(store.keys.task(task.id))  # expired
    store.webhook_tried(task.id, 2, "pending", "timed out", retry_in=5)
    assert not store.redis.exists(store.keys.task(task.id))
    assert store.redis.zscore(store.keys.webhooks, task.id) is None


def test_a_due_webhook_whose_record_expired_is_dropped(store):
    task = created(store)
    store.redis.zadd(store.keys.webhooks, {task.id: 0})
    store.redis.delete(store.keys.task(task.id))
    assert store.due_webhook(claim_for=60) is None
    assert store.redis.zcard(store.keys.webhooks) == 0


def test_a_hash_without_an_id_is_skipped_by_pages_and_reads(store):
    task, ghost = created(store), created(store)
    store.redis.delete(store.keys.task(ghost.id))
    store.redis.hset(store.keys.task(ghost.id), "webhook_status", "failed")  # an old client's
    page = store.page(None, limit=10, cursor=None)
    assert [t.id for t in page.tasks] == [task.id]
    assert store.get(ghost.id) is None


def test_a_full_last_page_has_no_cursor(store):
    ids = [created(store).id for _ in range(4)]
    first = store.page(None, limit=2, cursor=None)
    assert [t.id for t in first.tasks] == ids[:1:-1]
    last = store.page(None, limit=2, cursor=first.next_cursor)
    assert [t.id for t in last.tasks] == ids[1::-1]
    assert last.next_cursor is None


def created_long_ago(store) -> Task:
    task = created(store)
    old = time.time() - store.record_ttl - 60
    store.redis.hset(store.keys.task(task.id), "queued_ts", old)
    return task


def test_pruning_drops_expired_tasks_from_every_index_a_batch_at_a_time(store):
    kept = created_long_ago(store)
    gone = [created_long_ago(store) for _ in range(5)]
    for task in gone:
        store.complete(task.id, {"rows": 0, "columns": []})
        store.redis.zadd(store.keys.webhooks, {task.id: 0})
        store.redis.delete(store.keys.task(task.id))  # RECORD_TTL ran out
    dropped = sum(store.prune(limit=2) for _ in range(4))
    assert dropped == 5 * 5  # tasks, status:done, webhooks, and the client's tasks, status:done
    assert store.redis.zrange(store.keys.tasks, 0, -1) == [kept.id]
    assert store.redis.zrange(store.keys.client_tasks(kept.client), 0, -1) == [kept.id]
    assert store.redis.zcard(store.keys.status(TaskStatus.DONE)) == 0
    assert store.redis.zcard(store.keys.client_status(kept.client, TaskStatus.DONE)) == 0
    assert store.redis.zcard(store.keys.webhooks) == 0


def test_pruning_looks_only_at_records_old_enough_to_have_expired(store):
    young = created(store)
    later = created(store)
    store.redis.delete(store.keys.task(later.id))  # discarded, say: not for the walk to find
    assert store.prune(limit=10) == 0
    assert store.redis.zcard(store.keys.tasks) == 2
    assert store.get(young.id) is not None


def test_pruning_deletes_a_hash_without_an_id(store):
    ghost = created_long_ago(store)
    store.redis.hdel(store.keys.task(ghost.id), "id")
    assert store.prune(limit=10) == 2  # from everyone's index and its client's
    assert not store.redis.exists(store.keys.task(ghost.id))


def test_a_script_redis_does_not_know_is_loaded_and_run(store):
    """As after a Redis restarted empty: the scripts every task runs go the quick way,
    which must load them itself."""
    script = store.redis.register_script(f"return ARGV[1] -- {uuid.uuid4()}")  # never sent
    assert store._run(script, [], ["hello"]) == "hello"
    assert store._run(script, [], [1.5]) == "1.5"


def test_a_quick_argument_that_redis_py_would_refuse_is_refused(store):
    for argument in (None, True, b"bytes"):
        with pytest.raises(TypeError):
            store._quickly(("ECHO", argument))


def test_a_thread_that_ends_gives_its_quick_connection_back(store):
    pool = store.redis.connection_pool
    thread = threading.Thread(target=store._quickly, args=(("PING",),))
    thread.start()
    thread.join()
    in_use = len(pool._in_use_connections)
    del thread
    gc.collect()
    assert len(pool._in_use_connections) == in_use - 1


def test_a_hurried_threads_token_lookup_gives_up_on_a_redis_that_hangs(settings):
    """The fast lane identifies a client's token on the event loop too."""
    with socket.socket() as hanging:
        hanging.bind(("127.0.0.1", 0))
        hanging.listen()
        url = f"redis://127.0.0.1:{hanging.getsockname()[1]}/0"
        store = TaskStore.from_settings(dataclasses.replace(settings, redis_url=url))
        clients = ClientRegistry(store.redis, "x:", store.read_quickly)
        store.hurry(0.2)
        started = time.monotonic()
        with pytest.raises(StoreUnavailable):
            clients.client_of("cs_token")
        assert time.monotonic() - started < 3


def test_a_hurried_thread_gives_up_on_a_redis_that_hangs(settings):
    """An event loop's reads (backend/asgi.py) must not wait the pool's 10 s."""
    with socket.socket() as hanging:  # connections wait in its backlog; nothing answers
        hanging.bind(("127.0.0.1", 0))
        hanging.listen()
        url = f"redis://127.0.0.1:{hanging.getsockname()[1]}/0"
        store = TaskStore.from_settings(dataclasses.replace(settings, redis_url=url))
        store.hurry(0.2)
        started = time.monotonic()
        with pytest.raises(StoreUnavailable):
            store.show(uuid.uuid4().hex)
        assert time.monotonic() - started < 3
