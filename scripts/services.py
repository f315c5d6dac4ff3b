"""Make sure Redis and RabbitMQ answer, run a command, then stop what was started for it.

`make run` and `make test` call this, so a fresh machine needs nothing but `make`: a
service that is installed but down is started (Redis with its data under .run/redis), one
that is missing is installed from Debian's packages when apt is there, and otherwise the
message says exactly what to do. Only services this script started are stopped again.

    python scripts/services.py [--optional] [--tool COMMAND[=PACKAGE]] -- COMMAND [ARG ...]
"""

from __future__ import annotations

import argparse
import errno
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import pika
import redis

from colsum.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
RUN_DIR = ROOT / ".run"
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", ""}
HELP = """\
Colsum needs Redis and RabbitMQ. Either
  - install them:   sudo apt-get install redis-server rabbitmq-server   (then run make again)
  - or run them in Docker:   docker run -d -p 127.0.0.1:6379:6379 redis:7-alpine
                             docker run -d -p 127.0.0.1:5672:5672 rabbitmq:3.13-alpine
  - or point REDIS_URL and AMQP_URL at servers you already have."""


def say(message: str) -> None:
    print(f"services: {message}", file=sys.stderr, flush=True)


def masked(url: str) -> str:
    """The URL as it may be printed: its password, if any, as ***. A pattern, not a URL
    parser, so that a malformed URL is masked too (up to its last @, if in doubt)."""
    return re.sub(r"^([A-Za-z][A-Za-z0-9+.-]*://[^:@/]*):.*@", r"\1:***@", url)


def place(url: str, default_port: int) -> tuple[str | None, int]:
    """(host, port) of a service URL; no host when the URL cannot be read."""
    try:
        parts = urlsplit(url)
        return parts.hostname, parts.port or default_port
    except ValueError:
        return None, default_port


def redis_answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2).ping())
    except (redis.RedisError, ValueError):  # ValueError: not a redis:// URL
        return False


def rabbitmq_answers(url: str) -> bool:
    try:
        parameters = pika.URLParameters(url)
        parameters.connection_attempts = 1
        parameters.socket_timeout = 2
        pika.BlockingConnection(parameters).close()
    except Exception:  # pika raises many kinds, a bad URL's among them
        return False
    return True


def as_root(command: list[str]) -> list[str] | None:
    """The command with sudo in front when needed; None when root cannot be had."""
    if os.geteuid() == 0:
        return command
    if (
        shutil.which("sudo")
        and subprocess.run(["sudo", "-n", "true"], capture_output=True).returncode == 0
    ):
        return ["sudo", "-n", *command]
    return None


def apt_install(*packages: str) -> bool:
    command = as_root(["apt-get", "install", "-y", "-q", *packages])
    if not shutil.which("apt-get") or command is None:
        return False
    say(f"installing {' '.join(packages)} with apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    update = as_root(["apt-get", "update", "-q"])
    subprocess.run(update, env=env, check=False, stdout=subprocess.DEVNULL)
    return subprocess.run(command, env=env).returncode == 0


def start_redis(port: int) -> list[str] | None:
    """Start redis-server in the background; return the command that stops it."""
    if not shutil.which("redis-server") and not apt_install("redis-server"):
        return None
    # The service apt may have started counts as ours to use, not ours to stop.
    if wait_for(lambda: redis_answers(f"redis://127.0.0.1:{port}"), seconds=3):
        return []
    data = RUN_DIR / "redis"
    data.mkdir(parents=True, exist_ok=True)
    say(f"starting redis-server on port {port} (data in {data})")
    subprocess.run(
        [
            "redis-server",
            "--daemonize",
            "yes",
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--dir",
            str(data),
            "--logfile",
            str(data / "redis.log"),
            "--appendonly",
            "yes",
            "--maxmemory-policy",
            "noeviction",
        ],
        check=True,
    )
    return ["redis-cli", "-p", str(port), "shutdown"]


def start_rabbitmq(url: str) -> list[str] | None:
    """Start rabbitmq-server in the background; return the command that stops it."""
    installed = shutil.which("rabbitmq-server") or Path("/usr/sbin/rabbitmq-server").exists()
    if not installed and not apt_install("rabbitmq-server"):
        return None
    if wait_for(lambda: rabbitmq_answers(url), seconds=3):
        return []
    command = as_root(["rabbitmq-server", "-detached"])
    if command is None:
        return None
    say("starting rabbitmq-server (it takes a few seconds)")
    env = {**os.environ, "PATH": os.environ.get("PATH", "") + ":/usr/sbin"}
    subprocess.run(command, check=True, env=env)
    if wait_for(lambda: rabbitmq_answers(url), seconds=90):
        configure_rabbitmq()
    return as_root(["rabbitmqctl", "stop"])


def configure_rabbitmq() -> None:
    """Apply deploy/rabbitmq.conf's consumer_timeout to the node started here."""
    text = (ROOT / "deploy" / "rabbitmq.conf").read_text()
    timeout = re.search(r"^consumer_timeout\s*=\s*(\d+)", text, re.MULTILINE)
    setting = f"application:set_env(rabbit, consumer_timeout, {timeout[1]})." if timeout else ""
    command = as_root(["rabbitmqctl", "eval", setting])
    if setting and command:
        subprocess.run(command, check=False, stdout=subprocess.DEVNULL)


def wait_for(check, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while True:
        if check():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)


def ensure(settings: Settings) -> tuple[bool, list[list[str]]]:
    """(all services answer, commands that stop the ones started here)."""
    stoppers: list[list[str]] = []
    ok = True
    redis_host, redis_port = place(settings.redis_url, 6379)
    if not redis_answers(settings.redis_url):
        stop = start_redis(redis_port) if redis_host in LOCAL_HOSTS else None
        if stop is None or not wait_for(lambda: redis_answers(settings.redis_url), 15):
            say(f"Redis does not answer at {masked(settings.redis_url)}")
            ok = False
        stoppers += [stop] if stop else []
    if not rabbitmq_answers(settings.amqp_url):
        local = place(settings.amqp_url, 5672)[0] in LOCAL_HOSTS
        stop = start_rabbitmq(settings.amqp_url) if local else None
        if stop is None or not wait_for(lambda: rabbitmq_answers(settings.amqp_url), 90):
            say(f"RabbitMQ does not answer at {masked(settings.amqp_url)}")
            ok = False
        stoppers += [stop] if stop else []
    return ok, stoppers


def port_in_use(host: str, port: int) -> bool:
    """Whether something listens where the backend would: binding as gunicorn does (with
    SO_REUSEADDR, so connections closing from an earlier run do not count) fails."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except OSError as error:
        return error.errno == errno.EADDRINUSE
    return False


def announce(settings: Settings, stopped: threading.Event) -> None:
    """Once the backend answers, say where everything is; nothing if the command stopped
    first (its backend failed: what answers would be someone else's)."""
    api = f"http://{settings.host}:{settings.port}"
    while not stopped.is_set():
        try:
            with urllib.request.urlopen(f"{api}/readyz", timeout=1):
                break
        except OSError:
            stopped.wait(0.5)
    if stopped.is_set():
        return
    # With auth on, the example carries the header a client's token goes in (see below).
    token = ' -H "Authorization: Bearer $TOKEN"' if settings.admin_token else ""
    print(
        f"""
  Colsum is up.
    dashboard  {api}/
    API        {api}/tasks      try it (both lines):
      curl -X POST {api}/tasks -H 'Content-Type: application/json'{token} \\
           -d '{{"storage":"local","path":"sample.csv"}}'
    docs       {api}/docs/
    executors  {api}/executors
    metrics    {api}/metrics  (each executor's port: see /executors)
    data       {settings.data_dir.resolve()}  (paths in tasks are relative to it)
{tokens(api, settings)}""",
        flush=True,
    )


def tokens(api: str, settings: Settings) -> str:
    """How to get a token, naming ADMIN_TOKEN but never printing it."""
    if not settings.admin_token:
        return (
            "    auth       off: every caller is the client 'anonymous'; to require tokens,\n"
            "               run with ADMIN_TOKEN=<a long random string> (README: Clients and tokens)\n"  # noqa: E501
        )
    return f"""    auth       on: every request needs a token. A client's, from the admin token (the
               value you gave ADMIN_TOKEN):
      curl -X POST {api}/clients -H "Authorization: Bearer $ADMIN_TOKEN" \\
           -H 'Content-Type: application/json' -d '{{"name":"acme"}}'
      (or: COLSUM_TOKEN=$ADMIN_TOKEN .venv/bin/colsum client create acme)
      then: TOKEN=cs_... (the token it printed), as in the example above
      (colsum: COLSUM_TOKEN=cs_...)
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--optional", action="store_true", help="run the command even if a service is missing"
    )
    parser.add_argument(
        "--announce",
        action="store_true",
        help="once the backend answers, print where the API, docs and metrics are; first, "
        "refuse to start when HOST:PORT is taken",
    )
    parser.add_argument(
        "--tool",
        action="append",
        default=[],
        metavar="COMMAND[=PACKAGE]",
        help="a command the COMMAND needs, installed when missing from the Debian package "
        "PACKAGE (by default, the package of the command's name)",
    )
    parser.add_argument("command", nargs="+")
    args = parser.parse_args()

    missing = {}  # command: package, in one apt-get run
    for tool in args.tool:
        command, _, package = tool.partition("=")
        if not shutil.which(command):
            missing[command] = package or command
    if missing and not apt_install(*sorted(set(missing.values()))):
        packages = " ".join(sorted(set(missing.values())))
        say(f"{', '.join(missing)} missing: install the Debian packages {packages}")
    settings = Settings.from_env()
    if args.announce and port_in_use(settings.host, settings.port):
        say(
            f"port {settings.port} is in use on {settings.host}: another Colsum? "
            f"Stop it, or choose another port: make run PORT={settings.port + 1}"
        )
        return 1
    ok, stoppers = ensure(settings)
    if not ok:
        print(HELP, file=sys.stderr)
        if not args.optional:
            return 1
    child = subprocess.Popen(args.command)
    stopped = threading.Event()
    if args.announce:
        # A daemon thread: it only waits for the backend to answer, then prints once.
        threading.Thread(target=announce, args=(settings, stopped), daemon=True).start()

    # Ctrl-C reaches the child too (same process group); let it stop its own processes,
    # and pass SIGTERM on. Handlers, unlike SIG_IGN, are not inherited by the child.
    def forward(signum: int, _frame) -> None:
        if signum == signal.SIGTERM:
            child.send_signal(signum)

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    try:
        return child.wait()
    finally:
        stopped.set()
        for stop in stoppers:
            say(f"stopping what was started: {' '.join(stop)}")
            subprocess.run(stop, check=False, stdout=subprocess.DEVNULL)


if __name__ == "__main__":
    sys.exit(main())
