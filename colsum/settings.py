"""The one place where a Colsum process reads its environment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Settings:
    """Configuration of one process; every field has a default that works on a laptop."""

    redis_url: str = "redis://127.0.0.1:6379/0"
    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672/%2F"
    data_dir: Path = Path("data")
    aws_url: str | None = None
    aws_id: str | None = None
    aws_secret: str | None = None
    aws_region: str = "us-east-1"
    host: str = "127.0.0.1"
    port: int = 8000
    web_workers: int = 4
    # Namespaces, so that several deployments (or a test run) can share one Redis and one broker.
    redis_prefix: str = "colsum:"
    amqp_exchange: str = "colsum"
    amqp_queue: str = "colsum.tasks"
    # How hard an executor tries before a transient storage error fails the task: failed
    # attempts in a row, the longest wait between two, and the seconds a task may spend
    # failing and waiting in all.
    storage_attempts: int = 5
    storage_max_wait: float = 10.0
    storage_budget: float = 300.0
    # Where uploaded CSVs go: this bucket when set, else DATA_DIR/uploads.
    upload_bucket: str | None = None
    s3_connect_timeout: float = 5.0
    s3_read_timeout: float = 30.0
    # How long an executor lets the task in hand finish after SIGTERM before requeueing it.
    stop_grace: float = 30.0
    # A task running longer fails; keep it below RabbitMQ's consumer_timeout.
    task_time_limit: float = 3600.0
    # Deliveries of one message before it is dead-lettered and its task fails: a task
    # that keeps killing its executor must not loop for ever.
    delivery_limit: int = 5
    # Seconds a finished record is kept.
    record_ttl: int = 7 * 24 * 3600
    # An executor renews the lease on its task; a task whose lease ran out is taken over.
    lease: float = 30.0
    # How often some executor looks for orphans: tasks recorded but never published (after
    # `outbox_grace` seconds) and running tasks without a lease.
    sweep_interval: float = 10.0
    outbox_grace: float = 30.0
    # Deliveries of a finished task to its callback_url: tries, and the first backoff
    # (doubling after each failure).
    webhook_attempts: int = 5
    webhook_backoff: float = 2.0
    # Where an executor serves its Prometheus metrics; 0: a free port, shown on /executors.
    executor_metrics_port: int = 0
    # Threads an executor sums a file's chunks with; 0: one for each CPU it may use.
    executor_threads: int = 0
    # A sum_columns task over this many bytes is split into parts of about this size that
    # any executor may take (executor/split.py); 0: never split.
    split_size: int = 256 << 20
    log_level: str = "INFO"
    log_format: str = "console"  # or "json": one JSON object a line
    # Callback URLs may not reach loopback, private or link-local hosts (SSRF) unless allowed
    # here: all of them, or these host names; WEBHOOK_SECRET signs each body (HMAC-SHA256).
    webhook_allow_private: bool = False
    webhook_allowed_hosts: tuple[str, ...] = ()
    webhook_secret: str | None = None
    # Seconds one delivery attempt may take in all: connect, send, and the answer's headers.
    webhook_timeout: float = 10.0
    # Threads of each backend worker process; long polls take at most all but two of them.
    web_threads: int = 8
    # gunicorn's access log (a line a request on stdout): off, as it costs the hot routes.
    access_log: bool = False
    # A queued record whose message may be lost (queue purged or deleted) is published
    # again after waiting this long, at most once per this many seconds.
    queued_grace: float = 300.0
    # The largest upload (POST /tasks with a CSV body) the backend keeps, in bytes; 0: any.
    upload_max_bytes: int = 10 << 30
    # Seconds an upload may go without a byte arriving before it is dropped (its thread freed).
    upload_idle_timeout: float = 60.0
    # Tasks dispatched to the queue or running at once (colsum/fair_queue.py); 0: one per
    # live executor, so that the fair queue, not RabbitMQ's order, decides what runs next.
    dispatch_window: int = 0
    # The most tasks one client may have queued; 0: any number.
    max_queued_per_client: int = 0
    # What a client's tasks may read (colsum/scope.py): local paths below DATA_DIR/<client>/
    # instead of DATA_DIR, and only these S3 buckets (none: any), besides its own uploads.
    client_dirs: bool = False
    s3_allowed_buckets: tuple[str, ...] = ()
    # Unset: open mode, every caller is the client `anonymous`. Set: every route but health
    # and docs needs a token (backend/auth.py), and this one is the admin's.
    admin_token: str | None = None
    # POST /tasks per client, in flask-limiter's notation ("50/second"); unset: no limit.
    rate_limit: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        defaults = cls()

        def text(name: str, default: str) -> str:
            return env.get(name) or default

        def optional(name: str) -> str | None:
            return env.get(name) or None

        def number(name: str, default: float, kind: type = float):
            raw = env.get(name)
            if not raw:
                return default
            try:
                return kind(raw)
            except ValueError:
                raise ValueError(f"{name} must be a number, got {raw!r}") from None

        def flag(name: str) -> bool:
            raw = (env.get(name) or "false").lower()
            if raw not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(f"{name} must be true or false, got {raw!r}")
            return raw in ("true", "1", "yes")

        return cls(
            redis_url=text("REDIS_URL", defaults.redis_url),
            amqp_url=text("AMQP_URL", defaults.amqp_url),
            data_dir=Path(text("DATA_DIR", str(defaults.data_dir))),
            aws_url=optional("AWS_URL"),
            aws_id=optional("AWS_ID"),
            aws_secret=optional("AWS_SECRET"),
            aws_region=text("AWS_REGION", defaults.aws_region),
            host=text("HOST", defaults.host),
            port=number("PORT", defaults.port, int),
            web_workers=number("WEB_CONCURRENCY", defaults.web_workers, int),
            redis_prefix=text("REDIS_PREFIX", defaults.redis_prefix),
            amqp_exchange=text("AMQP_EXCHANGE", defaults.amqp_exchange),
            amqp_queue=text("AMQP_QUEUE", defaults.amqp_queue),
            storage_attempts=number("STORAGE_ATTEMPTS", defaults.storage_attempts, int),
            storage_max_wait=number("STORAGE_MAX_WAIT", defaults.storage_max_wait),
            storage_budget=number("STORAGE_BUDGET", defaults.storage_budget),
            upload_bucket=optional("UPLOAD_BUCKET"),
            s3_connect_timeout=number("S3_CONNECT_TIMEOUT", defaults.s3_connect_timeout),
            s3_read_timeout=number("S3_READ_TIMEOUT", defaults.s3_read_timeout),
            stop_grace=number("STOP_GRACE", defaults.stop_grace),
            task_time_limit=number("TASK_TIME_LIMIT", defaults.task_time_limit),
            delivery_limit=number("DELIVERY_LIMIT", defaults.delivery_limit, int),
            record_ttl=number("RECORD_TTL", defaults.record_ttl, int),
            lease=number("LEASE", defaults.lease),
            sweep_interval=number("SWEEP_INTERVAL", defaults.sweep_interval),
            outbox_grace=number("OUTBOX_GRACE", defaults.outbox_grace),
            webhook_attempts=number("WEBHOOK_ATTEMPTS", defaults.webhook_attempts, int),
            webhook_backoff=number("WEBHOOK_BACKOFF", defaults.webhook_backoff),
            executor_metrics_port=number(
                "EXECUTOR_METRICS_PORT", defaults.executor_metrics_port, int
            ),
            executor_threads=number("EXECUTOR_THREADS", defaults.executor_threads, int),
            split_size=number("SPLIT_SIZE", defaults.split_size, int),
            log_level=text("LOG_LEVEL", defaults.log_level).upper(),
            log_format=text("LOG_FORMAT", defaults.log_format).lower(),
            webhook_allow_private=flag("WEBHOOK_ALLOW_PRIVATE"),
            webhook_allowed_hosts=tuple(
                host.strip().lower()
                for host in text("WEBHOOK_ALLOWED_HOSTS", "").split(",")
                if host.strip()
            ),
            webhook_secret=optional("WEBHOOK_SECRET"),
            webhook_timeout=number("WEBHOOK_TIMEOUT", defaults.webhook_timeout),
            web_threads=number("WEB_THREADS", defaults.web_threads, int),
            access_log=flag("ACCESS_LOG"),
            queued_grace=number("QUEUED_GRACE", defaults.queued_grace),
            upload_max_bytes=number("UPLOAD_MAX_BYTES", defaults.upload_max_bytes, int),
            upload_idle_timeout=number("UPLOAD_IDLE_TIMEOUT", defaults.upload_idle_timeout),
            dispatch_window=number("DISPATCH_WINDOW", defaults.dispatch_window, int),
            max_queued_per_client=number(
                "MAX_QUEUED_PER_CLIENT", defaults.max_queued_per_client, int
            ),
            client_dirs=flag("CLIENT_DIRS"),
            s3_allowed_buckets=tuple(
                bucket.strip()
                for bucket in text("S3_ALLOWED_BUCKETS", "").split(",")
                if bucket.strip()
            ),
            admin_token=optional("ADMIN_TOKEN"),
            rate_limit=optional("RATE_LIMIT"),
        )
