"""Nothing lost, nothing stuck: executors killed, poison tasks, hung tasks, orphans."""

from __future__ import annotations

import signal
import threading

import pytest

from colsum.task import LocalSource, Task, TaskStatus
from tests.conftest import HEADER, ROW, finished, slow_source, wait_for

pytestmark = pytest.mark.slow


def running_on(store, task_id: str, attempt: int) -> Task | None:
    task = store.get(task_id)
    return task if task.status is TaskStatus.RUNNING and task.attempt == attempt else None


def holder(services, task: Task):
    """The executor process named on the task's record."""
    pid = int(task.executor.rsplit(":", 1)[1])
    return next(s for s in services.started if s.process.pid == pid)


def test_a_task_whose_executor_dies_is_taken_over_and_finished_once(
    settings, services, store, submit
):
    release = threading.Event()
    slow = slow_source(release=release)
    services.executor(**slow.env, LEASE="2")
    task_id = submit(slow.s3())
    first = wait_for(lambda: running_on(store, task_id, attempt=1))
    holder(services, first).process.send_signal(signal.SIGKILL)
    services.executor(**slow.env, LEASE="2")

    second = wait_for(lambda: running_on(store, task_id, attempt=2), timeout=20)
    assert second.executor != first.executor
    release.set()
    done = wait_for(lambda: finished(store, task_id))
    assert done.status is TaskStatus.DONE
    assert done.result == {"rows": 1, "columns": [{"column": 10, "name": "c10", "sum": 10}]}
    assert (done.executor, done.attempt) == (second.executor, 2)


def test_a_task_an_executor_took_from_the_backlog_is_taken_over_when_it_dies(
    settings, services, store, submit
):
    """No message carried it (see Worker._run_dispatched): the sweeper publishes it again
    once its lease lapsed."""
    release = threading.Event()
    slow = slow_source(release=release)
    (settings.data_dir / "a.csv").write_text(HEADER + ROW)
    first, task_id = submit("a.csv"), submit(slow.s3())  # the window is 1: one in the backlog
    env = {**slow.env, "LEASE": "2", "SWEEP_INTERVAL": "0.5"}
    services.executor(**env)
    taken = wait_for(lambda: running_on(store, task_id, attempt=1))
    holder(services, taken).process.send_signal(signal.SIGKILL)
    services.executor(**env)

    again = wait_for(lambda: (t := store.get(task_id)).executor != taken.executor and t, timeout=20)
    release.set()
    done = wait_for(lambda: finished(store, task_id))
    assert (done.status, done.executor) == (TaskStatus.DONE, again.executor)
    assert done.result == {"rows": 1, "columns": [{"column": 10, "name": "c10", "sum": 10}]}
    assert store.get(first).status is TaskStatus.DONE


@pytest.mark.settings(delivery_limit=1)
def test_a_task_that_keeps_killing_its_executor_fails_after_the_delivery_limit(
    settings, services, store, submit
):
    slow = slow_source(release=threading.Event())
    services.executor(**slow.env, LEASE="2")
    task_id = submit(slow.s3("poison.csv"))
    for attempt in (1, 2):
        task = wait_for(lambda attempt=attempt: running_on(store, task_id, attempt), timeout=20)
        holder(services, task).process.send_signal(signal.SIGKILL)
        services.executor(**slow.env, LEASE="2")
    failed = wait_for(lambda: finished(store, task_id), timeout=20)
    assert failed.status is TaskStatus.FAILED
    assert failed.error.startswith("gave up after 2 deliveries")
    assert store.counts() == {"active": 0, "queued": 0, "running": 0}


def test_a_task_over_its_time_limit_fails_and_the_executor_goes_on(
    settings, services, store, submit
):
    slow = slow_source(release=threading.Event())
    (settings.data_dir / "a.csv").write_text(HEADER + ROW)
    services.executor(TASK_TIME_LIMIT="1", **slow.env)
    hung, after = submit(slow.s3("hung.csv")), submit("a.csv")
    failed = wait_for(lambda: finished(store, hung))
    assert failed.status is TaskStatus.FAILED
    assert failed.error == "stopped: ran longer than TASK_TIME_LIMIT (1 s)"
    assert wait_for(lambda: finished(store, after)).status is TaskStatus.DONE


def test_a_task_recorded_but_never_published_is_published_by_the_sweeper(settings, services, store):
    (settings.data_dir / "a.csv").write_text(HEADER + ROW)
    task = Task(source=LocalSource(path="a.csv"))
    store.create(task)  # and then the backend died, before publishing
    services.executor(SWEEP_INTERVAL="0.2", OUTBOX_GRACE="0.5")
    assert wait_for(lambda: finished(store, task.id)).status is TaskStatus.DONE


def test_a_running_task_whose_lease_ran_out_is_taken_over(settings, services, store):
    (settings.data_dir / "a.csv").write_text(HEADER + ROW)
    task = Task(source=LocalSource(path="a.csv"))
    store.create(task)
    # An executor took it, then vanished without RabbitMQ noticing; it renews nothing.
    store.claim(task.id, "vanished:1", attempt=1, lease=0.5)
    services.executor(SWEEP_INTERVAL="0.2")
    done = wait_for(lambda: finished(store, task.id))
    assert done.status is TaskStatus.DONE
    assert done.executor != "vanished:1"


def test_a_finished_record_expires_after_the_record_ttl(store):
    task = Task(source=LocalSource(path="a.csv"))
    store.create(task)
    store.complete(task.id, {"rows": 0, "columns": []})
    assert 0 < store.redis.ttl(store.keys.task(task.id)) <= store.record_ttl
    assert store.counts() == {"active": 0, "queued": 0, "running": 0}
