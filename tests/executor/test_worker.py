"""A real executor process against the real Redis and RabbitMQ."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import threading
import time
import uuid

import pytest

from colsum import broker
from colsum import store as task_store
from colsum.errors import SourceChanged
from colsum.task import LocalSource, Task, TaskStatus, instant
from executor import worker as worker_module
from executor.storage import storages
from executor.worker import Runner, Worker
from tests.conftest import HEADER, ROW, finished, slow_source, wait_for


def test_a_bad_file_fails_its_task_and_the_executor_goes_on(settings, services, store, submit):
    (settings.data_dir / "bad.csv").write_text(HEADER + ROW + ROW.replace("10", "ten"))
    (settings.data_dir / "good.csv").write_text(HEADER + ROW + ROW)
    services.executor()
    bad, good = submit("bad.csv"), submit("good.csv")
    failed = wait_for(lambda: finished(store, bad))
    assert failed.status is TaskStatus.FAILED
    assert failed.error == "line 3, column 10: 'ten' is not a number"
    done = wait_for(lambda: finished(store, good))
    assert done.status is TaskStatus.DONE
    assert done.result == {"rows": 2, "columns": [{"column": 10, "name": "c10", "sum": 20}]}


def test_a_missing_file_fails_its_task_naming_the_path(settings, services, store, submit):
    services.executor()
    task_id = submit("nowhere/none.csv")
    task = wait_for(lambda: finished(store, task_id))
    assert task.status is TaskStatus.FAILED
    assert "file not found: nowhere/none.csv" in task.error


def test_a_redelivered_finished_task_is_acked_without_redoing_it(
    settings, services, store, submit, publisher, channel
):
    (settings.data_dir / "a.csv").write_text(HEADER + ROW)
    services.executor()
    task_id = submit("a.csv")
    done = wait_for(lambda: finished(store, task_id))
    publisher.publish(done.id)  # as RabbitMQ redelivers after a lost ack
    wait_for(
        lambda: channel.queue_declare(settings.amqp_queue, passive=True).method.message_count == 0
    )
    time.sleep(0.3)
    assert store.get(done.id) == done


def test_a_message_that_is_not_a_task_is_dropped_and_the_executor_goes_on(
    settings, services, store, submit, channel
):
    (settings.data_dir / "a.csv").write_text(HEADER + ROW)
    executor = services.executor()
    channel.basic_publish(settings.amqp_exchange, "task", b"garbage")
    task_id = submit("a.csv")
    assert wait_for(lambda: finished(store, task_id)).status is TaskStatus.DONE
    assert "dropping a message" in executor.log


def test_a_task_longer_than_the_heartbeat_timeout_keeps_its_connection(
    settings, services, store, submit
):
    slow = slow_source(seconds=8)
    executor = services.executor(AMQP_URL=f"{settings.amqp_url}?heartbeat=2", **slow.env)
    task_id = submit(slow.s3())
    task = wait_for(lambda: finished(store, task_id), timeout=30)
    assert task.status is TaskStatus.DONE
    assert "connection lost" not in executor.log


def test_sigterm_lets_the_task_in_hand_finish_then_exits_0(settings, services, store, submit):
    release = threading.Event()
    slow = slow_source(release=release)
    executor = services.executor(**slow.env)
    task_id = submit(slow.s3())
    wait_for(lambda: store.get(task_id).status is TaskStatus.RUNNING)
    executor.process.terminate()
    time.sleep(0.5)
    assert executor.process.poll() is None  # still finishing
    release.set()
    assert executor.process.wait(10) == 0
    assert store.get(task_id).status is TaskStatus.DONE


def test_a_task_not_finished_within_the_grace_goes_back_to_the_queue(
    settings, services, store, submit, channel
):
    release = threading.Event()
    slow = slow_source(release=release)
    executor = services.executor(STOP_GRACE="1", **slow.env)
    task_id = submit(slow.s3())
    wait_for(lambda: store.get(task_id).status is TaskStatus.RUNNING)
    executor.process.terminate()
    assert executor.process.wait(10) == 0
    release.set()
    queue = channel.queue_declare(settings.amqp_queue, passive=True).method
    assert queue.message_count == 1


def test_a_task_handed_back_at_a_stop_does_not_count_as_a_delivery(
    settings, services, store, submit, channel
):
    slow = slow_source(release=threading.Event())
    executor = services.executor(STOP_GRACE="1", **slow.env)
    task_id = submit(slow.s3())
    wait_for(lambda: store.get(task_id).status is TaskStatus.RUNNING)
    executor.process.terminate()
    assert executor.process.wait(15) == 0
    _, properties, body = channel.basic_get(settings.amqp_queue)
    assert broker.decode(body) == task_id
    assert (properties.headers or {}).get("x-delivery-count", 0) == 0  # not a death
    assert broker.delivery_count(properties) == 1  # the record's attempt goes on counting
    assert store.redis.get(store.keys.lease(task_id)) is None  # the next may take it at once


class ChangingStorage:
    """A storage whose file is replaced mid-read on the first `changes` reads."""

    def __init__(self, changes: int) -> None:
        self.changes = changes
        self.opens = 0

    def open(self, source, stats, label, cancel=None, client=None):
        self.opens += 1
        if self.opens <= self.changes:
            return _Raising(SourceChanged(f"{source.path} was replaced while it was being read"))
        return io.BytesIO((HEADER + ROW).encode())


class _Raising(io.RawIOBase):
    def __init__(self, error: Exception) -> None:
        self.error = error

    def readable(self) -> bool:
        return True

    def readinto(self, buffer):
        raise self.error


def run_in_process(settings, store, storage) -> Task:
    task = Task(source=LocalSource(path="a.csv"))
    store.create(task)
    Worker(settings, store, {"local": storage}).process(task.id)
    return store.get(task.id)


def test_a_file_replaced_during_the_read_is_summed_again_from_the_start(settings, store):
    storage = ChangingStorage(changes=1)
    task = run_in_process(settings, store, storage)
    assert task.status is TaskStatus.DONE
    assert storage.opens == 2


def test_a_file_replaced_twice_fails_its_task(settings, store):
    task = run_in_process(settings, store, ChangingStorage(changes=2))
    assert task.status is TaskStatus.FAILED
    assert task.error == "a.csv was replaced while it was being read, twice; not summed"


def test_json_logs_carry_the_task_id_on_every_line_about_the_task(
    settings, services, store, submit
):
    (settings.data_dir / "bad.csv").write_text(HEADER + ROW.replace("10", "ten"))
    executor = services.executor(LOG_FORMAT="json")
    task_id = submit("bad.csv")
    wait_for(lambda: finished(store, task_id))
    executor.stop()
    lines = [json.loads(line) for line in executor.log.splitlines() if line.strip()]
    about_it = [line for line in lines if task_id in line["message"]]
    assert len(about_it) >= 2  # taking it, failing it
    assert all(line.get("task_id") == task_id for line in about_it)
    assert {"time", "level", "logger", "message"} <= set(lines[0])


# -- an executor on a thread of the test, to reach inside it ------------------------------


@contextlib.contextmanager
def worker_thread(settings, store, storage_map=None):
    """A Worker consuming on a thread of the test; stopped (warm) at the end."""
    worker = Worker(settings, store, storage_map or storages(settings))
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        yield worker, thread
    finally:
        worker.stop()
        thread.join(20)


class GatedStorage:
    """Local files, except `gated.csv`: its first read blocks until `release`, and finds
    the file empty."""

    def __init__(self, settings) -> None:
        self.local = storages(settings)["local"]
        self.release = threading.Event()
        self.closed_at: float | None = None

    def open(self, source, stats, label, cancel=None, client=None):
        if source.path != "gated.csv":
            return self.local.open(source, stats, label)
        return _Gated(self)


class _Gated(io.RawIOBase):
    def __init__(self, storage: GatedStorage) -> None:
        self.storage = storage

    def readable(self) -> bool:
        return True

    def readinto(self, buffer):
        self.storage.release.wait()
        return 0

    def close(self) -> None:
        if not self.closed:
            self.storage.closed_at = time.time()
        super().close()


def stamp(text: str) -> float:
    return instant(text).timestamp()


def test_a_task_that_raises_while_its_result_is_recorded_fails_and_the_executor_goes_on(
    settings, store, submit, monkeypatch
):
    (settings.data_dir / "a.csv").write_text(HEADER + ROW)
    record = store.complete_and_dispatch

    def complete(task_id, result, **fields):
        if not calls:
            calls.append(task_id)
            raise ValueError("Exceeds the limit (4300 digits) for integer string conversion")
        return record(task_id, result, **fields)

    calls: list[str] = []
    monkeypatch.setattr(store, "complete_and_dispatch", complete)
    with worker_thread(settings, store) as (_, thread):
        first, second = submit("a.csv"), submit("a.csv")
        failed = wait_for(lambda: finished(store, first))
        assert failed.status is TaskStatus.FAILED
        assert failed.error.startswith("internal error: ValueError('Exceeds the limit")
        assert wait_for(lambda: finished(store, second)).status is TaskStatus.DONE
        assert thread.is_alive()


def test_each_result_lets_the_next_task_in_without_waiting_for_the_sweeper(settings, store, submit):
    """The next task is dispatched by the script that records a result (one executor: one
    task in the queue at a time), and run by the executor that recorded it."""
    (settings.data_dir / "a.csv").write_text(HEADER + ROW)
    with worker_thread(settings, store):
        ids = [submit("a.csv") for _ in range(3)]
        wait_for(lambda: all(finished(store, task_id) for task_id in ids))
        assert [store.get(task_id).status for task_id in ids] == [TaskStatus.DONE] * 3


@contextlib.contextmanager
def published_messages(settings, channel):
    """The ids of the tasks published to the test's exchange meanwhile, from a queue of
    the test's own bound beside the executors' one."""
    spy = channel.queue_declare("", exclusive=True).method.queue
    channel.queue_bind(spy, settings.amqp_exchange, routing_key=broker.ROUTING_KEY)
    seen: list[str] = []
    yield seen
    while (message := channel.basic_get(spy, auto_ack=True))[0] is not None:
        seen.append(broker.decode(message[2]))


def test_the_tasks_a_result_lets_in_run_on_its_executor_without_a_trip_through_rabbitmq(
    settings, store, submit, channel
):
    (settings.data_dir / "a.csv").write_text(HEADER + ROW)
    with published_messages(settings, channel) as seen:
        ids = [submit("a.csv") for _ in range(3)]  # the window is 1: two wait in the backlog
        with worker_thread(settings, store):
            wait_for(lambda: all(finished(store, task_id) for task_id in ids))
    assert [store.get(task_id).status for task_id in ids] == [TaskStatus.DONE] * 3
    assert seen == ids[:1]


def test_past_chain_seconds_after_its_delivery_the_next_task_goes_through_rabbitmq(
    settings, store, submit, channel, monkeypatch
):
    monkeypatch.setattr(worker_module, "CHAIN_SECONDS", 0.0)
    (settings.data_dir / "a.csv").write_text(HEADER + ROW)
    with published_messages(settings, channel) as seen:
        ids = [submit("a.csv") for _ in range(3)]
        with worker_thread(settings, store):
            wait_for(lambda: all(finished(store, task_id) for task_id in ids))
    assert seen == ids


def test_while_it_runs_a_task_from_the_backlog_its_executor_is_sent_no_other_message(
    settings, store, submit, channel, publisher
):
    """It keeps its last message unacked: RabbitMQ leaves a new one for a free executor."""
    (settings.data_dir / "a.csv").write_text(HEADER + ROW)
    storage = GatedStorage(settings)
    first, gated = submit("a.csv"), submit("gated.csv")
    with worker_thread(settings, store, {"local": storage}):
        wait_for(lambda: store.get(gated).status is TaskStatus.RUNNING)
        publisher.publish(first)  # any message: a duplicate of a finished task
        time.sleep(0.5)
        queue = channel.queue_declare(settings.amqp_queue, passive=True).method
        assert queue.message_count == 1
        storage.release.set()
        wait_for(lambda: finished(store, gated))


@pytest.mark.settings(stop_grace=1)
def test_a_task_from_the_backlog_not_finished_within_the_grace_goes_back_to_the_queue(
    settings, store, submit, channel
):
    (settings.data_dir / "a.csv").write_text(HEADER + ROW)
    storage = GatedStorage(settings)
    first, gated = submit("a.csv"), submit("gated.csv")
    with worker_thread(settings, store, {"local": storage}) as (worker, thread):
        wait_for(lambda: store.get(gated).status is TaskStatus.RUNNING)
        worker.stop()
        thread.join(10)
    storage.release.set()
    assert store.get(first).status is TaskStatus.DONE
    _, properties, body = channel.basic_get(settings.amqp_queue, auto_ack=True)
    assert broker.decode(body) == gated
    assert broker.delivery_count(properties) == 1
    assert channel.queue_declare(settings.amqp_queue, passive=True).method.message_count == 0


def test_confirmed_tasks_no_claim_took_leave_the_outbox_once_they_waited(settings, store):
    """The executor marks what it published with its next claim; while it runs a long
    task (or idles) it marks them on their own, before the sweeper would publish them."""
    waited, fresh = uuid.uuid4().hex, uuid.uuid4().hex
    store.redis.zadd(store.keys.outbox, {waited: time.time(), fresh: time.time()})
    worker = Worker(settings, store, storages(settings))
    now = time.monotonic()
    worker._confirmed.extend([(waited, now - 5), (fresh, now)])
    worker._mark_published(waited=1.0)
    assert store.unpublished(older_than=-60) == [fresh]
    worker._mark_published()
    assert store.unpublished(older_than=-60) == []


def test_an_unexpected_error_in_the_consume_loop_does_not_end_the_executor(settings, store, submit):
    (settings.data_dir / "a.csv").write_text(HEADER + ROW)
    with worker_thread(settings, store) as (worker, thread):
        sweep, raised = worker.sweeper.maybe_sweep, threading.Event()

        def broken() -> None:
            worker.sweeper.maybe_sweep = sweep
            raised.set()
            raise RuntimeError("a bug")

        worker.sweeper.maybe_sweep = broken
        assert raised.wait(10)
        task_id = submit("a.csv")
        assert wait_for(lambda: finished(store, task_id), timeout=20).status is TaskStatus.DONE
        assert thread.is_alive()


def test_a_cancelled_task_has_stopped_before_the_executor_takes_the_next(settings, store, submit):
    (settings.data_dir / "a.csv").write_text(HEADER + ROW)
    storage = GatedStorage(settings)
    with worker_thread(settings, store, {"local": storage}):
        gated = submit("gated.csv")
        wait_for(lambda: store.get(gated).status is TaskStatus.RUNNING)
        store.cancel(gated)
        following = submit("a.csv")
        threading.Timer(1.5, storage.release.set).start()  # the read ends 1.5 s later
        done = wait_for(lambda: finished(store, following))
        assert storage.closed_at is not None
        assert stamp(done.started_at) >= storage.closed_at - 0.01
        assert store.get(gated).status is TaskStatus.CANCELLED


@pytest.mark.settings(lease=1.5)
@pytest.mark.settings(dispatch_window=2)  # room for `following` beside the taken-over task
def test_an_executor_whose_task_was_taken_over_stops_it_and_writes_nothing(settings, store, submit):
    (settings.data_dir / "a.csv").write_text(HEADER + ROW)
    storage = GatedStorage(settings)
    with worker_thread(settings, store, {"local": storage}) as (worker, _):
        gated = submit("gated.csv")
        wait_for(lambda: store.get(gated).status is TaskStatus.RUNNING)
        # Its lease lapsed unseen (a pause), and another executor took the task over.
        store.redis.set(store.keys.lease(gated), "other:1", px=60_000)
        store.redis.hset(store.keys.task(gated), mapping={"executor": "other:1", "attempt": 2})
        wait_for(lambda: worker._current is None)
        storage.release.set()
        following = submit("a.csv")
        assert wait_for(lambda: finished(store, following)).status is TaskStatus.DONE
        task = store.get(gated)
        assert (task.status, task.executor, task.result) == (TaskStatus.RUNNING, "other:1", None)


def test_a_duplicate_message_of_a_task_running_elsewhere_is_acked_and_left_to_it(
    settings, store, publisher, channel, caplog
):
    task = Task(source=LocalSource(path="a.csv"))
    store.create(task)
    store.claim(task.id, "alive:1", attempt=1, lease=3)
    renewing = threading.Event()

    def renew() -> None:  # as the live executor does, every third of its lease
        while not renewing.wait(1):
            store.renew_lease(task.id, "alive:1", lease=3)

    threading.Thread(target=renew, daemon=True).start()
    try:
        with caplog.at_level(logging.INFO), worker_thread(settings, store):
            publisher.publish(task.id)  # a copy, say from a sweeper that saw the lease lapse
            wait_for(lambda: "alive:1 is running it; nothing to do" in caplog.text, timeout=15)
        assert store.get(task.id).executor == "alive:1"
        assert channel.queue_declare(settings.amqp_queue, passive=True).method.message_count == 0
    finally:
        renewing.set()


class _Channel:
    """Records acks: the dead-letter handler's only use of its channel."""

    def __init__(self) -> None:
        self.acked: list[int] = []

    def basic_ack(self, tag: int) -> None:
        self.acked.append(tag)


def test_a_dead_letter_that_cannot_be_recorded_is_kept_for_later(settings, redis_server):
    store = task_store.TaskStore(task_store.connect(redis_server.url), settings.redis_prefix)
    redis_server.stop()
    worker = Worker(settings, store, storages(settings))
    channel, method = _Channel(), type("Method", (), {"delivery_tag": 7})()
    worker._on_dead_letter(channel, method, None, broker.encode("0" * 32))  # raises nothing
    assert channel.acked == []  # RabbitMQ delivers it again after the reconnection


def test_tasks_one_after_another_run_on_one_thread():
    runner = Runner()
    threads = []
    for _ in range(3):
        runner.run(lambda: threads.append(threading.current_thread())).result(timeout=5)
    assert len(set(threads)) == 1
    assert threads[0] is not threading.current_thread()


def test_a_task_that_does_not_stop_keeps_its_thread_and_the_next_gets_another():
    runner, release = Runner(), threading.Event()
    stuck = runner.run(lambda: release.wait(10))
    threads = []
    runner.run(lambda: threads.append(threading.current_thread())).result(timeout=5)
    assert not stuck.done()
    release.set()
    stuck.result(timeout=5)
    runner.run(lambda: threads.append(threading.current_thread())).result(timeout=5)
    assert threads[0] is threads[1]


def test_what_a_task_raises_reaches_its_future_and_the_thread_goes_on():
    runner = Runner()
    with pytest.raises(ValueError, match="boom"):
        runner.run(lambda: int("boom")).result(timeout=5)
    assert runner.run(lambda: None).result(timeout=5) is None
