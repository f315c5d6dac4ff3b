"""`make chaos`, smaller: every task ends as expected while processes fail around it."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from tests.conftest import ROOT, _unavailable

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_every_task_ends_as_expected_through_kills_and_restarts(redis_url, amqp_url):
    if not (shutil.which("rabbitmqctl") and shutil.which("redis-server")):
        _unavailable("the chaos check needs rabbitmqctl and redis-server")
    probe = subprocess.run(["rabbitmqctl", "-q", "list_vhosts"], capture_output=True, timeout=60)
    if probe.returncode != 0:
        _unavailable("the chaos check needs rabbitmqctl to work (as root, or the rabbitmq user)")
    # Without --restart-broker: the broker drops the connections of the check's own vhost,
    # which is what clients see of a restart, and other users of the broker see nothing.
    command = [sys.executable, "scripts/chaos.py", "--tasks", "40", "--big-rows", "30000"]
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "duplicated writes      0" in run.stdout
