"""Fixtures: real Redis and RabbitMQ, each test in its own key prefix and its own queue.

With CI=true a service that does not answer fails the run; elsewhere its tests are skipped.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pika
import pytest
import redis
import requests
from moto.server import ThreadedMotoServer

from backend import create_app
from colsum import broker
from colsum.broker import Publisher
from colsum.s3client import make_client
from colsum.settings import Settings
from colsum.store import TaskStore
from colsum.task import LocalSource, S3Source, Task
from tests.slowsource import SlowSource

ROOT = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI") == "true"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """schemathesis gives the test of every API operation one node id, and pytest-xdist
    then ran the first of them alone (2 of 30 under make test). Each gets its own, from
    its name (which holds the operation); tests that still share an id stop the run."""
    for item in items:
        if getattr(item, "operation_label", None) and not item.nodeid.endswith(item.name):
            if hasattr(item, "_id"):  # pytest 9 keeps the id in parts
                item._id = item.parent.id.child(item.name)
            else:
                item._nodeid = f"{item.parent.nodeid}::{item.name}"
    counts = collections.Counter(item.nodeid for item in items)
    if shared := sorted(nodeid for nodeid, count in counts.items() if count > 1):
        raise pytest.UsageError(f"tests that share a node id (xdist runs one of each): {shared}")


def _unavailable(message: str) -> None:
    if IN_CI:
        pytest.fail(f"{message} (CI=true: a missing service fails the run)", pytrace=False)
    pytest.skip(message)


def wait_for(check: Callable[[], object], timeout: float = 10, interval: float = 0.05):
    """Poll until check() is truthy and return its value; fail the test after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"gave up after {timeout}s waiting for {check}")
        time.sleep(interval)


@pytest.fixture(scope="session")
def redis_url() -> str:
    url = os.environ.get("REDIS_URL") or Settings().redis_url
    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except redis.RedisError as error:
        _unavailable(f"Redis does not answer at {url}: {error}")
    return url


@pytest.fixture(scope="session")
def amqp_url() -> str:
    url = os.environ.get("AMQP_URL") or Settings().amqp_url
    try:
        broker.connect(url).close()
    except broker.CONNECTION_ERRORS as error:
        _unavailable(f"RabbitMQ does not answer at {url}: {error!r}")
    return url


@pytest.fixture
def settings(request, redis_url: str, amqp_url: str, tmp_path: Path) -> Iterator[Settings]:
    """Settings whose Redis keys, exchange and queue belong to this test alone; a test
    marked `@pytest.mark.settings(name=value)` changes those fields."""
    name = f"colsum-test-{uuid.uuid4().hex[:12]}"
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    marker = request.node.get_closest_marker("settings")
    yield own_settings(name, redis_url, amqp_url, data_dir, **(marker.kwargs if marker else {}))
    remove_test_data(redis_url, amqp_url, name)


def own_settings(
    name: str, redis_url: str, amqp_url: str, data_dir: Path, **fields: object
) -> Settings:
    """Settings under `name` (Redis prefix, exchange, queue), quick to give up on storage;
    `fields` add to them or change them."""
    defaults = {"web_workers": 2, "storage_attempts": 2, "storage_max_wait": 0.1, "stop_grace": 5}
    return Settings(
        **{**defaults, **fields},
        redis_url=redis_url,
        amqp_url=amqp_url,
        data_dir=data_dir,
        redis_prefix=f"{name}:",
        amqp_exchange=name,
        amqp_queue=name,
    )


def remove_test_data(redis_url: str, amqp_url: str, name: str) -> None:
    """Delete the Redis keys, queues and exchanges a test made under `name`."""
    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter(match=f"{name}:*", count=1000):
        client.delete(key)
    connection = broker.connect(amqp_url)
    channel = connection.channel()
    for queue in (name, f"{name}.dead"):
        channel.queue_delete(queue)
    for exchange in (name, f"{name}.dead"):
        channel.exchange_delete(exchange)
    connection.close()


@pytest.fixture
def store(settings: Settings) -> TaskStore:
    return TaskStore.from_settings(settings)


@pytest.fixture
def channel(settings: Settings) -> Iterator[pika.adapters.blocking_connection.BlockingChannel]:
    """A channel on the test's own queue, declared as the services declare it."""
    connection = broker.connect(settings.amqp_url)
    channel = connection.channel()
    broker.Topology.from_settings(settings).declare(channel)
    yield channel
    if connection.is_open:
        connection.close()


@pytest.fixture
def app(settings: Settings):
    app = create_app(settings)
    yield app
    app.extensions["colsum"].publisher.close()


@pytest.fixture
def client(app):
    return app.test_client()


def environment(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment that gives a `python -m backend|executor` process these settings."""
    return {
        **os.environ,
        "REDIS_URL": settings.redis_url,
        "AMQP_URL": settings.amqp_url,
        "DATA_DIR": str(settings.data_dir),
        "REDIS_PREFIX": settings.redis_prefix,
        "AMQP_EXCHANGE": settings.amqp_exchange,
        "AMQP_QUEUE": settings.amqp_queue,
        "WEB_CONCURRENCY": str(settings.web_workers),
        "STORAGE_ATTEMPTS": str(settings.storage_attempts),
        "STORAGE_MAX_WAIT": str(settings.storage_max_wait),
        "STOP_GRACE": str(settings.stop_grace),
        "STORAGE_BUDGET": str(settings.storage_budget),
        "DELIVERY_LIMIT": str(settings.delivery_limit),
        "AWS_URL": settings.aws_url or "",
        "AWS_ID": settings.aws_id or "",
        "AWS_SECRET": settings.aws_secret or "",
        "S3_READ_TIMEOUT": str(settings.s3_read_timeout),
        **extra,
    }


@dataclass
class Service:
    """A `python -m backend|executor` process whose output goes to a log file."""

    process: subprocess.Popen
    log_path: Path

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def terminate(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def stop(self, timeout: float = 15) -> int:
        self.terminate()
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


@dataclass
class Services:
    settings: Settings
    logs: Path
    started: list[Service] = field(default_factory=list)

    def start(self, module: str, limit_data: int | None = None, **env: str) -> Service:
        """`limit_data` caps the process's data segment (RLIMIT_DATA), in bytes."""
        log_path = self.logs / f"{module}-{len(self.started)}.log"

        def limit() -> None:
            if limit_data is not None:
                resource.setrlimit(resource.RLIMIT_DATA, (limit_data, limit_data))

        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", module],
                cwd=ROOT,
                env=environment(self.settings, **env),
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=limit,
            )
        service = Service(process, log_path)
        self.started.append(service)
        return service

    def executor(self, **env: str) -> Service:
        return self.start("executor", **env)

    def backend(self, limit_data: int | None = None, **env: str) -> str:
        """Start the API on a free port and return its base URL once it answers."""
        port = free_port()
        service = self.start("backend", limit_data, HOST="127.0.0.1", PORT=str(port), **env)
        url = f"http://127.0.0.1:{port}"

        def answers() -> bool:
            assert service.process.poll() is None, f"backend exited:\n{service.log}"
            try:
                return requests.get(f"{url}/tasks/active", timeout=1).status_code == 200
            except requests.ConnectionError:
                return False

        wait_for(answers, timeout=20)
        return url


@pytest.fixture
def services(settings: Settings, tmp_path: Path) -> Iterator[Services]:
    """Starts real service processes for this test, and stops them all afterwards."""
    started = Services(settings, tmp_path)
    yield started
    # All at once: each takes a second or two to stop gracefully.
    for service in started.started:
        service.terminate()
    for service in started.started:
        service.stop()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    """A moto S3 server over real HTTP on a free port, for the whole test session."""
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@dataclass
class Bucket:
    """A fresh bucket on the moto server, and the settings that reach it."""

    name: str
    client: object
    settings: Settings

    def put(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.name, Key=key, Body=data)

    def upload(self, key: str, path: Path) -> None:
        self.client.upload_file(str(path), self.name, key)


@pytest.fixture
def bucket(settings: Settings, moto_url: str) -> Iterator[Bucket]:
    s3_settings = dataclasses.replace(
        settings,
        aws_url=moto_url,
        aws_id="testing",
        aws_secret="testing",
        s3_read_timeout=5,
    )
    client = make_client(s3_settings)
    name = f"test-{uuid.uuid4().hex[:16]}"
    client.create_bucket(Bucket=name)
    yield Bucket(name, client, s3_settings)
    delete_bucket(client, name)


def delete_bucket(client, name: str) -> None:
    """Delete a test's bucket and everything in it."""
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=name):
        for item in page.get("Contents", []):
            client.delete_object(Bucket=name, Key=item["Key"])
    client.delete_bucket(Bucket=name)


@dataclass
class RedisServer:
    """A redis-server of the test's own, persisting with AOF, that the test may restart."""

    port: int
    directory: Path
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, *options: str) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes",
                "--dir",
                str(self.directory),
                "--maxmemory-policy",
                "noeviction",
                *options,
            ],
            stdout=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        wait_for(lambda: _answers(client), timeout=10)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()


def _answers(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    if not shutil.which("redis-server"):
        _unavailable("redis-server is not installed (Debian package redis-server)")
    server = RedisServer(free_port(), tmp_path / "redis")
    server.directory.mkdir()
    server.start()
    yield server
    server.stop()


HEADER = ",".join(f"c{i}" for i in range(1, 11)) + "\n"
ROW = "1,2,3,4,5,6,7,8,9,10\n"


@pytest.fixture
def publisher(settings: Settings) -> Iterator[Publisher]:
    publisher = Publisher(settings.amqp_url, broker.Topology.from_settings(settings))
    yield publisher
    publisher.close()


@pytest.fixture
def submit(store: TaskStore, publisher: Publisher) -> Callable[[str], str]:
    """Create and publish a task for a file below DATA_DIR (or any source), as the backend
    does."""

    def submit(source: str | S3Source) -> str:
        task = Task(source=LocalSource(path=source) if isinstance(source, str) else source)
        for dispatched in store.create(task):
            publisher.publish(dispatched)
            store.published(dispatched)
        return task.id

    return submit


def finished(store: TaskStore, task_id: str) -> Task | None:
    task = store.get(task_id)
    return task if task and task.status.finished else None


def slow_source(seconds: float = 0, release: threading.Event | None = None) -> SlowSource:
    return SlowSource((HEADER + ROW).encode(), len(HEADER), seconds, release)
