"""The sweeper against the real Redis, RabbitMQ and S3 (moto): orphans published again
once, lost messages replaced without flooding a backlog, expired uploads deleted."""

from __future__ import annotations

import dataclasses
import os
import time

import pytest

from colsum import uploads
from colsum.task import LocalSource, Task, TaskStatus
from executor.sweeper import Sweeper
from tests.conftest import HEADER, ROW, finished, free_port, wait_for


def ready(channel, settings) -> int:
    return channel.queue_declare(settings.amqp_queue, passive=True).method.message_count


def created(store, publisher=None) -> Task:
    task = Task(source=LocalSource(path="a.csv"))
    store.create(task)
    if publisher is not None:
        publisher.publish(task.id)
    store.published(task.id)
    return task


def sweeper(settings, store, **changes) -> Sweeper:
    return Sweeper(dataclasses.replace(settings, **changes), store)


def test_an_abandoned_task_is_published_again_once(settings, store, channel):
    task = created(store)
    store.claim(task.id, "vanished:1", attempt=1, lease=0.01)
    time.sleep(0.05)  # its lease runs out
    sweep = sweeper(settings, store)
    for _ in range(3):
        sweep.sweep()
    assert ready(channel, settings) == 1
    sweep.close()


def test_an_abandoned_task_claimed_and_abandoned_again_is_published_again(settings, store, channel):
    task = created(store)
    store.claim(task.id, "vanished:1", attempt=1, lease=0.01)
    time.sleep(0.05)
    sweep = sweeper(settings, store)
    sweep.sweep()
    store.claim(task.id, "vanished:2", attempt=2, lease=0.01)
    time.sleep(0.05)
    sweep.sweep()
    assert ready(channel, settings) == 2
    sweep.close()


@pytest.mark.settings(dispatch_window=10)  # all five are dispatched at once
def test_queued_tasks_whose_messages_were_lost_are_published_again_once_per_grace(
    settings, store, publisher, channel
):
    for _ in range(3):
        created(store, publisher)  # a backlog: each has its message
    for _ in range(2):
        created(store)  # their messages were lost
    sweep = sweeper(settings, store, queued_grace=0.2)
    time.sleep(0.3)
    sweep.sweep()
    assert ready(channel, settings) == 5  # the shortfall, no more
    sweep.sweep()
    assert ready(channel, settings) == 5  # nothing is missing now
    sweep.close()


def test_a_backlog_within_its_grace_is_left_alone(settings, store, channel):
    created(store)  # its message was lost, but it waited less than the grace
    sweep = sweeper(settings, store, queued_grace=300)
    sweep.sweep()
    assert ready(channel, settings) == 0
    sweep.close()


def test_a_task_whose_queue_was_purged_is_done_anyway(
    settings, services, store, publisher, channel
):
    (settings.data_dir / "a.csv").write_text(HEADER + ROW)
    task = created(store, publisher)
    channel.queue_purge(settings.amqp_queue)  # an operator's mistake, or lost broker data
    services.executor(SWEEP_INTERVAL="0.2", QUEUED_GRACE="0.5")
    assert wait_for(lambda: finished(store, task.id)).status is TaskStatus.DONE


def upload(settings, task_id: str, age: float):
    path = settings.data_dir / uploads.name(task_id)
    path.parent.mkdir(exist_ok=True)
    path.write_text(HEADER + ROW)
    stamp = time.time() - age
    os.utime(path, (stamp, stamp))
    return path


def test_uploads_are_deleted_once_their_record_expired(settings, store):
    ttl = 3600
    expired = upload(settings, Task(source=LocalSource(path="x")).id, age=ttl + 60)
    kept = created(store)
    alive = upload(settings, kept.id, age=ttl + 60)  # still queued: its record is there
    young = upload(settings, Task(source=LocalSource(path="x")).id, age=60)
    other = settings.data_dir / "uploads" / "notes.txt"
    other.write_text("not an upload")
    os.utime(other, (0, 0))
    sweeper(settings, store, record_ttl=ttl).sweep()
    assert not expired.exists()
    assert alive.exists() and young.exists() and other.exists()


def test_uploads_are_looked_at_a_batch_per_sweep(settings, store, monkeypatch):
    monkeypatch.setattr("executor.sweeper.UPLOAD_BATCH", 2)
    paths = [upload(settings, Task(source=LocalSource(path="x")).id, age=7200) for _ in range(5)]
    sweep = sweeper(settings, store, record_ttl=3600)
    sweep.sweep()
    assert sum(path.exists() for path in paths) == 3
    sweep.sweep()
    sweep.sweep()
    assert not any(path.exists() for path in paths)


def test_uploads_in_the_upload_bucket_are_deleted_once_their_record_expired(bucket, store):
    settings = dataclasses.replace(bucket.settings, upload_bucket=bucket.name, record_ttl=0)
    expired = Task(source=LocalSource(path="x")).id
    kept = created(store).id
    for task_id in (expired, kept):
        bucket.put(uploads.name(task_id), (HEADER + ROW).encode())
    bucket.put("elsewhere/x.csv", b"")
    time.sleep(1)  # S3 times have whole seconds
    Sweeper(settings, store).sweep()
    keys = {item["Key"] for item in bucket.client.list_objects_v2(Bucket=bucket.name)["Contents"]}
    assert keys == {uploads.name(kept), "elsewhere/x.csv"}


def test_a_sweep_that_cannot_reach_rabbitmq_is_skipped_without_raising(settings, store, caplog):
    task = created(store)
    store.claim(task.id, "vanished:1", attempt=1, lease=0.01)
    time.sleep(0.05)
    nowhere = f"amqp://guest:guest@127.0.0.1:{free_port()}/%2F"
    sweep = sweeper(settings, store, amqp_url=nowhere)
    sweep.maybe_sweep()  # in the consume loop: must not end the executor
    assert "sweep skipped: RabbitMQ is unavailable" in caplog.text
