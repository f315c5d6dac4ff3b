"""RabbitMQ: the topology both services declare, and the backend's confirmed publisher.

pika's exceptions stop here: callers see BrokerUnavailable.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass

import orjson
import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel

from colsum.errors import BrokerMisconfigured, BrokerUnavailable
from colsum.settings import Settings

log = logging.getLogger(__name__)

ROUTING_KEY = "task"

# Everything pika raises when the connection or channel is gone or cannot be opened.
CONNECTION_ERRORS: tuple[type[Exception], ...] = (
    pika.exceptions.AMQPConnectionError,
    pika.exceptions.AMQPChannelError,
    pika.exceptions.StreamLostError,
    ConnectionError,
    OSError,
)


@dataclass(frozen=True)
class Topology:
    """A durable direct exchange routing every task to one durable shared queue; messages
    delivered `delivery_limit` times go to a dead-letter queue beside it."""

    exchange: str
    queue: str
    delivery_limit: int = 5

    @classmethod
    def from_settings(cls, settings: Settings) -> Topology:
        return cls(settings.amqp_exchange, settings.amqp_queue, settings.delivery_limit)

    @property
    def dead_exchange(self) -> str:
        return f"{self.exchange}.dead"

    @property
    def dead_queue(self) -> str:
        return f"{self.queue}.dead"

    def declare(self, channel: BlockingChannel) -> None:
        """Idempotent: both services call it, whichever starts first creates the objects."""
        channel.exchange_declare(self.exchange, exchange_type="direct", durable=True)
        channel.exchange_declare(self.dead_exchange, exchange_type="fanout", durable=True)
        # Quorum queues are replicated and durable, RabbitMQ's queues for work that must not
        # be lost, and they count deliveries, which makes x-delivery-limit possible.
        quorum = {"x-queue-type": "quorum"}
        arguments = {
            **quorum,
            "x-delivery-limit": self.delivery_limit,
            "x-dead-letter-exchange": self.dead_exchange,
        }
        try:
            channel.queue_declare(self.queue, durable=True, arguments=arguments)
        except pika.exceptions.ChannelClosedByBroker as error:
            if error.reply_code != 406:  # PRECONDITION_FAILED: declared before, otherwise
                raise
            raise BrokerMisconfigured(
                f"queue {self.queue!r} exists with other arguments than {arguments}; delete "
                f"it (rabbitmqctl delete_queue {self.queue}) or set AMQP_QUEUE to a new name"
            ) from error
        channel.queue_declare(self.dead_queue, durable=True, arguments=quorum)
        channel.queue_bind(self.queue, self.exchange, routing_key=ROUTING_KEY)
        channel.queue_bind(self.dead_queue, self.dead_exchange)


def connect(url: str) -> pika.BlockingConnection:
    parameters = pika.URLParameters(url)
    parameters.connection_attempts = 1
    parameters.socket_timeout = 5
    parameters.blocked_connection_timeout = 30
    parameters.client_properties = {"connection_name": "colsum"}
    return pika.BlockingConnection(parameters)


def encode(task_id: str) -> bytes:
    return orjson.dumps({"id": task_id})


def decode(body: bytes) -> str:
    """The task id in a message; ValueError if the message is not one of ours."""
    try:
        message = orjson.loads(body)  # an id, no numbers: jsoncodec's exact decoding is not needed
        task_id = message["id"]
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"not a Colsum task message: {body[:100]!r}") from error
    if not isinstance(task_id, str):
        raise ValueError(f"not a Colsum task message: {body[:100]!r}")
    return task_id


# Deliveries of a task before its executor handed the message back as a fresh copy (see
# executor.worker), which RabbitMQ counts from 0 again.
EARLIER_DELIVERIES = "colsum-earlier-deliveries"


def delivery_count(properties: pika.BasicProperties) -> int:
    """How often this task was delivered before (quorum queues count, and a copy handed
    back carries the count of the message it replaced)."""
    headers = properties.headers or {}
    return int(headers.get("x-delivery-count", 0)) + int(headers.get(EARLIER_DELIVERIES, 0))


def publish(
    channel: BlockingChannel, topology: Topology, task_id: str, earlier_deliveries: int = 0
) -> None:
    """Publish a task on a channel in confirm mode: returns once RabbitMQ has it queued;
    pika.exceptions.UnroutableError or NackError if it refused it."""
    headers = {EARLIER_DELIVERIES: earlier_deliveries} if earlier_deliveries else None
    channel.basic_publish(
        exchange=topology.exchange,
        routing_key=ROUTING_KEY,
        body=encode(task_id),
        properties=pika.BasicProperties(
            delivery_mode=pika.DeliveryMode.Persistent,
            content_type="application/json",
            message_id=task_id,
            headers=headers,
        ),
        mandatory=True,
    )


class Publisher:
    """One confirmed-publish channel per process, opened on first use.

    gunicorn's sync workers leave the connection idle between requests, so the broker may
    have dropped it for missed heartbeats; a publish that finds it gone reconnects and
    tries once more before giving up.
    """

    def __init__(self, url: str, topology: Topology) -> None:
        self.url = url
        self.topology = topology
        self._connection: pika.BlockingConnection | None = None
        self._channel: BlockingChannel | None = None

    def publish(self, task_id: str) -> None:
        """Return once RabbitMQ has confirmed the message is queued; else BrokerUnavailable."""
        for attempt in (1, 2):
            try:
                publish(self._open_channel(), self.topology, task_id)
                return
            except (pika.exceptions.UnroutableError, pika.exceptions.NackError) as error:
                raise BrokerUnavailable(f"RabbitMQ did not accept the task: {error!r}") from error
            except CONNECTION_ERRORS as error:
                self.close()
                if attempt == 2:
                    raise BrokerUnavailable(f"RabbitMQ is unavailable: {error!r}") from error
                log.info("publisher connection lost (%r); reconnecting", error)

    def _open_channel(self) -> BlockingChannel:
        if self._channel is None or not self._channel.is_open:
            self.close()
            self._connection = connect(self.url)
            channel = self._connection.channel()
            channel.confirm_delivery()
            self.topology.declare(channel)
            self._channel = channel
        return self._channel

    def queue_depth(self) -> int:
        """Messages ready in the task queue."""
        try:
            declared = self._open_channel().queue_declare(self.topology.queue, passive=True)
        except CONNECTION_ERRORS as error:
            self.close()
            raise BrokerUnavailable(f"RabbitMQ is unavailable: {error!r}") from error
        return declared.method.message_count

    def ping(self) -> None:
        """BrokerUnavailable unless RabbitMQ answers on this publisher's connection."""
        try:
            self._open_channel().connection.process_data_events(0)
        except CONNECTION_ERRORS as error:
            self.close()
            raise BrokerUnavailable(f"RabbitMQ is unavailable: {error!r}") from error

    def close(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None and connection.is_open:
            with contextlib.suppress(*CONNECTION_ERRORS):
                connection.close()
