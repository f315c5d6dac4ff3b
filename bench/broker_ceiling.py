"""How many tiny tasks a second RabbitMQ lets executors reach, whatever their code costs.

    python bench/broker_ceiling.py [--messages 3000] [--work-us 900] [--consumers 2] [--rounds 3]

Saved to bench/broker_ceiling.md.

A closed loop shaped like Colsum's fair queue: `window` messages circulate; each consumer
process takes one (prefetch 1 unless a row says otherwise), burns `--work-us` of CPU (about
what an executor spends on a tiny task), acks it, then publishes its successor, as an
executor does once a task's place is free. Rows change one thing each: the queue type,
whether the publisher waits for each confirm, the window, the prefetch. The first row is
Colsum's shape today. Every row runs on the same 2 cores as the broker; medians of `--rounds`
interleaved runs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pika
import redis

URL = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")


@dataclass(frozen=True)
class Shape:
    what: str
    queue: str = "quorum"
    wait_for_confirms: bool = True
    window: int = 1  # messages in the loop, per consumer process
    prefetch: int = 1
    consumers: int = 1  # per --consumers


SHAPES = [
    Shape("Colsum today: quorum, confirms waited for, window 1 a consumer"),
    Shape("confirms taken as they come", wait_for_confirms=False),
    Shape("window 2 a consumer", window=2),
    Shape(
        "window 2, prefetch 2, confirms as they come",
        wait_for_confirms=False,
        window=2,
        prefetch=2,
    ),
    Shape("twice the consumers", consumers=2),
    Shape("classic queue", queue="classic"),
    Shape("classic queue, confirms as they come", queue="classic", wait_for_confirms=False),
]


def burn(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def consume(queue: str, messages: int, prefetch: int, wait: bool, work: float) -> None:
    """A consumer: take, work, ack, publish the successor, until `messages` are done."""
    done = redis.Redis.from_url(REDIS_URL)
    connection = pika.BlockingConnection(pika.URLParameters(URL))
    channel = connection.channel()
    channel.basic_qos(prefetch_count=prefetch)
    successors = connection.channel()
    if wait:
        successors.confirm_delivery()
    else:  # pika's blocking channel has no call for this; its underlying channel has
        successors._impl.confirm_delivery(lambda _frame: None)
    persistent = pika.BasicProperties(delivery_mode=2)
    for method, _properties, _body in channel.consume(queue, inactivity_timeout=5):
        if method is None:
            break
        burn(work)
        channel.basic_ack(method.delivery_tag)
        if done.incr(f"{queue}:done") <= messages:
            successors.basic_publish("", queue, b"task", persistent)
    connection.close()


def run(shape: Shape, messages: int, work_us: int, consumers: int) -> float:
    """Messages a second through the loop."""
    queue = f"colsum-bench-ceiling-{uuid.uuid4().hex[:8]}"
    connection = pika.BlockingConnection(pika.URLParameters(URL))
    channel = connection.channel()
    channel.queue_declare(queue, durable=True, arguments={"x-queue-type": shape.queue})
    done = redis.Redis.from_url(REDIS_URL)
    count = consumers * shape.consumers
    args = [queue, str(messages), str(shape.prefetch), str(int(shape.wait_for_confirms))]
    processes = [
        subprocess.Popen([sys.executable, __file__, "--consume", *args, str(work_us)])
        for _ in range(count)
    ]
    try:
        time.sleep(1.0)  # the consumers connect
        started = time.perf_counter()
        for _ in range(count * shape.window):
            channel.basic_publish("", queue, b"task", pika.BasicProperties(delivery_mode=2))
        while int(done.get(f"{queue}:done") or 0) < messages:
            time.sleep(0.005)
        return messages / (time.perf_counter() - started)
    finally:
        for process in processes:
            process.terminate()
            process.wait()
        done.delete(f"{queue}:done")
        channel.queue_delete(queue)
        connection.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--work-us", type=int, default=900)
    parser.add_argument("--consumers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--consume", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.consume:
        queue, messages, prefetch, wait, work_us = args.consume
        consume(queue, int(messages), int(prefetch), wait == "1", int(work_us) / 1e6)
        return
    rates: dict[Shape, list[float]] = {shape: [] for shape in SHAPES}
    for _ in range(args.rounds):
        for shape in SHAPES:
            rates[shape].append(run(shape, args.messages, args.work_us, args.consumers))
    lines = [
        f"# Broker ceiling: {args.messages} messages, {args.work_us} us of work each, "
        f"{args.consumers} consumers, median of {args.rounds}",
        "",
        "| shape | messages/s |",
        "| --- | --- |",
        *(f"| {shape.what} | {statistics.median(rates[shape]):.0f} |" for shape in SHAPES),
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    (Path(__file__).parent / "broker_ceiling.md").write_text(text)


if __name__ == "__main__":
    main()
