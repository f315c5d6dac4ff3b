"""The fair queue against the real Redis: what is dispatched, in which order, and when."""

from __future__ import annotations

import collections
import time

import pytest

from colsum import broker
from colsum.errors import TooManyQueued
from colsum.store import TaskStore
from colsum.task import LocalSource, Task, TaskStatus
from executor.sweeper import Sweeper


def task(client: str = "a", priority: str = "normal") -> Task:
    return Task(source=LocalSource(path="a.csv"), client=client, priority=priority)


def run(store: TaskStore, task_id: str, bytes_read: int = 1000) -> list[str]:
    """An executor takes the task and finishes it, reading `bytes_read`; what is
    dispatched next."""
    store.claim(task_id, "executor:1", attempt=1, lease=30)
    store.complete(task_id, {"rows": 0, "columns": []}, holder="executor:1", bytes_read=bytes_read)
    return store.dispatch()


@pytest.mark.settings(dispatch_window=2)
def test_a_client_alone_gets_the_whole_window_and_the_rest_waits_in_its_backlog(store):
    created = [task() for _ in range(5)]
    dispatched = [store.create(t) for t in created]
    assert dispatched == [[created[0].id], [created[1].id], [], [], []]
    assert store.backlogs() == {"a": 3}
    assert store.counts("a") == {"active": 5, "queued": 5, "running": 0}


@pytest.mark.settings(dispatch_window=1)
def test_a_finished_task_makes_room_for_the_next(store):
    first, second = task(), task()
    store.create(first)
    store.create(second)
    assert store.dispatch() == []  # the window is full
    assert run(store, first.id) == [second.id]


def running_and_waiting(store: TaskStore) -> tuple[Task, Task]:
    """A task claimed by executor:1, and one waiting in the backlog behind it (window 1)."""
    first, second = task(), task()
    store.create(first)
    store.create(second)
    store.claim(first.id, "executor:1", attempt=1, lease=30)
    return first, second


@pytest.mark.settings(dispatch_window=1)
def test_a_result_recorded_with_its_dispatch_lets_the_next_in_at_once(store):
    first, second = running_and_waiting(store)
    result = {"rows": 0, "columns": []}
    assert store.complete_and_dispatch(first.id, result, holder="executor:1") == [second.id]
    assert store.dispatch() == []
    assert store.get(first.id).status is TaskStatus.DONE


@pytest.mark.settings(dispatch_window=1)
def test_a_result_that_is_not_recorded_dispatches_nothing(store):
    first, _ = running_and_waiting(store)
    result = {"rows": 0, "columns": []}
    assert store.complete_and_dispatch(first.id, result, holder="executor:2") is None
    assert store.backlogs() == {"a": 1}


@pytest.mark.settings(dispatch_window=0)
def test_without_a_window_set_each_live_executor_has_room_for_one(store):
    for name in ("executor:1", "executor:2", "executor:3"):
        store.heartbeat(name, {"name": name}, ttl=15)
    dispatched = [store.create(task()) for _ in range(4)]
    assert [len(ids) for ids in dispatched] == [1, 1, 1, 0]


@pytest.mark.settings(dispatch_window=0)
def test_with_no_live_executor_one_task_still_enters_the_queue(store):
    assert [len(store.create(task())) for _ in range(2)] == [1, 0]


def one_finished_and_one_waiting(store: TaskStore) -> Task:
    """With a window of one: a task run to its end, and the one that waited behind it."""
    running, waiting = task(), task()
    store.create(running)
    store.create(waiting)
    store.claim(running.id, "executor:1", attempt=1, lease=30)
    store.complete(running.id, {"rows": 0, "columns": []}, holder="executor:1")
    return waiting


def swept_into_the_queue(settings, store: TaskStore, channel) -> str:
    """The id in the one message a sweep leaves in the queue."""
    sweeper = Sweeper(settings, store)
    sweeper.sweep()
    sweeper.close()
    message = channel.basic_get(settings.amqp_queue, auto_ack=True)
    assert message[2] is not None
    return broker.decode(message[2])


@pytest.mark.settings(dispatch_window=1)
def test_a_client_arriving_behind_a_backlog_goes_next(store):
    big = [task("a") for _ in range(10)]
    for t in big:
        store.create(t)
    run(store, big[0].id)  # a has used the executors alone for a while
    late = task("b")
    assert store.create(late) == []
    assert run(store, big[1].id) == [late.id]


@pytest.mark.settings(dispatch_window=1)
def test_a_clients_high_priority_tasks_go_first_then_normal_then_low(store):
    running = task("a")
    store.create(running)
    low, normal, high = task("a", "low"), task("a", "normal"), task("a", "high")
    for t in (low, normal, high):
        store.create(t)
    order = [running.id]
    for _ in range(3):
        order += run(store, order[-1])
    assert order == [running.id, high.id, normal.id, low.id]


@pytest.mark.settings(dispatch_window=1)
def test_priority_never_takes_a_client_more_than_its_share(store):
    urgent = [task("a", "high") for _ in range(6)]
    patient = [task("b", "low") for _ in range(6)]
    for pair in zip(urgent, patient, strict=True):
        for t in pair:
            store.create(t)
    clients = {t.id: t.client for t in urgent + patient}
    order = [urgent[0].id]
    for _ in range(9):
        order += run(store, order[-1])
    assert collections.Counter(clients[i] for i in order) == {"a": 5, "b": 5}


@pytest.mark.settings(dispatch_window=1)
def test_shares_follow_the_weights_in_bytes_read(store):
    store.redis.hset(f"{store.prefix}client:heavy", "weight", 3)
    for client in ("heavy", "light"):
        for _ in range(60):
            store.create(task(client))
    clients = {}
    for client in ("heavy", "light"):
        for task_id in store.redis.zrange(store.keys.backlog(client), 0, -1):
            clients[task_id] = client
    head = store.redis.zrange(store.keys.dispatched, 0, -1)[0]
    clients[head] = "heavy"
    order = [head]
    for _ in range(40):
        order += run(store, order[-1], bytes_read=1 << 20)
    shares = collections.Counter(clients[i] for i in order[:40])
    assert shares["heavy"] == pytest.approx(30, abs=2)


@pytest.mark.settings(dispatch_window=1)
def test_a_cheap_client_is_charged_its_bytes_not_the_average(store):
    """b's tasks read a tenth of a's: per byte they are equal, so b runs ten to a's one."""
    a = [task("a") for _ in range(30)]
    b = [task("b") for _ in range(30)]
    for t in a + b:
        store.create(t)
    sizes = {**{t.id: 10 << 20 for t in a}, **{t.id: 1 << 20 for t in b}}
    clients = {**{t.id: "a" for t in a}, **{t.id: "b" for t in b}}
    order = [a[0].id]
    for _ in range(29):
        order += run(store, order[-1], bytes_read=sizes[order[-1]])
    ran = collections.Counter(clients[i] for i in order[5:])  # once both have a history
    assert ran["b"] >= 6 * ran["a"]


@pytest.mark.settings(dispatch_window=1)
def test_a_cancelled_task_leaves_the_backlog_and_is_never_dispatched(store):
    running, cancelled, kept = task(), task(), task()
    for t in (running, cancelled, kept):
        store.create(t)
    assert store.cancel(cancelled.id) is TaskStatus.QUEUED
    assert run(store, running.id) == [kept.id]
    assert store.backlogs() == {}


@pytest.mark.settings(dispatch_window=1)
def test_cancelling_a_running_task_makes_room(store):
    running, waiting = task(), task()
    store.create(running)
    store.create(waiting)
    store.claim(running.id, "executor:1", attempt=1, lease=30)
    store.cancel(running.id)
    assert store.dispatch() == [waiting.id]


@pytest.mark.settings(dispatch_window=10)
def test_a_client_may_have_at_most_its_cap_of_tasks_queued(store):
    store.create(task("a"), max_queued=2)
    store.create(task("a"), max_queued=2)
    with pytest.raises(TooManyQueued, match="2 tasks queued"):
        store.create(task("a"), max_queued=2)
    store.create(task("b"), max_queued=2)  # the cap is per client


def test_counts_and_pages_are_per_client_when_asked(store):
    mine, theirs = task("a"), task("b")
    store.create(mine)
    store.create(theirs)
    assert store.counts("a") == {"active": 1, "queued": 1, "running": 0}
    assert store.counts() == {"active": 2, "queued": 2, "running": 0}
    assert [t.id for t in store.page(None, 10, None, client="a").tasks] == [mine.id]
    assert [t.id for t in store.page(TaskStatus.QUEUED, 10, None, client="b").tasks] == [theirs.id]


@pytest.mark.settings(dispatch_window=1, outbox_grace=0)
def test_a_task_dispatched_by_a_process_that_died_before_publishing_is_published_by_the_sweeper(
    settings, store, channel
):
    waiting = one_finished_and_one_waiting(store)
    assert store.dispatch() == [waiting.id]  # ...and the dispatcher died here
    time.sleep(0.01)
    assert swept_into_the_queue(settings, store, channel) == waiting.id


@pytest.mark.settings(dispatch_window=1)
def test_the_sweeper_dispatches_what_a_lost_event_left_waiting(settings, store, channel):
    waiting = one_finished_and_one_waiting(store)
    # ...and its executor died before it dispatched the next task.
    assert swept_into_the_queue(settings, store, channel) == waiting.id


@pytest.mark.settings(dispatch_window=1)
def test_a_client_that_was_away_earns_no_credit_for_it(store):
    a = [task("a") for _ in range(20)]
    for t in a:
        store.create(t)
    order = [a[0].id]
    for _ in range(9):
        order += run(store, order[-1])  # a alone, for ten tasks
    b = [task("b") for _ in range(10)]
    for t in b:
        store.create(t)
    clients = {**{t.id: "a" for t in a}, **{t.id: "b" for t in b}}
    start = len(order)
    for _ in range(8):
        order += run(store, order[-1])
    ran = collections.Counter(clients[i] for i in order[start:])
    assert ran == {"a": 4, "b": 4}  # taking turns, not b's ten first
