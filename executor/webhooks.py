"""Delivering finished tasks to their `callback_url`.

A thread of its own in each executor, so that a slow or failing receiver never delays the
next task. Deliveries wait in a sorted set in Redis, by due time; an executor claims one
for a minute, POSTs the task's final record as JSON, and records the attempt. A failure is
retried with doubling backoff, `webhook_attempts` times in all; a claim whose executor
died comes due again when it lapses.
"""

from __future__ import annotations

import json
import logging
import threading
import urllib.error
import urllib.request

from colsum import jsoncodec
from colsum.errors import StoreUnavailable
from colsum.settings import Settings
from colsum.store import TaskStore

log = logging.getLogger(__name__)

CLAIM_SECONDS = 60.0
TIMEOUT = 10.0  # seconds a receiver has to answer


def backoff(attempt: int, first: float) -> float:
    """Seconds before the next try, after `attempt` failed ones."""
    return first * 2 ** (attempt - 1)


class Webhooks:
    def __init__(self, settings: Settings, store: TaskStore) -> None:
        self.settings = settings
        self.store = store
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="webhooks", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()

    def _run(self) -> None:
        while not self._stopped.is_set():
            try:
                task_id = self.store.due_webhook(CLAIM_SECONDS)
                if task_id is None:
                    self._stopped.wait(0.2)
                else:
                    self.deliver(task_id)
            except StoreUnavailable as error:
                log.warning("webhooks: %s", error)
                self._stopped.wait(1)

    def deliver(self, task_id: str) -> None:
        task = self.store.get(task_id)
        if task is None or task.callback_url is None:
            return
        attempt = (task.webhook_attempts or 0) + 1
        body = jsoncodec.dumps(task.to_json()).encode()
        request = urllib.request.Request(
            task.callback_url,
            data=body,
            headers={"Content-Type": "application/json", "User-Agent": "colsum"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
                response.read()
        except (urllib.error.URLError, OSError, ValueError) as error:
            reason = _describe(error)
            if attempt >= self.settings.webhook_attempts:
                log.warning("task %s: webhook failed for good: %s", task_id, reason)
                self.store.webhook_tried(task_id, attempt, "failed", reason, retry_in=None)
            else:
                delay = backoff(attempt, self.settings.webhook_backoff)
                log.info("task %s: webhook failed (%s); again in %.1fs", task_id, reason, delay)
                self.store.webhook_tried(task_id, attempt, "pending", reason, retry_in=delay)
            return
        log.info("task %s: webhook delivered (attempt %d)", task_id, attempt)
        self.store.webhook_tried(task_id, attempt, "delivered", None, retry_in=None)


def _describe(error: Exception) -> str:
    if isinstance(error, urllib.error.HTTPError):
        return f"the receiver answered {error.code}"
    return json.dumps(str(getattr(error, "reason", error)))[1:-1]
