"""A task over SPLIT_SIZE split into parts (executor/split.py), run by real executors'
code against the real Redis and RabbitMQ: each message the splitter publishes is taken
from the test's queue and processed, as an executor would."""

from __future__ import annotations

import dataclasses
import io
import random
import time
from collections import Counter

import pytest

from colsum import broker
from colsum.errors import TransientError
from colsum.store import part_id
from colsum.task import LocalSource, S3Source, Task, TaskStatus
from executor import parts, summing
from executor.storage import LocalStorage, storages
from executor.sweeper import Sweeper
from executor.worker import Worker
from tests.csvfiles import write_numbers

SPLIT = pytest.mark.settings(split_size=4096)


def run(settings, store, channel, worker: Worker, task: Task, limit: int = 200) -> list[str]:
    """Create the task and process every message published until the queue is empty, as
    executors take them; the ids processed, in order."""
    store.create(task)
    worker.process(task.id)
    return [task.id, *run_published(settings, channel, worker, limit)]


def run_published(settings, channel, worker: Worker, limit: int = 200) -> list[str]:
    """Process the messages in the test's queue until it is empty; their ids, in order."""
    processed = []
    for _ in range(limit):
        method, properties, body = channel.basic_get(settings.amqp_queue, auto_ack=True)
        if method is None:
            return processed
        processed.append(broker.decode(body))
        worker.process(processed[-1], broker.delivery_count(properties) + 1)
    raise AssertionError("the queue never emptied")


def one_stream(path) -> dict:
    with path.open("rb") as stream:
        return summing.sum_columns(stream).to_result()


@pytest.fixture
def worker(settings, store):
    worker = Worker(settings, store, storages(settings))
    yield worker
    worker.splitter.close()


@SPLIT
def test_a_big_file_is_summed_in_parts_to_the_sums_of_one_stream(settings, store, channel, worker):
    path = settings.data_dir / "big.csv"
    write_numbers(path, rows=1000, columns=40, seed=1)
    task = Task(source=LocalSource(path="big.csv"))
    processed = run(settings, store, channel, worker, task)
    done = store.get(task.id)
    assert done.status is TaskStatus.DONE
    assert done.result == one_stream(path)
    total = -(-path.stat().st_size // 4096)
    assert processed == [task.id, *(part_id(task.id, k) for k in range(total))]
    assert done.to_json()["parts"] == {
        "total": total,
        "done": total,
        "failed": 0,
        "executors": [worker.name],
    }
    assert (done.bytes_read, done.bytes_total) == (path.stat().st_size,) * 2
    assert done.rows_read == 1000
    assert (done.attempts, done.resumes) == (1 + total, 0)  # the header's read, each part's


@pytest.mark.settings(split_size=0)
def test_split_size_0_sums_every_file_in_one_stream(settings, store, channel, worker):
    write_numbers(settings.data_dir / "big.csv", rows=1000, columns=40)
    task = Task(source=LocalSource(path="big.csv"))
    assert run(settings, store, channel, worker, task) == [task.id]
    done = store.get(task.id)
    assert done.status is TaskStatus.DONE
    assert "parts" not in done.to_json()


@SPLIT
def test_a_file_under_the_split_size_is_not_split(settings, store, channel, worker):
    write_numbers(settings.data_dir / "small.csv", rows=30, columns=40)
    task = Task(source=LocalSource(path="small.csv"))
    assert run(settings, store, channel, worker, task) == [task.id]
    assert store.get(task.id).status is TaskStatus.DONE


HEADER = ",".join(f"c{i}" for i in range(1, 21)) + "\n"


def rows(count: int, cell: str = "1.5") -> str:
    return "".join(",".join(["x"] * 9 + [cell] + ["2"] * 9 + [str(n)]) + "\n" for n in range(count))


@SPLIT
def test_a_quoted_newline_across_a_boundary_has_the_task_summed_again_as_one_stream(
    settings, store, channel, worker
):
    quoted = '"' + "a quoted field\n" * 600 + '"'  # 9 KB of quoted newlines: over a boundary
    # Over 64 KiB: a file read whole by the first read is not split.
    text = HEADER + rows(1000) + ",".join([quoted] + ["1"] * 19) + "\n" + rows(1000)
    path = settings.data_dir / "quoted.csv"
    path.write_text(text)
    task = Task(source=LocalSource(path="quoted.csv"))
    processed = run(settings, store, channel, worker, task)
    done = store.get(task.id)
    assert done.status is TaskStatus.DONE
    assert done.result == one_stream(path)
    assert done.result["rows"] == 2001
    assert processed[-1] == task.id  # summed again, as one stream
    assert done.unsplit


@SPLIT
def test_a_bad_cell_in_a_later_part_names_the_files_line(settings, store, channel, worker):
    text = HEADER + "\n" + rows(1500) + rows(1, cell="abc") + rows(50)
    (settings.data_dir / "bad.csv").write_text(text)
    task = Task(source=LocalSource(path="bad.csv"))
    run(settings, store, channel, worker, task)
    failed = store.get(task.id)
    assert failed.status is TaskStatus.FAILED
    assert failed.error == "line 1503, column 10: 'abc' is not a number"
    assert failed.parts_failed == 1


def part_start(path, index: int) -> int:
    """Where a part of a file with a header line starts, split at 4096 bytes."""
    header = len(path.read_bytes().split(b"\n", 1)[0]) + 1
    return parts.plan(header, path.stat().st_size, 4096)[index][0]


class FlakyAt(LocalStorage):
    """Local files whose read from byte `offset` fails `times` times, then works; counts
    the opens at each offset."""

    def __init__(self, settings, offset: int, times: int) -> None:
        super().__init__(settings.data_dir)
        self.offset, self.times = offset, times
        self.opens: Counter[int] = Counter()

    def open(
        self, source, stats, label="", cancel=None, client="anonymous", offset=0, version=None
    ):
        self.opens[offset] += 1
        if offset == self.offset and self.opens[offset] <= self.times:
            return _Failing()
        return super().open(source, stats, label, cancel, client, offset, version)


class _Failing(io.RawIOBase):
    def readable(self) -> bool:
        return True

    def readinto(self, buffer):
        raise TransientError("the disk is away")


@pytest.mark.settings(split_size=4096, delivery_limit=3)
def test_a_part_whose_storage_fails_is_retried_alone(settings, store, channel):
    path = settings.data_dir / "big.csv"
    write_numbers(path, rows=1000, columns=40)
    task = Task(source=LocalSource(path="big.csv"))
    flaky = FlakyAt(settings, offset=part_start(path, 2) - 1, times=2)
    worker = Worker(settings, store, {"local": flaky})
    processed = run(settings, store, channel, worker, task)
    worker.splitter.close()
    done = store.get(task.id)
    assert done.status is TaskStatus.DONE
    assert done.result == one_stream(path)
    assert processed.count(part_id(task.id, 2)) == 3
    assert {offset: count for offset, count in flaky.opens.items() if count > 1} == {
        flaky.offset: 3
    }


@pytest.mark.settings(split_size=4096, delivery_limit=2)
def test_a_part_whose_storage_keeps_failing_fails_its_task(settings, store, channel):
    path = settings.data_dir / "big.csv"
    write_numbers(path, rows=1000, columns=40)
    task = Task(source=LocalSource(path="big.csv"))
    worker = Worker(settings, store, {"local": FlakyAt(settings, part_start(path, 1) - 1, 99)})
    run(settings, store, channel, worker, task)
    worker.splitter.close()
    failed = store.get(task.id)
    assert failed.status is TaskStatus.FAILED
    assert failed.error == "storage kept failing, gave up: the disk is away"


def split_only(settings, store, worker: Worker) -> Task:
    """A task of 1000 rows split by the worker, its parts published and not yet run."""
    write_numbers(settings.data_dir / "big.csv", rows=1000, columns=40)
    task = Task(source=LocalSource(path="big.csv"))
    store.create(task)
    worker.process(task.id)
    return task


@SPLIT
def test_cancelling_a_split_task_cancels_its_parts(settings, store, channel, worker):
    task = split_only(settings, store, worker)
    assert store.cancel(task.id) is TaskStatus.RUNNING
    first = broker.decode(channel.basic_get(settings.amqp_queue, auto_ack=True)[2])
    assert store.claim_part(first, worker.name, 30) is None
    worker.process(first)
    cancelled = store.get(task.id)
    assert cancelled.status is TaskStatus.CANCELLED
    assert (cancelled.parts_done, cancelled.rows_read) == (0, 0)


@SPLIT
def test_a_running_part_learns_of_its_tasks_cancellation_from_its_progress(settings, store, worker):
    task = split_only(settings, store, worker)
    first = part_id(task.id, 0)
    assert isinstance(store.claim_part(first, worker.name, 30), tuple)
    assert store.progress(first, worker.name, bytes_read=100, rows_read=3) is TaskStatus.RUNNING
    assert store.get(task.id).rows_read == 3
    store.cancel(task.id)
    assert store.progress(first, worker.name, bytes_read=200, rows_read=6) is (TaskStatus.CANCELLED)
    assert store.finish_part(first, worker.name, False, {}) is None


@SPLIT
def test_a_part_whose_executor_vanished_is_published_again_by_the_sweep(settings, store, worker):
    task = split_only(settings, store, worker)
    first = part_id(task.id, 0)
    store.claim_part(first, "gone:1", lease=0.05)
    assert store.abandoned_parts(grace=60) == []  # its lease lasts
    store.redis.delete(store.keys.lease(first))
    assert store.abandoned_parts(grace=60) == [first]
    assert store.abandoned_parts(grace=60) == []  # once per grace
    assert store.abandoned(grace=0) == []  # the task itself is not orphaned: it is split


@SPLIT
def test_a_redelivered_part_finishes_a_merge_its_executor_did_not(settings, store, channel, worker):
    path = settings.data_dir / "big.csv"
    write_numbers(path, rows=1000, columns=40)
    task = Task(source=LocalSource(path="big.csv"))
    merge = worker.splitter.merge
    worker.splitter.merge = lambda task_id: None  # dies after its part's outcome is in
    processed = run(settings, store, channel, worker, task)
    assert store.get(task.id).status is TaskStatus.RUNNING
    worker.splitter.merge = merge
    worker.process(processed[-1])  # its message comes again
    done = store.get(task.id)
    assert done.status is TaskStatus.DONE
    assert done.result == one_stream(path)


def s3_worker(bucket, store) -> Worker:
    settings = dataclasses.replace(bucket.settings, split_size=4096)
    return Worker(settings, store, storages(settings))


def test_an_s3_object_is_summed_in_parts_read_with_ranged_gets(bucket, store, channel, tmp_path):
    path = tmp_path / "big.csv"
    write_numbers(path, rows=1000, columns=40, seed=2)
    bucket.upload("big.csv", path)
    worker = s3_worker(bucket, store)
    task = Task(source=S3Source(bucket=bucket.name, key="big.csv"))
    processed = run(bucket.settings, store, channel, worker, task)
    worker.splitter.close()
    done = store.get(task.id)
    assert done.status is TaskStatus.DONE
    assert done.result == one_stream(path)
    assert len(processed) == 1 + done.parts_total > 3


def test_an_s3_object_replaced_between_parts_is_summed_again_as_one_stream(
    bucket, store, channel, tmp_path
):
    old, new = tmp_path / "old.csv", tmp_path / "new.csv"
    write_numbers(old, rows=1000, columns=40, seed=3)
    write_numbers(new, rows=1200, columns=40, seed=4)
    bucket.upload("big.csv", old)
    worker = s3_worker(bucket, store)
    task = Task(source=S3Source(bucket=bucket.name, key="big.csv"))
    store.create(task)
    worker.process(task.id)  # split: the parts are to read the old object's ETag
    bucket.upload("big.csv", new)
    processed = run_published(bucket.settings, channel, worker)
    worker.splitter.close()
    done = store.get(task.id)
    assert done.status is TaskStatus.DONE
    assert done.result == one_stream(new)
    assert processed[-1] == task.id


def integers_file(path, lines: int, bad_line: int | None = None) -> list[int]:
    """Lines of seven integers of up to 31 digits (over 64 KiB: split at 4 KiB), the
    line `bad_line` with a token that is not one; the integers."""
    rnd = random.Random(lines)
    numbers = [rnd.randint(-(10**30), 10**30) for _ in range(7 * lines)]
    text = [" ".join(map(str, numbers[i : i + 7])) for i in range(0, len(numbers), 7)]
    if bad_line is not None:
        text[bad_line - 1] += " 12x"
    path.write_text("\n".join(text) + "\n")
    return numbers


@SPLIT
def test_a_big_file_of_integers_is_summed_in_parts(settings, store, channel, worker):
    numbers = integers_file(settings.data_dir / "ints.txt", lines=2000)
    task = Task(source=LocalSource(path="ints.txt"), op="sum_even")
    run(settings, store, channel, worker, task)
    done = store.get(task.id)
    assert done.status is TaskStatus.DONE
    even = [n for n in numbers if n % 2 == 0]
    assert done.result == {"count": len(numbers), "even_count": len(even), "sum": sum(even)}
    assert done.parts_total > 10 and done.rows_read == len(numbers)


@SPLIT
def test_a_bad_token_in_a_later_part_of_a_file_of_integers_names_the_files_line(
    settings, store, channel, worker
):
    integers_file(settings.data_dir / "ints.txt", lines=2000, bad_line=1789)
    task = Task(source=LocalSource(path="ints.txt"), op="sum_even")
    run(settings, store, channel, worker, task)
    failed = store.get(task.id)
    assert failed.error == "line 1789: '12x' is not an integer"
    assert failed.parts_failed == 1


@SPLIT
def test_a_part_that_stops_its_executor_each_time_fails_its_task(settings, store, worker):
    """RabbitMQ dead-letters its message; the executor that gets the dead letter fails it
    (Worker._on_dead_letter), as a task's: a part's failure is its task's."""
    task = split_only(settings, store, worker)
    reason = "gave up after 6 deliveries: the task stopped its executor each time"
    assert store.fail(part_id(task.id, 1), reason)
    failed = store.get(task.id)
    assert (failed.status, failed.error) == (TaskStatus.FAILED, reason)


@SPLIT
def test_parts_whose_messages_were_lost_are_published_again_once_per_grace(
    settings, store, channel, worker
):
    task = split_only(settings, store, worker)
    total = store.get(task.id).parts_total
    assert store.published_queued() == total  # every part has its message
    channel.queue_purge(settings.amqp_queue)  # an operator's mistake, or lost broker data
    within_grace = Sweeper(dataclasses.replace(settings, queued_grace=300), store)
    within_grace.sweep()
    within_grace.close()
    assert channel.queue_declare(settings.amqp_queue, passive=True).method.message_count == 0
    sweep = Sweeper(dataclasses.replace(settings, queued_grace=0.2), store)
    time.sleep(0.3)
    sweep.sweep()
    sweep.sweep()  # nothing is missing any more: no more copies
    assert sorted(run_published(settings, channel, worker)) == sorted(
        part_id(task.id, index) for index in range(total)
    )
    assert store.get(task.id).status is TaskStatus.DONE
    sweep.close()
