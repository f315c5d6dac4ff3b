"""The connections a backend process uses, created once per gunicorn worker."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app

from colsum import store
from colsum.broker import Publisher, Topology
from colsum.settings import Settings
from colsum.store import TaskStore


@dataclass
class Services:
    settings: Settings
    store: TaskStore
    publisher: Publisher

    @classmethod
    def from_settings(cls, settings: Settings) -> Services:
        # Neither connects here: redis-py opens connections on first command, and the
        # publisher on first publish, so each gunicorn worker gets its own after the fork.
        return cls(
            settings=settings,
            store=TaskStore(
                store.connect(settings.redis_url), settings.redis_prefix, settings.record_ttl
            ),
            publisher=Publisher(settings.amqp_url, Topology.from_settings(settings)),
        )


def services() -> Services:
    return current_app.extensions["colsum"]
