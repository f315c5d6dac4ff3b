"""Delivering finished tasks to their `callback_url`.

Threads of their own in each executor, so that a slow or failing receiver never delays the
next task. Deliveries wait in a sorted set in Redis, by due time; an executor claims one
for a minute, POSTs the task's final record as JSON, and records the attempt. A failure is
retried with doubling backoff, `webhook_attempts` times in all; a claim whose executor
died comes due again when it lapses.

The receiver is chosen by whoever submits a task, so it is treated as hostile: its host
must not be internal (`colsum.webhook_targets`), the connection goes to the address checked,
an attempt has one deadline for connecting, sending and the answer's headers, at most
64 KiB of the answer are read (only its status counts; the body never is), redirects are
not followed, and whatever an attempt raises is a failed attempt, never the thread's end.
The request is written by hand: http.client offers no overall deadline, no cap on what it
reads, and no way to connect to one address while naming another in Host and TLS.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import socket
import ssl
import threading
import time

from colsum import jsoncodec
from colsum.errors import StoreUnavailable
from colsum.settings import Settings
from colsum.store import TaskStore
from colsum.webhook_targets import Refused, Target, Unresolved, resolve

log = logging.getLogger(__name__)

CLAIM_SECONDS = 60.0
DELIVERY_THREADS = 4
MAX_ANSWER = 64 * 1024  # bytes of the receiver's answer read, at most
SIGNATURE_HEADER = "X-Colsum-Signature"
STATUS_LINE = re.compile(rb"HTTP/\d(?:\.\d)? +(\d{3})\b")


class AttemptFailed(Exception):
    """This attempt failed; a later one may succeed. The message becomes `last_error`."""


def backoff(attempt: int, first: float) -> float:
    """Seconds before the next try, after `attempt` failed ones."""
    return first * 2 ** (attempt - 1)


def signature(secret: str, body: bytes) -> str:
    """The X-Colsum-Signature value: as GitHub's X-Hub-Signature-256, over the exact body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class Webhooks:
    def __init__(self, settings: Settings, store: TaskStore) -> None:
        self.settings = settings
        self.store = store
        self._stopped = threading.Event()
        # Several, so that a receiver holding one for its whole deadline (or a host name
        # whose DNS is slow to answer) delays no other task's delivery.
        self._threads = [
            threading.Thread(target=self._run, name=f"webhooks-{n}", daemon=True)
            for n in range(DELIVERY_THREADS)
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stopped.set()

    def _run(self) -> None:
        while not self._stopped.is_set():
            try:
                # The claim outlasts an attempt, so that no other thread starts the same one.
                claim = max(CLAIM_SECONDS, 2 * self.settings.webhook_timeout)
                task_id = self.store.due_webhook(claim)
                if task_id is None:
                    self._stopped.wait(0.2)
                else:
                    self._deliver_or_give_up(task_id)
            except StoreUnavailable as error:
                log.warning("webhooks: %s", error)
                self._stopped.wait(1)
            except Exception:  # an ended thread would deliver nothing more
                log.exception("webhooks: unexpected error")
                self._stopped.wait(1)

    def _deliver_or_give_up(self, task_id: str) -> None:
        """A delivery that raises where no receiver is involved would raise again at every
        claim: it fails for good instead."""
        try:
            self.deliver(task_id)
        except StoreUnavailable:
            raise
        except Exception as error:
            log.exception("task %s: webhook failed for good", task_id)
            self.store.webhook_tried(
                task_id, 0, "failed", f"internal error: {error}"[:200], retry_in=None
            )

    def deliver(self, task_id: str) -> None:
        task = self.store.get(task_id)
        if task is None or task.callback_url is None:
            # The record expired: nothing to deliver, and nothing to record it on.
            self.store.redis.zrem(self.store.keys.webhooks, task_id)
            return
        attempt = (task.webhook_attempts or 0) + 1
        body = jsoncodec.dumps(task.to_json()).encode()
        try:
            post(task.callback_url, body, self.settings)
        except Refused as error:
            log.warning("task %s: webhook refused: %s", task_id, error)
            self.store.webhook_tried(task_id, attempt, "failed", str(error), retry_in=None)
            return
        except Exception as error:  # whatever the receiver provokes fails this attempt only
            reason = str(error) if isinstance(error, AttemptFailed) else _describe(error)
            if attempt >= self.settings.webhook_attempts:
                log.warning("task %s: webhook failed for good: %s", task_id, reason)
                self.store.webhook_tried(task_id, attempt, "failed", reason, retry_in=None)
            else:
                delay = backoff(attempt, self.settings.webhook_backoff)
                log.info("task %s: webhook failed (%s); again in %.1fs", task_id, reason, delay)
                self.store.webhook_tried(task_id, attempt, "pending", reason, retry_in=delay)
            return
        log.info("task %s: webhook delivered (attempt %d)", task_id, attempt)
        self.store.webhook_tried(task_id, attempt, "delivered", None, retry_in=None)


def post(url: str, body: bytes, settings: Settings, context: ssl.SSLContext | None = None) -> None:
    """POST `body` to `url`; returns if the receiver answered 2xx. Raises Refused for a URL
    never to be tried, AttemptFailed (or any other error) for a failed attempt."""
    deadline = time.monotonic() + settings.webhook_timeout
    try:
        target = resolve(url, settings)
    except Unresolved as error:
        raise AttemptFailed(str(error)) from None
    headers = {
        "Host": target.host_header,
        "Content-Type": "application/json",
        "Content-Length": str(len(body)),
        "User-Agent": "colsum",
        "Connection": "close",
    }
    if settings.webhook_secret:
        headers[SIGNATURE_HEADER] = signature(settings.webhook_secret, body)
    lines = [f"POST {target.target} HTTP/1.1", *(f"{k}: {v}" for k, v in headers.items())]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode() + body
    try:
        status = _exchange(target, request, deadline, context)
    except TimeoutError:
        raise AttemptFailed(
            f"the receiver did not answer within {settings.webhook_timeout:g} s"
        ) from None
    if 300 <= status < 400:
        raise AttemptFailed(f"the receiver answered {status}; redirects are not followed")
    if not 200 <= status < 300:
        raise AttemptFailed(f"the receiver answered {status}")


def _exchange(
    target: Target, request: bytes, deadline: float, context: ssl.SSLContext | None
) -> int:
    """Send the request to the resolved address and return the answer's status."""
    where = target.host_header
    try:
        sock = socket.create_connection((target.address, target.port), _left(deadline))
    except TimeoutError:
        raise
    except OSError as error:
        raise AttemptFailed(f"connecting to {where} failed: {_reason(error)}") from None
    with sock:
        if target.scheme == "https":
            context = context or ssl.create_default_context()
            sock.settimeout(_left(deadline))
            try:
                sock = context.wrap_socket(sock, server_hostname=target.host)
            except ssl.SSLError as error:
                raise AttemptFailed(f"TLS with {where} failed: {_reason(error)}") from None
        try:
            sock.settimeout(_left(deadline))
            sock.sendall(request)
            return _read_status(sock, deadline)
        except TimeoutError:
            raise
        except OSError as error:
            raise AttemptFailed(f"the exchange with {where} broke off: {_reason(error)}") from None


def _read_status(sock: socket.socket, deadline: float) -> int:
    """The status of the first final (non-1xx) answer, from at most MAX_ANSWER bytes."""
    answer = b""
    received = 0
    while True:
        line_end = answer.find(b"\n")
        if line_end >= 0:
            match = STATUS_LINE.match(answer)
            if match is None:
                raise AttemptFailed("the receiver's answer is not HTTP")
            status = int(match.group(1))
            if status >= 200:
                return status
            head_end = answer.find(b"\r\n\r\n")
            if head_end >= 0:  # an interim answer (100 Continue): the real one follows
                answer = answer[head_end + 4 :]
                continue
        if received >= MAX_ANSWER:
            raise AttemptFailed(f"the receiver's answer has no status within {MAX_ANSWER} bytes")
        sock.settimeout(_left(deadline))
        chunk = sock.recv(MAX_ANSWER - received)
        if not chunk:
            raise AttemptFailed("the receiver closed the connection without answering")
        received += len(chunk)
        answer += chunk


def _left(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError
    return left


def _reason(error: OSError) -> str:
    if isinstance(error, ssl.SSLError):
        return getattr(error, "verify_message", None) or error.reason or str(error)
    return error.strerror or str(error) or type(error).__name__


def _describe(error: Exception) -> str:
    return f"{type(error).__name__}: {error}"[:200]
