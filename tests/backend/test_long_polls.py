"""Long polls against a real backend (gunicorn, uvicorn workers): however many clients wait, the
backend keeps threads for every other request."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import requests

from colsum.store import TaskStore
from tests.conftest import wait_for

THREADS = 8  # Flask's threads per worker (WEB_THREADS' default)
SLOTS = THREADS - 2  # long polls one worker holds at once
WAITING = THREADS + 4  # more long polls than the worker has threads
PROMPT = 10  # seconds: far below a long poll's 60, far above any real answer


def test_long_polls_beyond_the_threads_never_block_other_requests(services, store: TaskStore):
    url = services.backend(WEB_CONCURRENCY="1")  # one worker: every request meets the polls
    body = {"storage": "local", "path": "sample.csv"}
    task_id = requests.post(f"{url}/tasks", json=body, timeout=PROMPT).json()["id"]

    def long_poll() -> requests.Response:
        return requests.get(f"{url}/tasks/{task_id}?wait=60", timeout=90)

    with ThreadPoolExecutor(WAITING) as pool:
        polls = [pool.submit(long_poll) for _ in range(WAITING)]
        try:
            # The polls beyond the slots are answered at once, and asked to come back.
            early = wait_for(lambda: _answered(polls, WAITING - SLOTS), timeout=PROMPT)
            assert {(r.status_code, r.json()["status"]) for r in early} == {(200, "queued")}
            assert all(r.headers["Retry-After"] == "1" for r in early)
            # The others hold their threads, and leave two free for everything else.
            assert requests.get(f"{url}/healthz", timeout=PROMPT).json() == {"status": "ok"}
            shown = requests.get(f"{url}/tasks/{task_id}", timeout=PROMPT).json()
            assert shown["status"] == "queued"
            assert requests.post(f"{url}/tasks", json=body, timeout=PROMPT).status_code == 202
            assert len(_answered(polls, 0)) == WAITING - SLOTS
        finally:
            store.fail(task_id, "finished by the test")  # the held polls answer now
        held = [poll.result(PROMPT) for poll in polls]
    assert sum(r.json()["status"] == "failed" for r in held) == SLOTS


def _answered(polls, at_least: int) -> list[requests.Response] | None:
    done = [poll.result() for poll in polls if poll.done()]
    return done if len(done) >= at_least else None
