"""Backend and executors ride out a Redis restart, a lost broker connection, a full Redis."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis
import requests

from colsum import store as task_store
from colsum.task import LocalSource, S3Source, Task, TaskStatus
from tests.conftest import HEADER, ROW, slow_source, wait_for
from tests.conftest import finished as finished_in
from tests.e2e.client import finished, local, submit
from tests.tcpproxy import TCPProxy

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_tasks_go_on_across_a_redis_restart_without_restarting_a_process(
    settings, services, redis_server
):
    (settings.data_dir / "a.csv").write_text(HEADER + ROW)
    api = services.backend(REDIS_URL=redis_server.url)
    services.executor(REDIS_URL=redis_server.url)
    before = submit(api, local("a.csv"))
    assert finished(api, before)["status"] == "done"

    redis_server.restart()

    after = submit(api, local("a.csv"))
    assert finished(api, after)["status"] == "done"
    assert finished(api, before)["status"] == "done"  # kept by the AOF


def test_tasks_go_on_after_the_broker_drops_every_connection(settings, services):
    (settings.data_dir / "a.csv").write_text(HEADER + ROW)
    target = urlsplit(settings.amqp_url)
    proxy = TCPProxy(target.hostname or "127.0.0.1", target.port or 5672)
    netloc = f"{target.username}:{target.password}@127.0.0.1:{proxy.port}"
    via_proxy = urlunsplit(target._replace(netloc=netloc))
    try:
        api = services.backend(AMQP_URL=via_proxy)
        services.executor(AMQP_URL=via_proxy)
        assert finished(api, submit(api, local("a.csv")))["status"] == "done"

        proxy.cut()  # as a RabbitMQ restart does

        assert finished(api, submit(api, local("a.csv")), timeout=30)["status"] == "done"
    finally:
        proxy.close()


def test_a_full_redis_answers_503_and_keeps_what_it_has(settings, services, redis_server):
    redis_server.stop()
    redis_server.start("--maxmemory", "2mb")
    api = services.backend(REDIS_URL=redis_server.url)
    client = redis.Redis.from_url(redis_server.url)
    with pytest.raises(redis.exceptions.OutOfMemoryError):
        for n in range(10_000):
            client.set(f"ballast:{n}", "x" * 1000)
    response = requests.post(f"{api}/tasks", json=local("a.csv"), timeout=10)
    assert response.status_code == 503
    assert response.json() == {"error": "the task store is unavailable; try again shortly"}
    assert client.dbsize() > 0


def published(store, publisher, source: str | S3Source) -> Task:
    task = Task(source=LocalSource(path=source) if isinstance(source, str) else source)
    store.create(task)
    publisher.publish(task.id)
    store.published(task.id)
    return task


@pytest.mark.settings(delivery_limit=2)
def test_a_redis_outage_longer_than_the_delivery_limit_fails_no_task(
    settings, services, redis_server, publisher
):
    (settings.data_dir / "a.csv").write_text(HEADER + ROW)
    store = task_store.TaskStore(task_store.connect(redis_server.url), settings.redis_prefix)
    services.executor(REDIS_URL=redis_server.url)
    wait_for(lambda: store.live_executors(15), timeout=20)
    task = Task(source=LocalSource(path="a.csv"))
    store.create(task)
    store.published(task.id)
    redis_server.stop()
    publisher.publish(task.id)  # taken while Redis is down
    time.sleep(10)  # reconnections back off 1, 2, 4 s...: more than DELIVERY_LIMIT of them
    redis_server.start()
    done = wait_for(lambda: finished_in(store, task.id), timeout=30)
    assert done.status is TaskStatus.DONE, done.error
    assert done.result == {"rows": 1, "columns": [{"column": 10, "name": "c10", "sum": 10}]}


def test_a_redis_outage_while_a_task_runs_neither_stops_it_nor_drops_its_message(
    settings, services, redis_server, publisher
):
    release = threading.Event()
    slow = slow_source(release=release)
    store = task_store.TaskStore(task_store.connect(redis_server.url), settings.redis_prefix)
    executor = services.executor(REDIS_URL=redis_server.url, **slow.env)
    task = published(store, publisher, slow.s3())
    wait_for(lambda: store.get(task.id).status is TaskStatus.RUNNING, timeout=20)
    redis_server.stop()
    time.sleep(3)  # progress reports and lease renewals fail meanwhile
    redis_server.start()
    release.set()
    done = wait_for(lambda: finished_in(store, task.id), timeout=30)
    assert (done.status, done.attempt) == (TaskStatus.DONE, 1)
    assert "lost RabbitMQ or Redis" not in executor.log  # it kept its connection and message


def test_a_task_keeps_its_executor_when_the_broker_drops_the_connection_mid_task(
    settings, services, store, publisher
):
    release = threading.Event()
    slow = slow_source(release=release)
    target = urlsplit(settings.amqp_url)
    proxy = TCPProxy(target.hostname or "127.0.0.1", target.port or 5672)
    netloc = f"{target.username}:{target.password}@127.0.0.1:{proxy.port}"
    via_proxy = urlunsplit(target._replace(netloc=netloc))
    try:
        services.executor(AMQP_URL=via_proxy, LEASE="1.5", **slow.env)
        task = published(store, publisher, slow.s3())
        first = wait_for(lambda: (t := store.get(task.id)).status is TaskStatus.RUNNING and t)
        services.executor(AMQP_URL=via_proxy, LEASE="1.5", **slow.env)  # gets the redelivery
        wait_for(lambda: len(store.live_executors(15)) == 2, timeout=20)
        proxy.cut()
        time.sleep(4)  # longer than the lease: the first one must have renewed it
        release.set()
        done = wait_for(lambda: finished_in(store, task.id), timeout=30)
        assert done.status is TaskStatus.DONE
        assert done.executor == first.executor
    finally:
        proxy.close()


def test_a_backend_worker_leaves_when_its_master_is_killed(services):
    """Else it serves on, and holds the port the next start needs."""
    backend = urlsplit(services.backend(WEB_CONCURRENCY="1"))
    master = services.started[0].process
    (worker,) = [
        int(pid)
        for pid in Path(f"/proc/{master.pid}/task/{master.pid}/children").read_text().split()
    ]

    master.kill()
    master.wait()

    wait_for(lambda: not Path(f"/proc/{worker}").exists() or _zombie(worker), timeout=10)
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://{backend.netloc}/healthz", timeout=5)


def _zombie(pid: int) -> bool:
    return Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0] == "Z"
