"""The connections a backend process uses, created once per gunicorn worker."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from flask import current_app

from colsum.broker import Publisher, Topology
from colsum.clients import ClientRegistry
from colsum.settings import Settings
from colsum.store import TaskStore


@dataclass
class Services:
    settings: Settings
    store: TaskStore
    clients: ClientRegistry
    _publishers: threading.local = field(default_factory=threading.local)

    @classmethod
    def from_settings(cls, settings: Settings) -> Services:
        # Nothing connects here: redis-py opens connections on first command (its pool is
        # thread-safe), and a publisher on first publish, so each gunicorn worker gets its
        # own after the fork.
        task_store = TaskStore.from_settings(settings)
        return cls(
            settings=settings,
            store=task_store,
            clients=ClientRegistry(
                task_store.redis, settings.redis_prefix, task_store.read_quickly
            ),
        )

    @property
    def publisher(self) -> Publisher:
        """One per thread: pika's BlockingConnection must not be shared between threads."""
        publisher = getattr(self._publishers, "publisher", None)
        if publisher is None:
            topology = Topology.from_settings(self.settings)
            publisher = self._publishers.publisher = Publisher(self.settings.amqp_url, topology)
        return publisher


def services() -> Services:
    return current_app.extensions["colsum"]
