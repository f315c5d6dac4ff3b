"""GET /executors: the live executors, and a dead one dropping out."""

from __future__ import annotations

import signal
import threading
import time

import pytest
import requests

from tests.conftest import slow_source, wait_for
from tests.e2e.client import submit

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def executors(api: str) -> list[dict]:
    return requests.get(f"{api}/executors", timeout=10).json()["executors"]


def test_live_executors_are_listed_and_a_killed_one_drops_out(settings, services):
    slow = slow_source(release=threading.Event())
    api = services.backend()
    first, second = services.executor(**slow.env), services.executor(**slow.env)
    wait_for(lambda: len(executors(api)) == 2, timeout=20)
    task_id = submit(api, slow.source("hung.csv"))
    busy = wait_for(lambda: [e for e in executors(api) if e["current_task"] == task_id], 20)
    assert busy[0]["pid"] in (first.process.pid, second.process.pid)
    assert busy[0]["id"] == f"{busy[0]['host']}:{busy[0]['pid']}"

    idle = second if busy[0]["pid"] == first.process.pid else first
    idle.process.send_signal(signal.SIGKILL)
    left = wait_for(lambda: len(executors(api)) == 1 and executors(api), timeout=25)
    assert left[0]["pid"] != idle.process.pid


def test_a_cancelled_task_is_no_longer_shown_as_its_executors_current_task(settings, services):
    release = threading.Event()
    slow = slow_source(release=release)
    api = services.backend()
    services.executor(**slow.env)
    task_id = submit(api, slow.source("hung.csv"))
    wait_for(lambda: [e for e in executors(api) if e["current_task"] == task_id], 20)
    assert requests.delete(f"{api}/tasks/{task_id}", timeout=10).status_code == 200
    time.sleep(1.5)  # the executor has seen the cancellation: the task is to stop
    release.set()  # and so it does, as its read returns
    wait_for(lambda: executors(api) and not executors(api)[0]["current_task"], 20)
