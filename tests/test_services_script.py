"""scripts/services.py, as `make run` and `make test` call it."""

from __future__ import annotations

import subprocess
import sys
from urllib.parse import urlsplit

import pytest

from tests.conftest import ROOT, environment, free_port

SCRIPT = str(ROOT / "scripts" / "services.py")


def services_script(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, SCRIPT, *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env=env,
    )


def test_passwords_in_service_urls_are_masked_in_what_it_prints(settings):
    # 127.0.0.2: nobody answers, and it is not a host the script would start a server on.
    redis_url = f"redis://:s3cret-redis@127.0.0.2:{free_port()}/0"
    amqp_url = f"amqp://guest:s3cret-amqp@127.0.0.2:{free_port()}/%2F"
    env = environment(settings, REDIS_URL=redis_url, AMQP_URL=amqp_url)

    run = services_script("--", "true", **env)

    assert run.returncode == 1
    printed = run.stdout + run.stderr
    assert "s3cret" not in printed
    assert f"Redis does not answer at redis://:***@{redis_url.split('@')[1]}" in printed
    assert f"RabbitMQ does not answer at amqp://guest:***@{amqp_url.split('@')[1]}" in printed


@pytest.mark.e2e
def test_a_second_run_on_a_port_in_use_says_so_and_never_announces_up(settings, services):
    first = urlsplit(services.backend())  # the Colsum already running
    env = environment(settings, HOST="127.0.0.1", PORT=str(first.port))

    run = services_script("--announce", "--", sys.executable, "-m", "backend", **env)

    assert run.returncode == 1
    assert "Colsum is up" not in run.stdout
    assert (
        f"port {first.port} is in use on 127.0.0.1: another Colsum? Stop it, or choose "
        f"another port: make run PORT={first.port + 1}"
    ) in run.stderr


def test_a_malformed_service_url_is_a_message_not_a_traceback(settings):
    env = environment(settings, REDIS_URL="localhost:6379", AMQP_URL="amqp://[::1")

    run = services_script("--", "true", **env)

    assert run.returncode == 1
    assert "Traceback" not in run.stderr
    assert "Redis does not answer at localhost:6379" in run.stderr
    assert "RabbitMQ does not answer at amqp://[::1" in run.stderr
