"""The `colsum` command against a running service, as a script would use it."""

from __future__ import annotations

import fcntl
import http.server
import json
import os
import pty
import select
import shlex
import shutil
import signal
import struct
import subprocess
import sys
import termios
import threading
from decimal import Decimal

import pytest
from werkzeug.serving import make_server

from backend import create_app
from colsum.task import LocalSource, Task
from tests.conftest import ROOT, free_port, slow_source, wait_for

pytestmark = pytest.mark.e2e


def colsum(api: str, *args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "colsum.cli", "--url", api, *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=ROOT)


@pytest.fixture
def api(settings, services) -> str:
    shutil.copy(ROOT / "sample.csv", settings.data_dir / "sample.csv")
    url = services.backend()
    services.executor()
    return url


def test_submit_wait_prints_the_exact_sums_and_exits_0(api):
    run = colsum(api, "submit", "sample.csv", "--wait")
    assert run.returncode == 0, run.stderr
    assert "done" in run.stdout
    assert "revenue" in run.stdout and "4617083.41" in run.stdout


def test_submit_op_sum_even_prints_the_count_and_the_even_sum(api, settings):
    (settings.data_dir / "numbers.txt").write_text("1 2 3\n4 -10\n")
    run = colsum(api, "submit", "numbers.txt", "--op", "sum_even", "--wait")
    assert run.returncode == 0, run.stderr
    assert "integers: 5, even: 3" in run.stdout
    assert "sum of the even ones: -4" in run.stdout


def test_on_a_terminal_submit_wait_draws_a_progress_bar_on_stderr(api):
    leader, follower = pty.openpty()
    # A terminal of 120 columns: on one of zero (no size set) tqdm draws nothing.
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 120, 0, 0))
    command = [sys.executable, "-m", "colsum.cli", "--url", api, "submit", "sample.csv", "--wait"]
    run = subprocess.run(
        command, stdout=subprocess.PIPE, stderr=follower, text=True, timeout=60, cwd=ROOT
    )
    drawn = b""
    while select.select([leader], [], [], 0.5)[0]:
        drawn += os.read(leader, 65536)
    os.close(follower)
    os.close(leader)

    assert run.returncode == 0
    assert "%|" in drawn.decode(errors="replace")
    assert "%|" not in run.stdout and "4617083.41" in run.stdout
    assert "time: " in run.stdout


def test_json_output_parses_and_keeps_every_digit(api):
    run = colsum(api, "--json", "submit", "sample.csv", "--wait")
    task = json.loads(run.stdout, parse_float=Decimal)
    assert task["status"] == "done"
    assert task["result"]["columns"][1]["sum"] == Decimal("1123509.6")


def test_a_failed_task_exits_1(settings, api):
    (settings.data_dir / "bad.csv").write_text("a,b,c,d,e,f,g,h,i,j\n1,2,3,4,5,6,7,8,9,x\n")
    run = colsum(api, "submit", "bad.csv", "--wait")
    assert run.returncode == 1
    assert "line 2, column 10" in run.stdout


def test_an_upload_of_a_local_file(api, tmp_path):
    path = tmp_path / "mine.csv"
    path.write_text("a;b;c;d;e;f;g;h;i;j\n1;2;3;4;5;6;7;8;9;2.5\n")
    run = colsum(api, "--json", "submit", str(path), "--upload", "--delimiter", ";", "--wait")
    assert json.loads(run.stdout, parse_float=Decimal)["result"]["columns"][0]["sum"] == Decimal(
        "2.5"
    )


def test_status_list_active_and_cancel(settings, services):
    slow = slow_source(release=threading.Event())
    api = services.backend()
    services.executor(**slow.env)
    task_id = json.loads(colsum(api, "--json", "submit", f"s3://{slow.bucket}/hung.csv").stdout)[
        "id"
    ]
    wait_for(
        lambda: json.loads(colsum(api, "--json", "status", task_id).stdout)["status"] == "running"
    )
    assert json.loads(colsum(api, "--json", "active").stdout)["running"] == 1
    listed = json.loads(colsum(api, "--json", "list", "--status", "running").stdout)
    assert [t["id"] for t in listed["tasks"]] == [task_id]
    assert colsum(api, "cancel", task_id).returncode == 0
    assert colsum(api, "status", task_id).returncode == 1  # cancelled


def test_a_refused_request_exits_2_and_an_unreachable_service_3(api):
    refused = colsum(api, "submit", "/etc/passwd")
    assert refused.returncode == 2
    assert "must be relative to DATA_DIR" in refused.stderr
    assert colsum(f"http://127.0.0.1:{free_port()}", "active").returncode == 3


def test_options_may_follow_the_command(api):
    run = colsum(api, "submit", "sample.csv", "--wait", "--json")
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["status"] == "done"


def test_a_url_without_a_scheme_is_refused_with_a_message_not_a_traceback():
    run = colsum("127.0.0.1:8000", "active")
    assert run.returncode == 2
    assert run.stderr.startswith("colsum: ") and "Traceback" not in run.stderr
    assert "http://" in run.stderr


def test_uploading_a_file_that_is_not_there_exits_2_naming_it(api):
    run = colsum(api, "submit", "nosuch.csv", "--upload")
    assert run.returncode == 2
    assert run.stderr == "colsum: cannot read nosuch.csv: No such file or directory\n"


def test_a_tab_delimiter_may_be_written_as_backslash_t(api, tmp_path):
    path = tmp_path / "tabs.csv"
    path.write_text("\t".join("abcdefghij") + "\n" + "\t".join("123456789") + "\t4.5\n")
    run = colsum(api, "--json", "submit", str(path), "--upload", "--delimiter", "\\t", "--wait")
    assert json.loads(run.stdout, parse_float=Decimal)["result"]["columns"][0]["sum"] == Decimal(
        "4.5"
    )


def test_list_says_how_to_get_the_next_page(api):
    for _ in range(3):
        colsum(api, "submit", "sample.csv")
    first = colsum(api, "list", "--limit", "2")
    assert first.stdout.count("sample.csv") == 2
    hint = first.stderr.strip()
    assert hint.startswith("more: colsum list --limit 2 --cursor ")
    rest = colsum(api, *hint.removeprefix("more: colsum ").split())
    assert rest.stdout.count("sample.csv") == 1
    assert "more:" not in rest.stderr


def test_the_next_page_hint_keeps_the_status_and_the_limit(settings, api):
    (settings.data_dir / "bad.csv").write_text("a,b,c,d,e,f,g,h,i,j\n1,2,3,4,5,6,7,8,9,x\n")
    for name in ("bad.csv", "sample.csv", "bad.csv", "bad.csv"):
        colsum(api, "submit", name, "--wait")
    first = colsum(api, "list", "--status", "failed", "--limit", "2")
    hint = first.stderr.strip()
    assert hint.startswith("more: colsum list --status failed --limit 2 --cursor ")
    rest = colsum(api, *hint.removeprefix("more: colsum ").split())
    assert rest.stdout.count("bad.csv") == 1 and "sample.csv" not in rest.stdout


@pytest.mark.parametrize(
    ("name", "delimiter"), [("semicolon", ";"), ("pipe", "|"), ("comma", ","), ("TAB", "\t")]
)
def test_a_delimiter_may_be_named(api, tmp_path, name, delimiter):
    path = tmp_path / "named.csv"
    path.write_text(
        delimiter.join("abcdefghij") + "\n" + delimiter.join("123456789") + f"{delimiter}4.5\n"
    )
    run = colsum(api, "--json", "submit", str(path), "--upload", "--delimiter", name, "--wait")
    task = json.loads(run.stdout, parse_float=Decimal)
    assert task["delimiter"] == delimiter
    assert task["result"]["columns"][0]["sum"] == Decimal("4.5")


def test_an_upload_keeps_the_name_of_the_file(api, tmp_path):
    path = tmp_path / "sales-2026-11.csv"
    path.write_text("a,b,c,d,e,f,g,h,i,j\n1,2,3,4,5,6,7,8,9,10\n")
    run = colsum(api, "submit", str(path), "--upload")
    assert run.returncode == 0, run.stderr
    assert "(sales-2026-11.csv)" in run.stdout.splitlines()[0]
    task_id = run.stdout.split()[0]
    shown = json.loads(colsum(api, "--json", "status", task_id).stdout)
    assert shown["source"]["filename"] == "sales-2026-11.csv"


@pytest.fixture
def not_colsum():
    """A web server that answers every GET 200 with an HTML page."""

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(b"<html>hello</html>")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_an_answer_that_is_not_json_is_a_message_not_a_traceback(not_colsum):
    run = colsum(not_colsum, "active")
    assert run.returncode == 3
    assert "Traceback" not in run.stderr
    assert run.stderr == (
        f"colsum: {not_colsum} answered GET /tasks/active with something that is not JSON: "
        "is --url a Colsum service?\n"
    )


def test_the_next_page_hint_names_the_service_it_listed(api):
    for _ in range(2):
        colsum(api, "submit", "sample.csv")
    hint = colsum(api, "list", "--limit", "1").stderr.strip()
    assert hint.endswith(f" --url {api}")


def test_ctrl_c_while_waiting_says_the_task_goes_on_and_exits_130(services):
    slow = slow_source(release=threading.Event())
    api = services.backend()
    services.executor(**slow.env)
    target = f"s3://{slow.bucket}/hung.csv"
    command = [sys.executable, "-m", "colsum.cli", "--url", api, "submit", target, "--wait"]
    waiting = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )

    def running() -> str | None:
        tasks = json.loads(colsum(api, "--json", "list", "--status", "running").stdout)["tasks"]
        return tasks[0]["id"] if tasks else None

    task_id = wait_for(running)

    waiting.send_signal(signal.SIGINT)
    _, stderr = waiting.communicate(timeout=30)

    assert waiting.returncode == 130
    assert "Traceback" not in stderr
    assert (
        f"colsum: stopped waiting; task {task_id} goes on (colsum status {task_id}, "
        f"or colsum cancel {task_id})"
    ) in stderr
    assert json.loads(colsum(api, "--json", "status", task_id).stdout)["status"] == "running"


def test_submit_wait_does_not_hammer_a_backend_whose_long_poll_slots_are_taken(services):
    # WEB_THREADS=2 leaves no slot for long polls: every ?wait answers at once. The
    # access log counts the polls.
    api = services.backend(WEB_THREADS="2", WEB_CONCURRENCY="1", ACCESS_LOG="true")
    slow = slow_source(seconds=3)
    services.executor(**slow.env)
    source = slow.source()
    target = f"s3://{source['bucket']}/{source['key']}"
    assert colsum(api, "submit", target, "--wait").returncode == 0
    backend = services.started[0]
    polls = backend.log.count("?wait=")
    assert 0 < polls <= 8, f"{polls} polls for a task of about 3 s"


def test_a_listing_piped_into_head_ends_quietly(settings, store):
    for _ in range(60):
        store.create(Task(source=LocalSource(path="sample.csv")))
    app = create_app(settings)
    port = free_port()
    server = make_server("127.0.0.1", port, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        command = f"{shlex.quote(sys.executable)} -m colsum.cli --url http://127.0.0.1:{port} "
        run = subprocess.run(
            ["bash", "-o", "pipefail", "-c", command + "list --limit 100 | head -1"],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
        )
    finally:
        server.shutdown()
    assert "Traceback" not in run.stderr and "BrokenPipe" not in run.stderr, run.stderr
    assert run.returncode == 0
