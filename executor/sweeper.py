"""Finding orphans, which RabbitMQ cannot know about, so that no task waits for ever, and
clearing what expired records leave behind.

- A task recorded but never published: its backend died between writing the record and
  RabbitMQ's confirm. It stays in the outbox, and is published again.
- A running task whose lease ran out: its executor vanished while the broker still thought
  it alive (a partition, a frozen host). It is published again for another executor, once:
  the record is marked `republished_at`, and the mark is cleared when the task is claimed
  (should that executor vanish too, the task is published again), or after `queued_grace`
  (should the message be lost as well).
- A running part of a split task (executor/split.py) whose lease ran out: the same. A
  part in the outbox is published again as a task is.
- A queued task whose message is gone (the queue was purged or deleted, the broker lost
  its data). Nothing tells it from a task waiting in a long backlog but the count: while
  the queue holds at least as many ready messages as there are queued records, every
  record may have its message, and nothing is published. Otherwise the shortfall, taken
  from the oldest queued records that waited `queued_grace` seconds since they were last
  published, is published again, each at most once per `queued_grace`. A duplicate costs
  little: the claim of the second message finds the task finished or held, and acks it.
- A task left in its client's backlog though there is room in the queue: the process that
  should have dispatched it (colsum/fair_queue.py) died first. Each sweep dispatches.
- Expired records: their ids are dropped from the indexes (`tasks`, `status:*`) and from
  the webhook deliveries, and their uploads (`colsum.uploads`) are deleted once older than
  `record_ttl`, whether under DATA_DIR or in UPLOAD_BUCKET, in every layout: per client,
  and flat as before clients.

Publishing is safe to do twice: claiming and finishing a task are idempotent. One executor
at a time sweeps, every `sweep_interval` seconds, under a lock in Redis; each step does a
bounded amount of work per sweep (the walks over indexes and uploads go on from where the
last sweep stopped, whichever executor ran it), so a sweep never holds up the consumer.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from colsum import fair_queue, uploads
from colsum.broker import Publisher, Topology
from colsum.errors import BrokerUnavailable, StoreUnavailable
from colsum.s3client import make_client
from colsum.settings import Settings
from colsum.store import TaskStore, part_of

log = logging.getLogger(__name__)

REPUBLISH_BATCH = 100  # tasks published again per sweep, of each kind
PRUNE_BATCH = 1000  # index entries looked at per sweep, of each index
UPLOAD_BATCH = 100  # uploads looked at per sweep, in each place


class Sweeper:
    def __init__(self, settings: Settings, store: TaskStore) -> None:
        self.settings = settings
        self.store = store
        self._publisher: Publisher | None = None
        self._s3: Any = None
        self._next = 0.0

    def maybe_sweep(self) -> None:
        """Sweep if it is time and no other executor is sweeping. Never raises: a sweep
        that fails is logged, and the next one tries again."""
        if time.monotonic() < self._next:
            return
        self._next = time.monotonic() + self.settings.sweep_interval
        try:
            if self.store.lock(self.store.keys.sweeper, self.settings.sweep_interval):
                self.sweep()
        except (BrokerUnavailable, StoreUnavailable) as error:
            log.warning("sweep skipped: %s", error)
        except Exception:
            log.exception("sweep failed")

    def sweep(self) -> None:
        for task_id in self.store.unpublished(older_than=self.settings.outbox_grace):
            log.warning("task %s was recorded but never published; publishing it", task_id)
            self._publish(task_id)
            self.store.published(task_id)
        grace = self.settings.queued_grace
        for task_id in self.store.abandoned(grace, REPUBLISH_BATCH):
            log.warning("task %s lost its executor (lease expired); publishing it again", task_id)
            self._publish(task_id)
        for part_id in self.store.abandoned_parts(grace, REPUBLISH_BATCH):
            log.warning("part %s lost its executor (lease expired); publishing it again", part_id)
            self._publish(part_id)
        self._publish_lost_queued()
        # Whatever event should have dispatched a task and did not (its process died).
        fair_queue.publish_all(self.store.dispatch(), self._publish, self.store.published)
        if dropped := self.store.prune(PRUNE_BATCH):
            log.info("dropped %d expired tasks from the indexes", dropped)
        self._delete_expired_uploads()

    def _publish_lost_queued(self) -> None:
        missing = self.store.published_queued() - self._publisher_().queue_depth()
        if missing <= 0:
            return
        limit = min(missing, REPUBLISH_BATCH)
        grace = self.settings.queued_grace
        stale = self.store.stale_queued(grace, limit)
        stale += self.store.stale_queued_parts(grace, limit - len(stale))
        for some_id in stale:
            log.warning(
                "%s %s has been queued long, its message may be lost; publishing it again",
                "part" if part_of(some_id) else "task",
                some_id,
            )
            self._publish(some_id)

    def _publish(self, task_id: str) -> None:
        self._publisher_().publish(task_id)

    def _publisher_(self) -> Publisher:
        if self._publisher is None:
            self._publisher = Publisher(
                self.settings.amqp_url, Topology.from_settings(self.settings)
            )
        return self._publisher

    # -- uploads --------------------------------------------------------------------------

    def _delete_expired_uploads(self) -> None:
        try:
            self._delete_local_uploads()
        except OSError as error:
            log.warning("cannot clear expired uploads in DATA_DIR: %s", error)
        if self.settings.upload_bucket:
            try:
                self._delete_s3_uploads(self.settings.upload_bucket)
            except (BotoCoreError, ClientError) as error:
                log.warning("cannot clear expired uploads in UPLOAD_BUCKET: %s", error)

    def _delete_local_uploads(self) -> None:
        """A batch of UPLOAD_BATCH entries looked at (folders and files), from where the
        last sweep stopped, in each local layout (colsum/uploads.py)."""
        after = tuple(filter(None, (self.store.cursor("uploads:local") or "").split("/")))
        old = time.time() - self.settings.record_ttl
        candidates: dict[str, str] = {}
        last: tuple[str, ...] = ()
        walk = upload_entries(self.settings.data_dir, after, self.settings.client_dirs)
        for looked, last in enumerate(walk, 1):
            name = "/".join(last)
            task_id = uploads.task_id(name)
            path = self.settings.data_dir / name
            if task_id and path.is_file() and path.stat().st_mtime < old:
                candidates[name] = task_id
            if looked == UPLOAD_BATCH:
                break
        else:
            last = ()  # the walk is over: the next sweep starts again from the beginning
        for name in self._without_record(candidates):
            log.info("deleting the upload %s: its task expired", name)
            (self.settings.data_dir / name).unlink(missing_ok=True)
        self.store.cursor("uploads:local", "/".join(last))

    def _delete_s3_uploads(self, bucket: str) -> None:
        if self._s3 is None:
            self._s3 = make_client(self.settings)
        after = self.store.cursor("uploads:s3") or ""
        listed = self._s3.list_objects_v2(
            Bucket=bucket,
            Prefix=f"{uploads.FOLDER}/",
            StartAfter=after or f"{uploads.FOLDER}/",
            MaxKeys=UPLOAD_BATCH,
        )
        objects = listed.get("Contents", [])
        old = time.time() - self.settings.record_ttl
        candidates = {
            item["Key"]: task_id
            for item in objects
            if (task_id := uploads.task_id(item["Key"])) and item["LastModified"].timestamp() < old
        }
        for key in self._without_record(candidates):
            log.info("deleting the upload s3://%s/%s: its task expired", bucket, key)
            self._s3.delete_object(Bucket=bucket, Key=key)
        truncated = listed.get("IsTruncated") and objects
        self.store.cursor("uploads:s3", objects[-1]["Key"] if truncated else "")

    def _without_record(self, candidates: dict[str, str]) -> list[str]:
        """The names among `candidates` (name: task id) whose task has no record."""
        names = list(candidates)
        found = self.store.exist([candidates[name] for name in names])
        return [name for name, exists in zip(names, found, strict=True) if not exists]

    def close(self) -> None:
        if self._publisher is not None:
            self._publisher.close()


def upload_entries(
    data_dir: Path, after: tuple[str, ...] = (), client_dirs: bool = False
) -> Iterator[tuple[str, ...]]:
    """The entries where uploads may be, as path parts relative to DATA_DIR, in order,
    those after `after` only: DATA_DIR/uploads/ (flat uploads, and a folder per client
    holding its own), and with CLIENT_DIRS each DATA_DIR/<client>/uploads/. Only these
    folders are Colsum's: elsewhere a file with an upload's name is somebody's data.

    Lazy, and a folder that lies wholly before `after` is not listed, so that a sweep's
    work is bounded by what it takes, not by how many uploads there are.
    """

    def names(parts: tuple[str, ...]) -> list[str]:
        try:
            return sorted(entry.name for entry in os.scandir(data_dir.joinpath(*parts)))
        except (FileNotFoundError, NotADirectoryError):
            return []

    def below(parts: tuple[str, ...], depth: int) -> Iterator[tuple[str, ...]]:
        """The entries of a folder (and, `depth` deep, of the folders in it), in order."""
        for name in names(parts):
            entry = (*parts, name)
            if entry < after[: len(entry)]:
                continue  # wholly before the cursor, folder or file
            if entry > after:
                yield entry
            if depth and (data_dir.joinpath(*entry)).is_dir():
                yield from below(entry, depth - 1)

    roots = {(uploads.FOLDER,): 1}  # the flat uploads, and a folder per client
    if client_dirs:
        roots |= {
            (client, uploads.FOLDER): 0
            for client in names(())
            if client != uploads.FOLDER and uploads.CLIENT.fullmatch(client)
        }
    for root in sorted(roots):
        if root >= after[: len(root)]:
            yield from below(root, roots[root])
