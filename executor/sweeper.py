"""Finding orphans, which RabbitMQ cannot know about, so that no task waits for ever.

- A task recorded but never published: its backend died between writing the record and
  RabbitMQ's confirm. It stays in the outbox, and is published again.
- A running task whose lease ran out: its executor vanished while the broker still thought
  it alive (a partition, a frozen host). It is published again for another executor.

Both are safe to do twice: claiming and finishing a task are idempotent. One executor at a
time sweeps, every `sweep_interval` seconds, under a lock in Redis.
"""

from __future__ import annotations

import logging
import time

from colsum.broker import Publisher, Topology
from colsum.settings import Settings
from colsum.store import TaskStore

log = logging.getLogger(__name__)


class Sweeper:
    def __init__(self, settings: Settings, store: TaskStore) -> None:
        self.settings = settings
        self.store = store
        self._publisher: Publisher | None = None
        self._next = 0.0

    def maybe_sweep(self) -> None:
        """Sweep if it is time and no other executor is sweeping."""
        if time.monotonic() < self._next:
            return
        self._next = time.monotonic() + self.settings.sweep_interval
        if self.store.lock(self.store.keys.sweeper, self.settings.sweep_interval):
            self.sweep()

    def sweep(self) -> None:
        for task_id in self.store.unpublished(older_than=self.settings.outbox_grace):
            log.warning("task %s was recorded but never published; publishing it", task_id)
            self._publish(task_id)
            self.store.published(task_id)
        for task_id in self.store.abandoned():
            log.warning("task %s lost its executor (lease expired); publishing it again", task_id)
            self._publish(task_id)

    def _publish(self, task_id: str) -> None:
        if self._publisher is None:
            self._publisher = Publisher(
                self.settings.amqp_url, Topology.from_settings(self.settings)
            )
        self._publisher.publish(task_id)

    def close(self) -> None:
        if self._publisher is not None:
            self._publisher.close()
