"""The fair queue with real executors: a client behind another's backlog is not kept
waiting for all of it."""

from __future__ import annotations

import pytest

from colsum import fair_queue
from colsum.task import LocalSource, Source, Task
from tests.conftest import HEADER, ROW, finished, slow_source, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def submit(store, publisher, client: str, source: Source) -> str:
    """As the backend does: record the task, publish what the fair queue dispatches."""
    task = Task(source=source, client=client)
    fair_queue.publish_all(store.create(task), publisher.publish, store.published)
    return task.id


def test_a_client_behind_a_backlog_finishes_before_the_backlog_drains(
    settings, services, store, publisher
):
    slow = slow_source(seconds=0.3)
    for _ in range(2):
        services.executor(**slow.env)
    wait_for(lambda: len(store.live_executors(ttl=15)) == 2, timeout=20)
    (settings.data_dir / "small.csv").write_text(HEADER + ROW)
    backlog = [submit(store, publisher, "a", slow.s3(f"{n}.csv")) for n in range(20)]
    late = submit(store, publisher, "b", LocalSource(path="small.csv"))
    wait_for(lambda: finished(store, late), timeout=20)
    assert store.counts("a")["queued"] > 0  # first in, first out would have run them all first
    wait_for(lambda: all(finished(store, task_id) for task_id in backlog), timeout=60)
