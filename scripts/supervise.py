"""Run the Procfile's processes in the foreground, as `make run` does, and stop them gently.

    python scripts/supervise.py [-f Procfile] [-c executor=2] [--grace SECONDS]

Each process runs in a session of its own, so a Ctrl-C in the terminal reaches only this
script; its output is printed line by line after its name. On Ctrl-C (SIGINT) or SIGTERM,
or when one of them exits, the others get SIGTERM and `--grace` seconds to stop (by
default STOP_GRACE plus 10: an executor finishes its task or requeues it, gunicorn lets
its requests end); only then SIGKILL. A second Ctrl-C is passed on as a second SIGTERM
(an executor then requeues its task at once). honcho, used before, sent SIGKILL five
seconds after the first process stopped, which cut executors' tasks short.

The exit code is 0 when every process exited 0 (or, asked to stop, was ended by the
SIGTERM), else the first other code seen (128+N for a process ended by signal N): a crash
or a SIGKILL is never hidden.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import selectors
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from colsum.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
MARGIN = 10.0  # seconds beyond STOP_GRACE: an executor requeues, then closes its connections


@dataclass
class Child:
    name: str
    process: subprocess.Popen
    pending: bytes = b""  # output after the last newline
    code: int | None = None  # once it exited: its exit code, 128+N for signal N


def say(message: str) -> None:
    emit(sys.stderr, f"supervise: {message}\n".encode())


def emit(stream: TextIO, data: bytes) -> None:
    """Write, even once the reader is gone: with `make run | tee log`, Ctrl-C ends tee
    first, and a BrokenPipeError here would leave every process running."""
    try:
        stream.buffer.write(data)
        stream.flush()
    except BrokenPipeError:
        # Into /dev/null from now on, the flush at exit included.
        os.dup2(os.open(os.devnull, os.O_WRONLY), stream.fileno())


def read_procfile(path: Path) -> list[tuple[str, str]]:
    """(name, command) for each `name: command` line; blank lines and # comments skipped."""
    entries = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, colon, command = line.partition(":")
        if not colon or not re.fullmatch(r"[A-Za-z0-9_-]+", name.strip()) or not command.strip():
            raise SystemExit(f"{path}:{number}: expected 'name: command', found {line!r}")
        entries.append((name.strip(), command.strip()))
    return entries


def counts(values: list[str]) -> dict[str, int]:
    """-c executor=2,backend=1 (or -c given twice) as {"executor": 2, "backend": 1}."""
    found = {}
    for item in (part for value in values for part in value.split(",")):
        name, equals, number = item.partition("=")
        if not equals or not number.isdigit():
            raise SystemExit(f"-c takes NAME=NUMBER, not {item!r}")
        found[name.strip()] = int(number)
    return found


def exit_code(returncode: int) -> int:
    return 128 - returncode if returncode < 0 else returncode


class Supervisor:
    def __init__(self, grace: float) -> None:
        self.grace = grace
        self.children: list[Child] = []
        self.selector = selectors.DefaultSelector()
        self.requests = 0  # SIGINT and SIGTERM received
        self.deadline: float | None = None  # set once stopping began
        self.code: int | None = None

    def start(self, name: str, command: str) -> None:
        process = subprocess.Popen(
            command,
            shell=True,
            start_new_session=True,  # the terminal's Ctrl-C is ours to pass on
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        child = Child(name, process)
        self.children.append(child)
        self.selector.register(process.stdout, selectors.EVENT_READ, child)
        say(f"{name} started (pid {process.pid})")

    def request_stop(self, signum: int, _frame) -> None:
        self.requests += 1

    def run(self) -> int:
        answered = 0
        while any(child.code is None for child in self.children):
            self.pump(timeout=0.2)
            for child in self.children:
                if child.code is None and child.process.poll() is not None:
                    self.exited(child)
            if self.requests > answered:
                answered = self.requests
                self.stop("stopping" if answered == 1 else "stopping, again")
            if self.deadline is not None and time.monotonic() > self.deadline:
                self.kill()
        while self.selector.get_map() and self.pump(timeout=0.05):
            pass  # what they wrote last
        return self.code or 0

    def exited(self, child: Child) -> None:
        self.pump(timeout=0)  # its last words first
        child.code = exit_code(child.process.returncode)
        say(f"{child.name} exited with code {child.code}")
        # Ended by the SIGTERM asked of it (a program without a handler): a clean stop.
        asked = self.deadline is not None and child.process.returncode == -signal.SIGTERM
        if child.code != 0 and not asked and self.code is None:
            self.code = child.code
        if self.deadline is None:
            self.stop(f"{child.name} exited: stopping the others")

    def stop(self, why: str) -> None:
        if self.deadline is None:
            self.deadline = time.monotonic() + self.grace
        running = [child for child in self.children if child.code is None]
        left = self.deadline - time.monotonic()
        names = ", ".join(child.name for child in running)
        say(f"{why}: SIGTERM to {names}; SIGKILL to any still running in {left:.0f} s")
        for child in running:
            # The process alone, not its group: an executor decides what its own
            # children do with the task in hand.
            with contextlib.suppress(ProcessLookupError):  # gone already
                child.process.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        for child in self.children:
            if child.code is None:
                say(f"{child.name} did not stop within {self.grace:g} s: SIGKILL")
                with contextlib.suppress(ProcessLookupError):  # gone already
                    os.killpg(child.process.pid, signal.SIGKILL)
        self.deadline = float("inf")

    def pump(self, timeout: float) -> bool:
        """Print each complete line the children wrote, after the writer's name; whether
        there was anything to read."""
        ready = self.selector.select(timeout)
        for key, _ in ready:
            child: Child = key.data
            data = os.read(key.fileobj.fileno(), 65536)
            if not data:
                self.selector.unregister(key.fileobj)
                data = b"\n" if child.pending else b""
            *lines, child.pending = (child.pending + data).split(b"\n")
            width = max(len(c.name) for c in self.children)
            prefix = f"{time.strftime('%H:%M:%S')} {child.name:<{width}} | ".encode()
            emit(sys.stdout, b"".join(prefix + line + b"\n" for line in lines))
        return bool(ready)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-f", "--procfile", type=Path, default=ROOT / "Procfile")
    parser.add_argument(
        "-c",
        "--concurrency",
        action="append",
        default=[],
        metavar="NAME=NUMBER",
        help="how many of a process to run (1 by default)",
    )
    parser.add_argument(
        "--grace", type=float, help="seconds from SIGTERM to SIGKILL (STOP_GRACE plus 10)"
    )
    args = parser.parse_args(argv)
    grace = args.grace if args.grace is not None else Settings.from_env().stop_grace + MARGIN
    wanted = counts(args.concurrency)
    entries = read_procfile(args.procfile)
    if unknown := set(wanted) - {name for name, _ in entries}:
        raise SystemExit(f"-c names what {args.procfile} does not: {', '.join(sorted(unknown))}")
    processes = [
        (f"{name}.{number}", command)
        for name, command in entries
        for number in range(1, wanted.get(name, 1) + 1)
    ]
    if not processes:
        say(f"nothing to run in {args.procfile}")
        return 1
    supervisor = Supervisor(grace)
    # Before the first start: a Ctrl-C from now on stops the children, never orphans them.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, supervisor.request_stop)
    for name, command in processes:
        supervisor.start(name, command)
    return supervisor.run()


if __name__ == "__main__":
    sys.exit(main())
