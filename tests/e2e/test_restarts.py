"""Backend and executors ride out a Redis restart, a lost broker connection, a full Redis."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import pytest
import redis
import requests

from tests.conftest import HEADER, ROW
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
