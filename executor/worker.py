"""The executor's life: connect, consume, process, write the result, ack; stop on SIGTERM.

The queue holds about one task per executor, and the clients' backlogs in Redis hold the
rest (colsum/fair_queue.py). The task the fair queue lets in when one ends is run by the
executor whose task made room for it, without a trip through RabbitMQ (`_run_dispatched`);
it publishes what it does not run itself, and when it starts or idles.

Stopping follows rq: the first SIGTERM (or Ctrl-C) is a warm stop - take no new task and
finish the one in hand within `stop_grace` seconds; the second is a cold stop. Either way a
task that is not finished in time goes back to the queue for another executor.

Delivery is at least once: a message is acked only after its task's outcome is in Redis,
and a redelivered message of a finished task is acked without redoing it. Only the
executor holding a task's lease runs it and writes its outcome (colsum.store).

Nothing a task does ends the executor: whatever it raises fails that task ("internal
error: ..."), and an unexpected error in the loop is logged and followed by a
reconnection. A message goes back to the queue only as a fresh copy (`_hand_back`), so
that RabbitMQ's delivery limit counts executors that died holding the task and nothing
else; while Redis does not answer, the executor does not consume.
"""

from __future__ import annotations

import collections
import contextlib
import enum
import logging
import os
import queue
import signal
import socket
import threading
import time
from collections.abc import Callable
from concurrent import futures
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel

from colsum import broker, fair_queue, logs
from colsum.broker import Topology
from colsum.errors import (
    BrokerMisconfigured,
    BrokerUnavailable,
    PermanentError,
    SourceChanged,
    StoreUnavailable,
    TaskInterrupted,
    TransientError,
)
from colsum.settings import Settings
from colsum.store import EXECUTOR_TTL, Held, TaskStore, owner, part_of
from colsum.task import Task, TaskStatus
from colsum.task import now as now_stamp
from executor import evens, metrics, summing
from executor.split import Splitter
from executor.storage import ReadStats, Storage
from executor.sweeper import Sweeper
from executor.webhooks import Webhooks

log = logging.getLogger(__name__)

MAX_RECONNECT_DELAY = 10.0
HEARTBEAT_INTERVAL = 5.0  # seconds between two registrations of an idle executor
BUSY_HEARTBEAT_INTERVAL = 1.0  # ... and of a busy one, so its current task shows promptly
HEARTBEAT_TTL = EXECUTOR_TTL  # ...after which a silent one counts as gone
PROGRESS_INTERVAL = 0.5  # seconds between two progress reports of a running task
STOP_TASK_WAIT = 5.0  # seconds a task told to stop has to end before the executor goes on
# Seconds between two answers to RabbitMQ while a task runs: far below its heartbeat timeout.
ANSWER_INTERVAL = 0.5
# Seconds a confirmed task may wait for a claim to take it out of the outbox (it waits
# OUTBOX_GRACE, 30 s by default, before the sweeper would publish it again).
MARK_PUBLISHED_AFTER = 1.0
# Seconds after a message's delivery during which its executor runs the tasks dispatched in
# its place itself (Worker._run_dispatched).
CHAIN_SECONDS = 2.0


class Outcome(enum.Enum):
    """What becomes of a message once its task has been handled."""

    ACK = "ack"  # the task's outcome is recorded (or it was not ours to run)
    HAND_BACK = "hand back"  # stopping: another executor is to run it
    HAND_BACK_REDIS_DOWN = "hand back, then wait for Redis"


@dataclass
class Job:
    """What the watching thread and a task's thread share."""

    cancel: threading.Event = field(default_factory=threading.Event)
    claimed: threading.Event = field(default_factory=threading.Event)  # progress from then on
    stats: ReadStats = field(default_factory=ReadStats)


Work = tuple[Callable[[], None], Future[None]]  # what Runner's thread runs, and its outcome


class Runner:
    """Runs the executor's tasks one after another on a thread that outlives them: starting
    a thread per task cost a tiny task more than its sum. A task still running when the
    next one comes (told to stop, it did not: a stuck read) keeps its thread, and the next
    gets a new one. Daemon threads: on a cold stop the process exits without waiting for
    them; the task's message has been handed back by then."""

    def __init__(self) -> None:
        self._inbox: queue.SimpleQueue[Work | None] | None = None
        self._last: Future[None] | None = None

    def run(self, work: Callable[[], None]) -> Future[None]:
        if self._inbox is None or (self._last is not None and not self._last.done()):
            if self._inbox is not None:
                self._inbox.put(None)  # that thread ends once its task returns
            self._inbox = queue.SimpleQueue()
            threading.Thread(target=self._serve, args=(self._inbox,), daemon=True).start()
        future: Future[None] = Future()
        self._inbox.put((work, future))
        self._last = future
        return future

    @staticmethod
    def _serve(inbox: queue.SimpleQueue[Work | None]) -> None:
        while (job := inbox.get()) is not None:
            work, future = job
            try:
                work()
            except BaseException as error:
                future.set_exception(error)
            else:
                future.set_result(None)


class Worker:
    def __init__(self, settings: Settings, store: TaskStore, storages: dict[str, Storage]) -> None:
        self.settings = settings
        self.store = store
        self.storages = storages
        self.topology = Topology.from_settings(settings)
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self.sweeper = Sweeper(settings, store)
        self.webhooks = Webhooks(settings, store)
        self.splitter = Splitter(settings, store, storages, self.name)
        self._stop_deadline: float | None = None
        self._in_hand: Future[None] | None = None
        self._lost: Exception | None = None  # the broker connection, lost during a task
        self._answered = time.monotonic()  # when RabbitMQ was last answered during a task
        self._started_at = now_stamp()
        self._current: str | None = None
        self._done = self._failed = 0
        self._last_beat = -HEARTBEAT_INTERVAL
        self._shown: str | None = None  # the current task as the registry last showed it
        self.metrics_port: int | None = None
        self._runner = Runner()
        self._ready: list[str] | None = None  # dispatched with the last result, to publish
        # Published and confirmed, to take out of the outbox: with the next claim, or on
        # their own once they have waited MARK_PUBLISHED_AFTER (a deque: two threads).
        self._confirmed: collections.deque[tuple[str, float]] = collections.deque()

    # -- the loop -------------------------------------------------------------------------

    def install_signal_handlers(self) -> None:
        """SIGTERM and Ctrl-C stop the executor (see the module docstring)."""
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._request_stop)

    def run(self) -> None:
        """Consume until stopped, reconnecting with backoff when RabbitMQ or Redis goes away.

        Nothing but a misconfigured broker ends it early: an unexpected error is logged and
        the executor reconnects, as it does after a lost connection."""
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
                    # No consumer while Redis does not answer: every message taken then
                    # would have to be handed back.
                    self.store.ping()
                    self._consume()
                    failures = 0
                except BrokerMisconfigured:
                    raise
                except (*broker.CONNECTION_ERRORS, StoreUnavailable, BrokerUnavailable) as error:
                    failures += 1
                    delay = min(MAX_RECONNECT_DELAY, 0.5 * 2**failures)
                    log.warning("lost RabbitMQ or Redis (%r); reconnecting in %.1fs", error, delay)
                    self._wait_for_task_in_hand()
                    self._sleep(delay)
                except Exception:
                    failures += 1
                    delay = min(MAX_RECONNECT_DELAY, 0.5 * 2**failures)
                    log.exception(
                        "unexpected error in the consume loop; reconnecting in %.1fs", delay
                    )
                    self._wait_for_task_in_hand()
                    self._sleep(delay)
        finally:
            self._mark_published()
            self.webhooks.stop()
            self.sweeper.close()
            self.splitter.close()
        log.info("executor %s stopped", self.name)

    def _consume(self) -> None:
        connection = broker.connect(self.settings.amqp_url)
        try:
            channel = connection.channel()
            self.topology.declare(channel)
            channel.basic_qos(prefetch_count=1)
            # For handing messages back (see _hand_back): publishes confirmed by RabbitMQ.
            returns = connection.channel()
            returns.confirm_delivery()
            self._beat()  # registered first: the fair queue counts live executors
            self._dispatch(returns)  # one more executor, room for one more task
            # Messages RabbitMQ gave up on (delivery limit) arrive here, on a channel of
            # their own, and are handled between the tasks of the main loop.
            dead = connection.channel()
            dead.basic_qos(prefetch_count=10)
            dead.basic_consume(self.topology.dead_queue, self._on_dead_letter)
            # inactivity_timeout wakes the loop every second so it notices a stop request.
            for method, properties, body in channel.consume(
                self.topology.queue, inactivity_timeout=1
            ):
                if method is None:
                    if self.stopping:  # a message arriving just now goes back on close
                        break
                    self.sweeper.maybe_sweep()
                    self._beat()  # raises StoreUnavailable when Redis is gone: stop consuming
                    self._dispatch(returns)
                    self._mark_published()
                    continue
                delivered = time.monotonic()
                task_id, attempt = self._decode(body, properties)
                if task_id is None:
                    channel.basic_ack(method.delivery_tag)
                    continue
                outcome = (
                    Outcome.HAND_BACK
                    if self.stopping
                    else self._handle(task_id, attempt, connection)
                )
                if outcome is Outcome.ACK:
                    # The task's place is free for the next: run it here, still holding
                    # this message (see _run_dispatched).
                    task_id, outcome = self._run_dispatched(connection, returns, delivered)
                    if outcome is Outcome.ACK:
                        channel.basic_ack(method.delivery_tag)
                        continue
                    attempt = 1  # the task handed back came from a backlog: its first try
                self._hand_back(channel, returns, method.delivery_tag, task_id, attempt)
                if outcome is Outcome.HAND_BACK_REDIS_DOWN:
                    raise StoreUnavailable("Redis is unavailable; stopped consuming")
                break
        finally:
            if connection.is_open:
                connection.close()

    def _hand_back(
        self,
        channel: BlockingChannel,
        returns: BlockingChannel,
        delivery_tag: int,
        task_id: str,
        attempt: int,
    ) -> None:
        """Put a task back on the queue when this executor, not the task, is the reason it
        was not finished (Redis is unreachable, the stop grace ran out).

        Not with basic_nack(requeue=True): a quorum queue counts every message returned to
        it (a nack as much as a lost channel) against x-delivery-limit, so healthy tasks
        would fail as poison after a few Redis outages. A fresh copy, published with a
        confirm before the original is acked, starts from 0 and carries the deliveries so
        far in a header for the record's `attempt`; only an executor that dies holding a
        task counts against it. The consumer is cancelled before the ack: with prefetch 1
        nothing else is on its way to this executor, so nothing else is returned. (For a
        task taken from a backlog, the message acked is the one kept meanwhile.)
        """
        broker.publish(returns, self.topology, task_id, earlier_deliveries=attempt)
        channel.cancel()
        channel.basic_ack(delivery_tag)
        log.info("task %s: handed back to the queue", task_id)

    def _run_dispatched(
        self, connection: pika.BlockingConnection, returns: BlockingChannel, delivered: float
    ) -> tuple[str, Outcome]:
        """Run, one after another, the tasks the fair queue dispatches in the place of the
        one just finished, without a trip through RabbitMQ; return the last one run and its
        outcome.

        The finished task's message stays unacked meanwhile: with prefetch 1, RabbitMQ
        gives this busy executor nothing more. A task taken so is claimed like any other;
        should the executor die running it, its lease lapses and the sweeper publishes it
        again; dispatched but not claimed, it waits in the outbox. Only for CHAIN_SECONDS
        after the message was delivered: past that, the dispatched tasks are published
        and the message acked, so that it is never held long beyond the task it carried.
        """
        task_id, outcome = "", Outcome.ACK
        while not self.stopping and time.monotonic() - delivered < CHAIN_SECONDS:
            dispatched = self._dispatched()
            if not dispatched:
                return task_id, outcome
            task_id = dispatched[0]
            self._publish(returns, dispatched[1:])
            outcome = self._handle(task_id, 1, connection)
            if outcome is not Outcome.ACK:
                return task_id, outcome
        self._dispatch(returns)
        return task_id, outcome

    def _dispatched(self) -> list[str]:
        """What the last task's result dispatched already, or what the fair queue lets
        into the queue now (colsum/fair_queue.py)."""
        ready, self._ready = self._ready, None
        return self.store.dispatch() if ready is None else ready

    def _dispatch(self, returns: BlockingChannel) -> None:
        self._publish(returns, self._dispatched())

    def _publish(self, returns: BlockingChannel, dispatched: list[str]) -> None:
        """A task RabbitMQ refuses stays in the outbox, for the sweeper."""

        def publish(task_id: str) -> None:
            broker.publish(returns, self.topology, task_id)

        def confirmed(task_id: str) -> None:
            self._confirmed.append((task_id, time.monotonic()))

        try:
            fair_queue.publish_all(dispatched, publish, confirmed)
        except (pika.exceptions.UnroutableError, pika.exceptions.NackError) as error:
            log.warning("RabbitMQ refused a dispatched task (%r); the sweeper retries", error)

    def _taken_confirmed(self, waited: float = 0.0) -> list[str]:
        """The confirmed tasks that have waited `waited` seconds, to take out of the
        outbox now."""
        taken: list[str] = []
        now = time.monotonic()
        with contextlib.suppress(IndexError):  # none left (the other thread took them)
            while now - self._confirmed[0][1] >= waited:
                taken.append(self._confirmed.popleft()[0])
        return taken

    def _mark_published(self, waited: float = 0.0) -> None:
        """Take confirmed tasks out of the outbox without a claim to carry them: the
        executor idles, or runs a long task. Missed, the sweeper publishes them again,
        and a duplicate message finds its task taken."""
        if taken := self._taken_confirmed(waited):
            with contextlib.suppress(StoreUnavailable):
                self.store.published(*taken)

    def _decode(self, body: bytes, properties: pika.BasicProperties) -> tuple[str | None, int]:
        try:
            task_id = broker.decode(body)
        except ValueError as error:
            log.error("dropping a message: %s", error)
            return None, 0
        return task_id, broker.delivery_count(properties) + 1

    def _handle(self, task_id: str, attempt: int, connection: pika.BlockingConnection) -> Outcome:
        token = logs.TASK_ID.set(task_id)
        self._current = owner(task_id)  # a part shows as its task
        try:
            return self._follow(connection, task_id, attempt)
        finally:
            self._current = None
            logs.TASK_ID.reset(token)

    def _follow(self, connection: pika.BlockingConnection, task_id: str, attempt: int) -> Outcome:
        """Run the task on its thread and watch it until it ends."""
        job = Job()
        self._lost = None
        self._in_hand = self._start_thread(task_id, attempt, job)
        self._beat_quietly()
        started = time.monotonic()
        renewed = reported = started
        # The task runs on its own thread so that this one keeps answering RabbitMQ's
        # heartbeats (a pika callback that blocks for a long file loses the connection),
        # renews the task's lease, reports its progress and notices a cancellation.
        while not self._in_hand.done():
            self._answer_broker(connection, PROGRESS_INTERVAL)
            now = time.monotonic()
            if self._stop_deadline is not None and now > self._stop_deadline:
                log.warning("task %s not finished within the stop grace; handing it back", task_id)
                self._stop_task(connection, task_id, job)
                with contextlib.suppress(StoreUnavailable):
                    self.store.release_lease(task_id, self.name)
                return Outcome.HAND_BACK
            if now - started > self.settings.task_time_limit:
                self._stop_task(connection, task_id, job)
                limit = self.settings.task_time_limit
                reason = f"stopped: ran longer than TASK_TIME_LIMIT ({limit:g} s)"
                try:
                    self.store.fail(task_id, reason, holder=self.name)
                except StoreUnavailable:
                    return Outcome.HAND_BACK_REDIS_DOWN
                log.warning("task %s: over its time limit; failed", task_id)
                return Outcome.ACK
            self._mark_published(MARK_PUBLISHED_AFTER)
            if not job.claimed.is_set():
                continue
            try:
                if now - reported >= PROGRESS_INTERVAL:
                    reported = now
                    status = self.store.progress(task_id, self.name, **job.stats.to_record())
                    if status is not TaskStatus.RUNNING:
                        why = "cancelled" if status is TaskStatus.CANCELLED else "no longer ours"
                        log.info("task %s: %s; stopping it", task_id, why)
                        self._stop_task(connection, task_id, job)
                        return Outcome.ACK
                if now - renewed > self.settings.lease / 3:
                    renewed = now
                    if not self.store.renew_lease(task_id, self.name, self.settings.lease):
                        log.warning(
                            "task %s: no longer this executor's (lease lost); stopping it", task_id
                        )
                        self._stop_task(connection, task_id, job)
                        return Outcome.ACK
            except StoreUnavailable as error:
                # The task finds out for itself when it records its outcome; meanwhile it
                # goes on, and its lease is taken back at the next renewal if it lapsed.
                log.warning("task %s: cannot report progress (%s)", task_id, error)
            self._beat_quietly()
        outcome = self._outcome(task_id)
        if self._lost is not None:  # the outcome is recorded, but the message cannot be acked
            raise self._lost
        return outcome

    def _outcome(self, task_id: str) -> Outcome:
        try:
            self._in_hand.result()
        except StoreUnavailable as error:
            log.error("task %s: cannot reach Redis (%s); handing it back", task_id, error)
            return Outcome.HAND_BACK_REDIS_DOWN
        except Exception as error:  # process() catches what a task raises; this is a bug
            log.exception("task %s: unexpected error", task_id)
            try:
                self.store.fail(task_id, f"internal error: {error!r}", holder=self.name)
            except StoreUnavailable:
                return Outcome.HAND_BACK_REDIS_DOWN
        self._beat_quietly()
        return Outcome.ACK

    def _stop_task(self, connection: pika.BlockingConnection, task_id: str, job: Job) -> None:
        """Tell the task to stop and wait for its thread to end, so that the next task
        does not start beside it; the engine checks `cancel` at least every second."""
        job.cancel.set()
        deadline = time.monotonic() + STOP_TASK_WAIT
        while not self._in_hand.done():
            if time.monotonic() > deadline:
                log.error(
                    "task %s: still running %gs after it was told to stop; going on beside "
                    "it (a stuck read?)",
                    task_id,
                    STOP_TASK_WAIT,
                )
                return
            self._answer_broker(connection, 0.1)

    def _answer_broker(self, connection: pika.BlockingConnection, seconds: float) -> None:
        """Wait up to `seconds` for the task in hand to end, then answer RabbitMQ
        (heartbeats, dead letters) if it has not been answered for ANSWER_INTERVAL. A tiny
        task ends before that: its executor does not poll RabbitMQ while it runs, nor needs
        waking when it ends. Once the connection is lost, just wait: the task goes on to its
        end with its lease renewed, or its redelivered message would let another executor
        take it over."""
        futures.wait([self._in_hand], timeout=seconds)
        now = time.monotonic()
        if self._lost is not None or now - self._answered < ANSWER_INTERVAL:
            return
        self._answered = now
        try:
            connection.process_data_events(time_limit=0)
        except broker.CONNECTION_ERRORS as error:
            log.warning("lost RabbitMQ (%r); following the task in hand to its end", error)
            self._lost = error

    def _start_thread(self, task_id: str, attempt: int, job: Job) -> Future[None]:
        def work() -> None:
            threading.current_thread().name = f"task-{task_id}"
            logs.TASK_ID.set(task_id)
            self.process(task_id, attempt, job.cancel, job.stats, job.claimed)

        return self._runner.run(work)

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
            try:
                if self.store.fail(task_id, reason):
                    log.error("task %s: %s", task_id, reason)
            except StoreUnavailable as error:
                # Left unacked: RabbitMQ delivers it again after the reconnection.
                log.warning("task %s: cannot record that it gave up (%s)", task_id, error)
                return
        channel.basic_ack(method.delivery_tag)

    # -- one task -------------------------------------------------------------------------

    def process(
        self,
        task_id: str,
        attempt: int = 1,
        cancel: threading.Event | None = None,
        stats: ReadStats | None = None,
        claimed: threading.Event | None = None,
    ) -> None:
        """Run one task to done or failed; only an unreachable Redis escapes from here:
        whatever else goes wrong fails this task and no other. A part of a split task
        (executor/split.py) is run as its task's."""
        stats = stats or ReadStats()
        if part_of(task_id):
            self._process_part(task_id, attempt, cancel, stats, claimed)
            return
        task = self._claim(task_id, attempt, cancel)
        if task is None:
            return
        if task.parts_total and not task.unsplit:  # a redelivered message: its parts run
            log.info("task %s: split already; its parts finish it", task_id)
            self.store.release_lease(task_id, self.name)
            return
        if claimed is not None:
            claimed.set()
        log.info("task %s: summing %s (attempt %d)", task_id, task.source.describe(), attempt)
        started = time.monotonic()
        try:
            result = self._sum(task, stats, cancel)
            if result is None:  # split: its parts finish it
                self.store.release_lease(task_id, self.name)
                return
            ready = self.store.complete_and_dispatch(
                task.id, result, holder=self.name, **stats.to_record()
            )
            recorded = ready is not None
            self._ready = ready  # for the consume loop to publish after the ack
        except TaskInterrupted:
            log.info("task %s: interrupted", task_id)
            metrics.record("interrupted", time.monotonic() - started, stats)
        except StoreUnavailable:
            raise
        except PermanentError as error:
            self._fail(task, str(error), stats)
        except TransientError as error:
            self._fail(task, f"storage kept failing, gave up: {error}", stats)
        except Exception as error:
            log.exception("task %s: unexpected error", task_id)
            self._fail(task, f"internal error: {error!r}", stats)
        else:
            if not recorded:
                log.info(
                    "task %s: finished or taken over elsewhere; this result is dropped", task_id
                )
                return
            metrics.record("done", time.monotonic() - started, stats)
            self._done += 1
            log.info(
                "task %s: done, %d rows in %.2fs (%d attempts, %d resumes)",
                task_id,
                stats.rows_read,
                time.monotonic() - started,
                stats.attempts,
                stats.resumes,
            )

    def _process_part(
        self,
        part_id: str,
        attempt: int,
        cancel: threading.Event | None,
        stats: ReadStats,
        claimed: threading.Event | None,
    ) -> None:
        lease = self.settings.lease
        part = self._claim(
            part_id, attempt, cancel, lambda: self.store.claim_part(part_id, self.name, lease)
        )
        if part is None:
            return
        if claimed is not None:
            claimed.set()
        self.splitter.sum_part(part_id, part, stats, cancel)

    def _claim(
        self,
        task_id: str,
        attempt: int,
        cancel: threading.Event | None,
        take: Callable[[], Any] | None = None,
    ) -> Any:
        """Take the task (`take` another way: a part), or None if there is nothing to do.

        Another executor's lease may still last: either that executor died and RabbitMQ
        redelivered its message here (take over once the lease lapses), or it is alive and
        this message is a duplicate (it renews its lease, every third of LEASE: leave the
        task to it). Waiting for either keeps the message, so a poison task still counts
        a delivery for each executor it kills."""
        lease = self.settings.lease
        take = take or (
            lambda: self.store.claim(
                task_id, self.name, attempt, lease, published=self._taken_confirmed()
            )
        )
        held: Held | None = None
        while True:
            claim = take()
            if not isinstance(claim, Held):
                if claim is None:
                    log.info("task %s is finished or unknown; nothing to do", task_id)
                return claim
            if held is None:
                log.info("task %s: held by %s; waiting for its lease", task_id, claim.executor)
            elif claim.executor != held.executor or claim.lease_left > held.lease_left:
                log.info("task %s: %s is running it; nothing to do", task_id, claim.executor)
                return None
            held = claim
            wait = min(claim.lease_left + 0.05, 0.5)
            if cancel is None:
                time.sleep(wait)
            elif cancel.wait(wait):
                log.info("task %s: stopped while waiting for its lease", task_id)
                return None

    def _sum(
        self, task: Task, stats: ReadStats, cancel: threading.Event | None
    ) -> dict[str, Any] | None:
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
    ) -> dict[str, Any] | None:
        """The task's result; None once it is split into parts (executor/split.py)."""
        storage = self.storages[task.source.storage]
        with storage.open(
            task.source, stats, f"task {task.id}", cancel, client=task.client
        ) as stream:
            threads = self.settings.executor_threads or None
            if self.splitter.wants(task):
                return self.splitter.sum_or_split(task, stream, stats, cancel)
            if task.op == "sum_even":
                found = evens.sum_even(stream, cancel, stats.count_rows, threads)
                return found.to_result()
            sums = summing.sum_columns(
                stream, task.header, task.delimiter, cancel, stats.count_rows, threads
            )
            return sums.to_result()

    def _fail(self, task: Task, error: str, stats: ReadStats) -> None:
        log.info("task %s: failed: %s", task.id, error)
        metrics.record("failed", None, stats)
        if self.store.fail(task.id, error, holder=self.name, **stats.to_record()):
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

    def _beat_quietly(self) -> None:
        """Beat while a task runs: a Redis that does not answer must not stop the watch."""
        try:
            self._beat()
        except StoreUnavailable as error:
            log.debug("heartbeat skipped: %s", error)

    # -- stopping -------------------------------------------------------------------------

    @property
    def stopping(self) -> bool:
        return self._stop_deadline is not None

    def _request_stop(self, signum: int, _frame: Any) -> None:
        self.stop(signal.Signals(signum).name)

    def stop(self, why: str = "stop") -> None:
        """A warm stop the first time, a cold one the second (see the module docstring)."""
        if self._stop_deadline is None:
            log.info("%s: finishing the task in hand, then stopping", why)
            self._stop_deadline = time.monotonic() + self.settings.stop_grace
        else:
            log.info("%s again: handing the task in hand back now", why)
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
