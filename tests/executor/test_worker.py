"""A real executor process against the real Redis and RabbitMQ."""

from __future__ import annotations

import io
import json
import threading
import time

from colsum.errors import SourceChanged
from colsum.task import LocalSource, Task, TaskStatus
from executor.worker import Worker
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


class ChangingStorage:
    """A storage whose file is replaced mid-read on the first `changes` reads."""

    def __init__(self, changes: int) -> None:
        self.changes = changes
        self.opens = 0

    def open(self, source, stats, label):
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
