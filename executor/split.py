"""One big file summed by many executors: a task over SPLIT_SIZE bytes becomes parts.

The executor that takes such a task reads a CSV's header once (summing.open_csv; a file of
integers has none), records the parts, byte ranges of the data (executor/parts.py), in
Redis (colsum/store.py) and publishes them to the tasks' queue: any executor takes any
part, with a lease, progress, cancel and redelivery as for a task. The parts go straight
to the queue, not through the fair queue: the task was dispatched once, as a whole. A part
id waits in the outbox until RabbitMQ confirmed it, so the sweeper publishes one whose
publisher died in between.

Each part records its sums or its error and its quote counts; the one whose outcome comes
last (the store says which, atomically) merges them and finishes the task, once: done with
the exact sums, failed with the file's first error, or, if the parts cannot tell where
records start (executor/parts.py), marked to be summed again as one stream, which the next
executor to take it does. A part whose storage keeps failing goes back to the queue alone,
up to DELIVERY_LIMIT times; a changed file (another ETag, another inode, size or mtime)
has the task summed again as one stream, as the unsplit path reads a changed file again
from the start.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from colsum import fair_queue
from colsum.broker import Publisher, Topology
from colsum.errors import (
    BrokerUnavailable,
    InvalidCSV,
    InvalidNumbers,
    PermanentError,
    SourceChanged,
    TaskInterrupted,
    TransientError,
)
from colsum.settings import Settings
from colsum.store import TaskStore, owner, part_of
from colsum.task import Task
from executor import evens, parts, summing
from executor.storage import ReadStats, Storage

log = logging.getLogger(__name__)


class Splitter:
    """What an executor does for split tasks: splitting them, summing parts, merging."""

    def __init__(
        self, settings: Settings, store: TaskStore, storages: dict[str, Storage], executor: str
    ) -> None:
        self.settings = settings
        self.store = store
        self.storages = storages
        self.executor = executor
        self._publisher: Publisher | None = None
        self._lock = threading.Lock()  # a task stopped late may still publish beside the next

    def wants(self, task: Task) -> bool:
        """Whether the task is to be split if its file is big enough."""
        return self.settings.split_size > 0 and not task.unsplit

    def sum_or_split(
        self, task: Task, stream: Any, stats: ReadStats, cancel: threading.Event | None
    ) -> dict[str, Any] | None:
        """The task's result if its file is summed here, in one stream; None once it is
        split, its parts published (TaskInterrupted if it was no longer ours to split)."""
        counted = parts.Counting(stream)
        threads = self.settings.executor_threads or None
        if task.op == "sum_even":  # no header: the first read tells the size
            opening, first = None, counted.read(summing.FIRST_READ)
            start, whole = 0, len(first) < summing.FIRST_READ
        else:
            opening = summing.open_csv(counted, task.header, task.delimiter, cancel)
            if opening is None:
                return summing.Sums(rows=0, columns=[]).to_result()
            start, whole = counted.count - len(opening.rest), opening.whole
        size = stats.bytes_total or 0
        ranges = [] if whole else parts.plan(start, size, self.settings.split_size)
        if len(ranges) < 2:
            if opening is None:
                found = evens.sum_even(counted, cancel, stats.count_rows, threads, first)
                return found.to_result()
            sums = summing.sum_opened(counted, opening, cancel, stats.count_rows, threads)
            return sums.to_result()
        split = parts.opening_to_record(opening, stats.version)
        read = {**stats.to_record(), "bytes_read": start}  # the header's: parts read on
        ids = self.store.split(task.id, self.executor, split, ranges, size, read)
        if not ids:
            raise TaskInterrupted("no longer this executor's to split")
        log.info(
            "task %s: split into %d parts of about %d bytes",
            task.id,
            len(ids),
            ranges[0][1] - start,
        )
        self._publish(ids)
        return None

    def sum_part(
        self,
        part_id: str,
        claim: tuple[dict[str, str], dict[str, str]] | str,
        stats: ReadStats,
        cancel: threading.Event | None,
    ) -> None:
        """Sum a claimed part and record its outcome; the last merges. `claim` is the
        store's answer: the part's and its task's records, or "finished"."""
        task_id = owner(part_id)
        if claim == "finished":  # redelivered: its outcome is in, the merge may not be
            self.merge(task_id)
            return
        part, record = claim
        task = Task.from_redis(record)
        opening, version = parts.opening_from_record(record["split"])
        start, end, first = int(part["start"]), int(part["end"]), part["first"] == "1"
        storage = self.storages[task.source.storage]
        label = f"task {task_id} part {part_of(part_id)[1]}"
        log.info("%s: summing bytes %d to %d of %s", label, start, end, task.source.describe())
        try:
            with storage.open(
                task.source,
                stats,
                label,
                cancel,
                client=task.client,
                offset=start if first else start - 1,
                version=version,
            ) as stream:
                delimiter = opening.layout.delimiter if opening else None
                reader = parts.PartReader(stream, start, end, first, delimiter)
                report = parts.sum_range(reader, self._summer(opening, stats, cancel))
        except TaskInterrupted:
            log.info("%s: interrupted", label)
            return
        except SourceChanged as error:
            self._sum_again(task_id, str(error))
            return
        except PermanentError as error:
            log.info("%s: failed: %s", label, error)
            self.store.fail(task_id, str(error))
            return
        except TransientError as error:
            self._retry(part_id, label, error)
            return
        failed = report.error is not None
        last = self.store.finish_part(
            part_id, self.executor, failed, report.to_record(), **stats.to_record()
        )
        if last:
            self.merge(task_id)

    def _summer(
        self, opening: summing.Opening | None, stats: ReadStats, cancel: threading.Event | None
    ) -> Callable[[parts.PartReader], parts.Summed]:
        """How a part's lines are summed: as a CSV laid out as its header says, or as a
        file of integers (no header)."""
        threads = self.settings.executor_threads or None
        if opening is None:
            return lambda lines: evens.sum_part(lines, cancel, stats.count_rows, threads)
        layout = opening.layout
        return lambda lines: summing.sum_part(lines, layout, cancel, stats.count_rows, threads)

    def merge(self, task_id: str) -> None:
        """Finish a split task from its parts' outcomes, if all are in (see the module
        docstring); what another executor merged already stays as it is."""
        record, records = self.store.parts(task_id)
        if record.get("status") != "running" or "unsplit" in record:
            return
        if any(part.get("status") not in ("done", "failed") for part in records):
            return
        opening, _ = parts.opening_from_record(record["split"])
        reports = [parts.PartReport.from_record(part) for part in records]
        try:
            if opening is None:
                found = parts.merge_evens(reports)
                result, rows = found.to_result(), found.count
            else:
                sums = parts.merge(opening, reports)
                result, rows = sums.to_result(), sums.rows
        except parts.SumAgain as why:
            self._sum_again(task_id, str(why))
            return
        except (InvalidCSV, InvalidNumbers) as error:
            if self.store.fail(task_id, str(error)):
                log.info("task %s: failed: %s", task_id, error)
            return
        if self.store.complete(task_id, result, rows_read=rows):
            log.info("task %s: done, %d rows in %d parts", task_id, rows, len(records))

    def _sum_again(self, task_id: str, why: str) -> None:
        if self.store.unsplit(task_id):
            log.warning("task %s: %s; summing it again as one stream", task_id, why)
            self._publish([task_id])

    def _retry(self, part_id: str, label: str, error: Exception) -> None:
        verdict = self.store.retry_part(part_id, self.executor, self.settings.delivery_limit)
        if verdict == "retry":
            log.warning(
                "%s: storage kept failing (%s); the part goes back to the queue", label, error
            )
            self._publish([part_id])
        elif verdict == "give up":
            self.store.fail(owner(part_id), f"storage kept failing, gave up: {error}")

    def _publish(self, ids: list[str]) -> None:
        """Publish parts (or a task to sum again); what RabbitMQ does not take stays in
        the outbox, for the sweeper."""
        with self._lock:
            try:
                fair_queue.publish_all(ids, self._publisher_().publish, self.store.published)
            except BrokerUnavailable as error:
                log.warning("could not publish %s (%s); the sweeper will", ids, error)

    def _publisher_(self) -> Publisher:
        if self._publisher is None:
            topology = Topology.from_settings(self.settings)
            self._publisher = Publisher(self.settings.amqp_url, topology)
        return self._publisher

    def close(self) -> None:
        if self._publisher is not None:
            self._publisher.close()
