"""The executor's life: connect, consume, process, write the result, ack; stop on SIGTERM.

Stopping follows rq: the first SIGTERM (or Ctrl-C) is a warm stop - take no new task and
finish the one in hand within `stop_grace` seconds; the second is a cold stop. Either way a
task that is not finished in time goes back to the queue for another executor.

Delivery is at least once: a message is acked only after its task's outcome is in Redis,
and a redelivered message of a finished task is acked without redoing it.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from concurrent.futures import Future
from typing import Any

import pika
from pika.adapters.blocking_connection import BlockingChannel

from colsum import broker, logs
from colsum.broker import Topology
from colsum.errors import (
    BrokerMisconfigured,
    PermanentError,
    SourceChanged,
    StoreUnavailable,
    TaskInterrupted,
    TransientError,
)
from colsum.settings import Settings
from colsum.store import TaskStore
from colsum.task import Task, TaskStatus
from colsum.task import now as now_stamp
from executor import metrics, summing
from executor.storage import ReadStats, Storage
from executor.sweeper import Sweeper
from executor.webhooks import Webhooks

log = logging.getLogger(__name__)

MAX_RECONNECT_DELAY = 10.0
HEARTBEAT_INTERVAL = 5.0  # seconds between two registrations of an idle executor
BUSY_HEARTBEAT_INTERVAL = 1.0  # ... and of a busy one, so its current task shows promptly
HEARTBEAT_TTL = 15.0  # ...after which a silent one counts as gone
PROGRESS_INTERVAL = 0.5  # seconds between two progress reports of a running task


class Worker:
    def __init__(self, settings: Settings, store: TaskStore, storages: dict[str, Storage]) -> None:
        self.settings = settings
        self.store = store
        self.storages = storages
        self.topology = Topology.from_settings(settings)
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self.sweeper = Sweeper(settings, store)
        self.webhooks = Webhooks(settings, store)
        self._stop_deadline: float | None = None
        self._in_hand: Future[None] | None = None
        self._started_at = now_stamp()
        self._current: str | None = None
        self._done = self._failed = 0
        self._last_beat = -HEARTBEAT_INTERVAL
        self._shown: str | None = None  # the current task as the registry last showed it
        self.metrics_port: int | None = None

    # -- the loop -------------------------------------------------------------------------

    def run(self) -> None:
        """Consume until stopped, reconnecting with backoff when RabbitMQ or Redis goes away."""
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._request_stop)
        self.metrics_port = metrics.serve(self.settings.executor_metrics_port)
        log.info(
            "executor %s consuming %r; metrics on port %d",
            self.name,
            self.topology.queue,
            self.metrics_port,
        )
        self.webhooks.start()
        failures = 0
        try:
            while not self.stopping:
                try:
                    self._consume()
                    failures = 0
                except BrokerMisconfigured:
                    raise
                except (*broker.CONNECTION_ERRORS, StoreUnavailable) as error:
                    failures += 1
                    delay = min(MAX_RECONNECT_DELAY, 0.5 * 2**failures)
                    log.warning("lost RabbitMQ or Redis (%r); reconnecting in %.1fs", error, delay)
                    self._wait_for_task_in_hand()
                    self._sleep(delay)
        finally:
            self.webhooks.stop()
            self.sweeper.close()
        log.info("executor %s stopped", self.name)

    def _consume(self) -> None:
        connection = broker.connect(self.settings.amqp_url)
        try:
            channel = connection.channel()
            self.topology.declare(channel)
            channel.basic_qos(prefetch_count=1)
            # Messages RabbitMQ gave up on (delivery limit) arrive here, on a channel of
            # their own, and are handled between the tasks of the main loop.
            dead = connection.channel()
            dead.basic_qos(prefetch_count=10)
            dead.basic_consume(self.topology.dead_queue, self._on_dead_letter)
            # inactivity_timeout wakes the loop every second so it notices a stop request.
            for method, properties, body in channel.consume(
                self.topology.queue, inactivity_timeout=1
            ):
                if self.stopping:
                    if method is not None:
                        channel.basic_nack(method.delivery_tag, requeue=True)
                    break
                self.sweeper.maybe_sweep()
                self._beat()
                if method is None:
                    continue
                if self._handle(connection, body, properties):
                    channel.basic_ack(method.delivery_tag)
                else:
                    channel.basic_nack(method.delivery_tag, requeue=True)
        finally:
            if connection.is_open:
                connection.close()

    def _handle(
        self, connection: pika.BlockingConnection, body: bytes, properties: pika.BasicProperties
    ) -> bool:
        """Process one message; True to ack it, False to give it back to the queue."""
        try:
            task_id = broker.decode(body)
        except ValueError as error:
            log.error("dropping a message: %s", error)
            return True
        attempt = broker.delivery_count(properties) + 1
        token = logs.TASK_ID.set(task_id)
        try:
            return self._follow(connection, task_id, attempt)
        finally:
            logs.TASK_ID.reset(token)

    def _follow(self, connection: pika.BlockingConnection, task_id: str, attempt: int) -> bool:
        """Run the task on its thread and watch it until it ends; True to ack."""
        cancel = threading.Event()
        stats = ReadStats()
        self._in_hand = self._start_thread(connection, task_id, attempt, cancel, stats)
        self._current = task_id
        self._beat()
        started = time.monotonic()
        renewed = reported = started
        # The task runs on its own thread so that this one keeps answering RabbitMQ's
        # heartbeats (a pika callback that blocks for a long file loses the connection),
        # renews the task's lease, reports its progress and notices a cancellation.
        while not self._in_hand.done():
            connection.process_data_events(time_limit=PROGRESS_INTERVAL)
            now = time.monotonic()
            if self._stop_deadline is not None and now > self._stop_deadline:
                log.warning("task %s not finished within the stop grace; requeueing", task_id)
                cancel.set()
                return False
            if now - started > self.settings.task_time_limit:
                cancel.set()
                limit = self.settings.task_time_limit
                self.store.fail(task_id, f"stopped: ran longer than TASK_TIME_LIMIT ({limit:g} s)")
                log.warning("task %s: over its time limit; failed", task_id)
                return True
            if now - reported >= PROGRESS_INTERVAL:
                reported = now
                if self.store.progress(task_id, **stats.to_record()) is TaskStatus.CANCELLED:
                    cancel.set()
                    log.info("task %s: cancelled; stopping it", task_id)
                    return True
            self._beat()
            if now - renewed > self.settings.lease / 3:
                self.store.renew_lease(task_id, self.name, self.settings.lease)
                renewed = now
        self._current = None
        try:
            self._in_hand.result()
        except StoreUnavailable as error:
            log.error("task %s: cannot record its outcome (%s); requeueing", task_id, error)
            self._sleep(1)
            return False
        self._beat()
        return True

    def _start_thread(
        self,
        connection: pika.BlockingConnection,
        task_id: str,
        attempt: int,
        cancel: threading.Event,
        stats: ReadStats,
    ) -> Future[None]:
        future: Future[None] = Future()

        def work() -> None:
            logs.TASK_ID.set(task_id)
            try:
                self.process(task_id, attempt, cancel, stats)
                future.set_result(None)
            except BaseException as error:
                future.set_exception(error)
            finally:
                # Wakes process_data_events at once instead of at its next time limit.
                connection.add_callback_threadsafe(lambda: None)

        # A daemon thread: on a cold stop the process exits without waiting for it; the
        # task's message has been requeued by then.
        threading.Thread(target=work, name=f"task-{task_id}", daemon=True).start()
        return future

    def _on_dead_letter(
        self, channel: BlockingChannel, method: Any, properties: Any, body: bytes
    ) -> None:
        try:
            task_id = broker.decode(body)
        except ValueError as error:
            log.error("dropping a dead letter: %s", error)
        else:
            deliveries = self.settings.delivery_limit + 1
            reason = (
                f"gave up after {deliveries} deliveries: the task stopped its executor each time"
            )
            if self.store.fail(task_id, reason):
                log.error("task %s: %s", task_id, reason)
        channel.basic_ack(method.delivery_tag)

    # -- one task -------------------------------------------------------------------------

    def process(
        self,
        task_id: str,
        attempt: int = 1,
        cancel: threading.Event | None = None,
        stats: ReadStats | None = None,
    ) -> None:
        """Run one task to done or failed; only an unreachable Redis escapes from here."""
        task = self.store.claim(task_id, self.name, attempt, self.settings.lease)
        if task is None:
            log.info("task %s is finished or unknown; nothing to do", task_id)
            return
        log.info("task %s: summing %s (attempt %d)", task_id, task.source.describe(), attempt)
        started = time.monotonic()
        stats = stats or ReadStats()
        try:
            result = self._sum(task, stats, cancel)
        except TaskInterrupted:
            log.info("task %s: interrupted", task_id)
            metrics.record("interrupted", time.monotonic() - started, stats)
        except PermanentError as error:
            self._fail(task, str(error), stats)
        except TransientError as error:
            self._fail(task, f"storage kept failing, gave up: {error}", stats)
        except Exception as error:
            log.exception("task %s: unexpected error", task_id)
            self._fail(task, f"internal error: {error!r}", stats)
        else:
            metrics.record("done", time.monotonic() - started, stats)
            if not self.store.complete(task.id, result, **stats.to_record()):
                log.info("task %s: finished elsewhere meanwhile; this result is dropped", task_id)
                return
            self._done += 1
            log.info(
                "task %s: done, %d rows in %.2fs (%d attempts, %d resumes)",
                task_id,
                result["rows"],
                time.monotonic() - started,
                stats.attempts,
                stats.resumes,
            )

    def _sum(self, task: Task, stats: ReadStats, cancel: threading.Event | None) -> dict[str, Any]:
        try:
            return self._sum_once(task, stats, cancel)
        except SourceChanged as error:
            log.warning("task %s: %s; summing it again from the start", task.id, error)
        try:
            return self._sum_once(task, stats, cancel)
        except SourceChanged as error:
            raise SourceChanged(f"{error}, twice; not summed") from None

    def _sum_once(
        self, task: Task, stats: ReadStats, cancel: threading.Event | None
    ) -> dict[str, Any]:
        storage = self.storages[task.source.storage]
        with storage.open(task.source, stats, f"task {task.id}") as stream:
            sums = summing.sum_columns(
                stream, task.header, task.delimiter, cancel, on_rows=stats.count_rows
            )
            return sums.to_result()

    def _fail(self, task: Task, error: str, stats: ReadStats) -> None:
        log.info("task %s: failed: %s", task.id, error)
        metrics.record("failed", None, stats)
        if self.store.fail(task.id, error, **stats.to_record()):
            self._failed += 1

    def _beat(self) -> None:
        """Register this executor for `GET /executors`: every second while it works or its
        record still shows a task, so the dashboard follows along; every few seconds when
        idle. Never per task: a flood of short tasks would pay a Redis round trip each."""
        busy = self._current is not None or self._shown is not None
        interval = BUSY_HEARTBEAT_INTERVAL if busy else HEARTBEAT_INTERVAL
        if time.monotonic() - self._last_beat < interval:
            return
        self._last_beat = time.monotonic()
        self._shown = self._current
        host, _, pid = self.name.rpartition(":")
        fields = {
            "id": self.name,
            "host": host,
            "pid": pid,
            "started_at": self._started_at,
            "current_task": self._current,
            "tasks_done": self._done,
            "tasks_failed": self._failed,
            "last_heartbeat": now_stamp(),
            "metrics_port": self.metrics_port,
        }
        self.store.heartbeat(self.name, fields, HEARTBEAT_TTL)

    # -- stopping -------------------------------------------------------------------------

    @property
    def stopping(self) -> bool:
        return self._stop_deadline is not None

    def _request_stop(self, signum: int, _frame: Any) -> None:
        if self._stop_deadline is None:
            log.info("%s: finishing the task in hand, then stopping", signal.Signals(signum).name)
            self._stop_deadline = time.monotonic() + self.settings.stop_grace
        else:
            log.info("%s again: requeueing the task in hand now", signal.Signals(signum).name)
            self._stop_deadline = time.monotonic()

    def _wait_for_task_in_hand(self) -> None:
        """After a lost connection, let the running task finish before taking another."""
        while self._in_hand is not None and not self._in_hand.done():
            if self._stop_deadline is not None and time.monotonic() > self._stop_deadline:
                return
            self._sleep(0.2)

    def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self.stopping and time.monotonic() < deadline:
            time.sleep(min(0.2, seconds))
