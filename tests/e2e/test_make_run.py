"""`make run`'s command, as the Makefile writes it: Ctrl-C gives executors their STOP_GRACE,
and scripts/supervise.py reports every exit code as it was."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from tests.conftest import ROOT, environment, finished, free_port, slow_source, wait_for

pytestmark = pytest.mark.e2e

VENV = Path(sys.executable).parent.parent


def run_recipe(tmp_path: Path, port: int) -> tuple[dict[str, str], list[str]]:
    """The command `make run` runs (after installing), read with `make -n` (which runs
    nothing), as (the variables it sets, the command)."""
    stamp = tmp_path / "installed"
    stamp.touch()  # newer than pyproject.toml: nothing to install
    printed = subprocess.run(
        ["make", "-n", "run", f"VENV={VENV}", f"STAMP={stamp}", f"PORT={port}", "EXECUTORS=1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.replace("\\\n", " ")
    words = shlex.split(next(line for line in printed.splitlines() if "services.py" in line))
    assignments = {}
    while "=" in words[0] and not words[0].startswith(("/", ".")):
        name, _, value = words.pop(0).partition("=")
        assignments[name] = value
    return assignments, words


class Output:
    """What a process prints, collected by a thread as it comes."""

    def __init__(self, process: subprocess.Popen) -> None:
        self.text = ""
        threading.Thread(target=self._read, args=(process.stdout,), daemon=True).start()

    def _read(self, stream) -> None:
        for line in stream:
            self.text += line


@pytest.fixture
def make_run(settings, tmp_path):
    """Start `make run`'s command in a process group of its own, as a terminal would."""
    started = []

    def start(**env: str) -> tuple[subprocess.Popen, Output, str]:
        port = free_port()
        assignments, command = run_recipe(tmp_path, port)
        environ = environment(
            settings,
            **{"PORT": str(port), **assignments},  # make exports a PORT given to it
            HOST="127.0.0.1",
            PATH=f"{VENV / 'bin'}{os.pathsep}{os.environ['PATH']}",
            PYTHONPATH=str(ROOT),  # scripts/ import this checkout's colsum
            **env,
        )
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=environ,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        started.append(process)
        return process, Output(process), f"http://127.0.0.1:{port}"

    yield start
    # SIGTERM first: the supervisor runs each process in a session of its own, so a
    # SIGKILL of this group alone would leave the backend and executors running.
    for process in started:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
    for process in started:
        try:
            process.wait(timeout=40)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def test_ctrl_c_lets_the_executor_finish_its_task_within_stop_grace(settings, store, make_run):
    release = threading.Event()
    slow = slow_source(release=release)
    process, output, api = make_run(STOP_GRACE="20", **slow.env)
    wait_for(lambda: "Colsum is up" in output.text, timeout=60)
    task_id = requests.post(f"{api}/tasks", json=slow.source(), timeout=10).json()["id"]
    wait_for(lambda: store.get(task_id).status == "running")

    os.killpg(process.pid, signal.SIGINT)  # Ctrl-C: the terminal signals the whole group
    time.sleep(10)  # honcho, before, sent SIGKILL 5 s after the backend stopped (in 1 to 3 s)
    release.set()  # the rest of the file: the task can end
    process.wait(timeout=40)

    record = finished(store, task_id)
    assert record is not None and record.status == "done", output.text
    assert record.result["rows"] == 1
    assert "did not stop within" not in output.text
    assert "executor.1 exited with code 0" in output.text
    assert process.returncode == 0, output.text


def test_an_executor_still_busy_after_its_grace_is_killed_and_the_exit_code_says_so(
    settings, store, make_run
):
    slow = slow_source(release=threading.Event())
    process, output, api = make_run(STOP_GRACE="2", **slow.env)
    wait_for(lambda: "Colsum is up" in output.text, timeout=60)
    task_id = requests.post(f"{api}/tasks", json=slow.source(), timeout=10).json()["id"]
    wait_for(lambda: store.get(task_id).status == "running")
    executor = int(
        next(
            line.split("pid ")[1].rstrip(")")
            for line in output.text.splitlines()
            if line.startswith("supervise: executor.1 started")
        )
    )
    os.kill(executor, signal.SIGSTOP)  # an executor that cannot answer its SIGTERM

    os.killpg(process.pid, signal.SIGINT)
    process.wait(timeout=60)

    assert "executor.1 did not stop within 12 s: SIGKILL" in output.text
    assert "executor.1 exited with code 137" in output.text
    assert process.returncode == 137


@pytest.mark.parametrize("code", [3, 0])
def test_a_process_that_exits_stops_the_others_and_gives_its_code(tmp_path, code):
    procfile = tmp_path / "Procfile"
    procfile.write_text(f"quits: sleep 0.5; exit {code}\nstays: exec sleep 60\n")
    command = [sys.executable, "scripts/supervise.py", "-f", str(procfile), "--grace", "5"]
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert f"quits.1 exited with code {code}" in run.stderr
    assert "stays.1 exited with code 143" in run.stderr  # our SIGTERM ended it: a clean stop
    assert run.returncode == code


def test_ctrl_c_stops_every_process_though_the_reader_of_the_output_is_gone(tmp_path):
    """`make run | tee log`, then Ctrl-C: tee ends first, and what supervise prints next
    meets a broken pipe."""
    procfile = tmp_path / "Procfile"
    procfile.write_text(
        "talks: exec sh -c 'while :; do echo tick; sleep 0.05; done'\n"
        f"stays: echo $$ > {tmp_path}/stays.pid; exec sleep 60\n"
    )
    command = [sys.executable, "scripts/supervise.py", "-f", str(procfile), "--grace", "5"]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    pid_file = tmp_path / "stays.pid"
    wait_for(lambda: pid_file.exists() and pid_file.read_text().strip())
    process.stdout.close()  # tee is gone
    time.sleep(0.5)  # a few ticks meet the broken pipe

    process.send_signal(signal.SIGINT)
    process.wait(timeout=30)

    with pytest.raises(ProcessLookupError):
        os.kill(int(pid_file.read_text()), 0)


def test_the_backend_listens_where_make_run_says(settings, make_run):
    _, output, api = make_run()
    wait_for(lambda: "Colsum is up" in output.text, timeout=60)
    assert f"dashboard  {api}/" in output.text
    assert requests.get(f"{api}/readyz", timeout=5).status_code == 200


def test_a_concurrency_for_a_process_the_procfile_lacks_is_refused(tmp_path):
    """`make run EXECUTORS=...` with a misspelt name would have run one of each, silently."""
    procfile = tmp_path / "Procfile"
    procfile.write_text("executor: exec sleep 60\n")
    command = [sys.executable, "scripts/supervise.py", "-f", str(procfile), "-c", "executors=2"]
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert run.returncode == 1
    assert run.stderr == f"-c names what {procfile} does not: executors\n"
