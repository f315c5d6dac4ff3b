"""The hostile corpus: files and requests an attacker or a careless user would send.

Each case ends in its documented state within a time bound; afterwards every service
process is still alive and the next good task is done exactly (`after`), which proves that
no process died and no other task was lost. The services are shared by the whole module
(tests/hostile/conftest.py), as a deployment shares them between its users.
"""

from __future__ import annotations

import http.server
import re
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal

import pytest
import requests

from colsum import broker
from colsum import store as task_store
from colsum.broker import Publisher, Topology
from colsum.store import TaskStore
from colsum.task import LocalSource, S3Source, Task
from tests.conftest import free_port, wait_for
from tests.hostile import files
from tests.hostile.conftest import GOOD_CSV, GOOD_RESULT, UPLOAD_MAX_BYTES, Corpus, get
from tests.hostile.files import NAMES, NINE

pytestmark = pytest.mark.e2e

MAX_ERROR = 250  # characters: a message quotes a bad cell, never all of it
MiB = 1 << 20
OUT_OF_RANGE = r"out of range|too many digits|exponent"


def after(corpus: Corpus, deaths_before: int) -> list[str]:
    """What is wrong once a case is over: a process that died, a good task not done."""
    problems = []
    try:
        corpus.good_task_is_done_exactly()
    except (AssertionError, pytest.fail.Exception, requests.RequestException) as error:
        problems.append(f"the next good task: {error}")
    problems += [f"a process died: {death}" for death in corpus.revive()[deaths_before:]]
    return problems


def run(corpus: Corpus, case: Callable[[], None]) -> None:
    """Run a case, then `after`; fail with everything that went wrong."""
    deaths = len(corpus.revive())
    problems = []
    try:
        case()
    except (AssertionError, pytest.fail.Exception, requests.RequestException) as error:
        problems.append(f"the case: {error}")
    problems += after(corpus, deaths)
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


# Files ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """A state a task may end in: its status, and the error's pattern or the result."""

    status: str
    error: str | None = None
    result: dict | None = None

    def matches(self, task: dict) -> bool:
        if task["status"] != self.status:
            return False
        if self.error is not None and not re.search(self.error, task["error"] or ""):
            return False
        return self.result is None or task["result"] == self.result


def failed(pattern: str) -> list[Outcome]:
    return [Outcome("failed", error=pattern)]


def done(rows: int, *sums: tuple[int, str | None, int | str]) -> list[Outcome]:
    columns = [{"column": c, "name": n, "sum": Decimal(s)} for c, n, s in sums]
    return [Outcome("done", result={"rows": rows, "columns": columns})]


def done_evens(count: int, even_count: int, total: int) -> list[Outcome]:
    return [Outcome("done", result={"count": count, "even_count": even_count, "sum": total})]


@dataclass(frozen=True)
class FileCase:
    id: str
    make: files.Maker
    outcomes: list[Outcome]
    bound: float = 10.0  # seconds from POST to the finished task
    options: dict = field(default_factory=dict)  # header, delimiter
    idle_after: bool = False  # the executors' CPU must stop growing once it has ended
    split: bool = False  # the task must have been split into parts


NOT_A_NUMBER = r"line 2, column 10: .*not a number"

FILE_CASES = [
    # Executors must survive any task (issue 12).
    FileCase(
        "sum-over-4300-digits",
        files.text(NINE + "1e4300\n"),
        failed(r"line 1, column 10: .*(" + OUT_OF_RANGE + ")"),
    ),
    FileCase(
        "exponents-1e100000000-and-1e-100000000",
        files.text(NINE + "1e100000000\n" + NINE + "1e-100000000\n"),
        failed(r"line [12], column 10: .*(" + OUT_OF_RANGE + ")"),
    ),
    FileCase(
        "cell-of-5000-digits",
        files.text(NINE + "7" * 5000 + "\n"),
        failed(r"line 1, column 10: .*(" + OUT_OF_RANGE + ")"),
    ),
    FileCase(
        "100000-columns-3-rows",
        files.wide(100_000, 3),
        done(3, *((c, None, 3) for c in range(10, 100_001, 10))),
    ),
    FileCase("fifo", files.fifo, failed(r"not a regular file"), bound=5),
    FileCase(
        "symlink-to-a-device",
        files.symlink("/dev/zero"),
        failed(r"not a regular file|leads outside DATA_DIR"),
        bound=5,
    ),
    FileCase(
        "symlink-out-of-data-dir", files.symlink("/etc/passwd"), failed(r"leads outside DATA_DIR")
    ),
    FileCase(
        "binary-file", files.binary(200_000), failed(r"not a CSV file: binary bytes at offset \d+")
    ),
    FileCase(
        "semicolons-read-with-commas",
        files.text(NAMES.replace(",", ";") + NINE.replace(",", ";") + "10,5\n"),
        failed(r"line [12]: (expected 1 field|one field).*delimiter ';'"),
    ),
    FileCase(  # every row one field: it used to be done, with no sums and no word why
        "semicolons-throughout",
        files.text(NAMES.replace(",", ";") + NINE.replace(",", ";") * 3),
        failed(r"line 1: one field, which ';' splits into 10: is the delimiter ';'\?"),
    ),
    FileCase(
        "5-mib-cell-that-is-not-a-number",
        files.repeated((NAMES + NINE).encode(), b"x", 5 * MiB, b"\n"),
        failed(r"line 2(, column 10)?: .*(not a number|field larger|too long|longer than)"),
    ),
    FileCase(
        "100-kib-cell-that-is-not-a-number",  # under the csv module's field limit
        files.repeated((NAMES + NINE).encode(), b"x", 100_000, b"\n"),
        failed(NOT_A_NUMBER),
    ),
    FileCase(
        "70-mib-single-line",
        files.repeated(b"", b"1234567890,", 70 * MiB),
        failed(r"longer than|too long"),
    ),
    # Others the corpus found.
    FileCase("empty-file", files.text(""), done(0)),
    FileCase("only-newlines", files.text("\n\r\n" * 1000), done(0)),
    FileCase("only-a-header", files.text(NAMES), done(0, (10, "j", 0))),
    FileCase(
        "cr-only-line-ends",
        files.text(NAMES.replace("\n", "\r") + (NINE + "10\r") * 2),
        [*done(2, (10, "j", 20)), *failed(r"line end|\\r|CR")],
    ),
    FileCase("bom-in-a-summed-cell", files.text(NAMES + NINE + "\ufeff5\n"), failed(NOT_A_NUMBER)),
    FileCase(
        "two-files-with-boms-concatenated",
        files.text(("\ufeff" + NAMES + NINE + "10\n") * 2),
        failed(r"line 3, column 10: 'j' is not a number"),
    ),
    FileCase(
        "invalid-utf8-in-a-summed-cell",
        files.raw((NAMES + NINE).encode() + b"\xff\xfe\n"),
        failed(NOT_A_NUMBER),
    ),
    FileCase("nan-cell", files.text(NAMES + NINE + "NaN\n"), failed(NOT_A_NUMBER)),
    FileCase("infinity-cell", files.text(NAMES + NINE + "-Infinity\n"), failed(NOT_A_NUMBER)),
    FileCase("underscore-cell", files.text(NAMES + NINE + "1_000\n"), failed(NOT_A_NUMBER)),
    FileCase(
        "last-row-wider-without-newline",
        files.text(NAMES + NINE + "10\n" + NINE + "10,11"),
        failed(r"line 3: expected 10 fields.*found 11"),
    ),
    FileCase(
        "quoted-newline-in-a-cell",
        files.text(NAMES + '"two\nlines",2,3,4,5,6,7,8,9,10\n'),
        done(1, (10, "j", 10)),
    ),
    FileCase(
        "quote-left-open-at-the-end",
        files.text(NAMES + NINE + '"10\n'),
        failed(r"line 2: .*(quote|unexpected end|malformed)"),
    ),
    FileCase(
        "text-after-a-closing-quote",
        files.text(NAMES + NINE + '"12"x\n'),
        failed(r"line 2"),
    ),
    # The compiled fast path (issue 14): it must step aside, never sum wrongly.
    FileCase(  # 18 digits fit its int64s; their sum does not, and must carry exactly
        "200000-cells-of-18-nines",
        files.repeated(NAMES.encode(), (NINE + "9" * 18 + "\n").encode(), 200_000 * 37),
        done(200_000, (10, "j", "199999999999999999800000")),
    ),
    FileCase(  # the int64 bounds and one past them: the exact path's
        "int64-edges",
        files.text(NAMES + "".join(NINE + f"{n}\n" for n in (2**63 - 1, 2**63, -(2**63) - 1))),
        done(3, (10, "j", 2**63 - 2)),
    ),
    FileCase(
        "quoted-number-with-a-thousands-separator",
        files.text(NAMES + NINE + '"1,234"\n'),
        failed(NOT_A_NUMBER),
    ),
    FileCase(  # the exact path's Decimal reads it: the fast path must not refuse it
        "quoted-number-with-spaces",
        files.text(NAMES + NINE + '" 12 "\n' + NINE + "-2\r\n"),
        done(2, (10, "j", 10)),
    ),
    FileCase(
        "quote-left-open-in-a-quoted-file",
        files.text(NAMES + '"1","2","3","4","5","6","7","8","9","10"\n' * 1000 + NINE + '"10\n'),
        failed(r"line 1002: .*(quote|unexpected end|malformed)"),
    ),
    # sum_even (issue 16): a file of integers.
    FileCase(
        "sum-even-of-a-million-digit-integer",  # its conversion alone would take 24 s
        files.text("2 4\n" + "7" * 1_000_000 + "\n"),
        failed(r"^line 2: an integer of 1,000,000 digits; at most 4,000$"),
        options={"op": "sum_even"},
    ),
    FileCase(
        "sum-even-of-a-csv",
        files.text(NAMES + NINE + "10\n"),
        failed(r"^line 1: 'a' is not an integer$"),
        options={"op": "sum_even"},
    ),
    FileCase(
        "sum-even-of-a-binary-file",
        files.binary(200_000),
        failed(r"not an integer"),
        options={"op": "sum_even"},
    ),
    FileCase(
        "sum-even-of-one-64-mib-line-of-integers",
        files.repeated(b"", b"1234567890 ", 64 * MiB),  # ends in the odd 123456789
        done_evens(64 * MiB // 11 + 1, 64 * MiB // 11, 1234567890 * (64 * MiB // 11)),
        options={"op": "sum_even"},
    ),
    FileCase(
        "symlink-to-another-clients-upload",
        files.link_to_another_clients_upload,
        failed(r"another client's upload"),
    ),
    # Split tasks (issue 16): files over the corpus's SPLIT_SIZE (1 MiB) are summed in parts.
    FileCase(  # part boundaries fall inside the long cell: its line is its first part's
        "part-boundaries-inside-a-3-mib-line",
        files.repeated(
            (NAMES + (NINE + "1\n") * 50000 + "x" * 100).encode(),
            b"y",
            3 * MiB,
            ("," + NINE[:-1] + "\n" + (NINE + "2\n") * 50000).encode(),
        ),
        done(100_001, (10, "j", 150_009)),
        split=True,
    ),
    FileCase(  # a part starts inside quotes: the task is summed again as one stream
        "quoted-newlines-across-part-boundaries",
        files.repeated(
            (NAMES + (NINE + "1\n") * 50000 + '"').encode(),
            b"quoted\n",
            3 * MiB,
            ('",2,3,4,5,6,7,8,9,5\n' + (NINE + "2\n") * 50000).encode(),
        ),
        done(100_001, (10, "j", 150_005)),
        split=True,
    ),
    FileCase(  # found by a later part: the line is counted in the file
        "bad-cell-in-a-later-part",
        files.repeated(
            NAMES.encode(), (NINE + "1\n").encode(), 20 * 157_286, (NINE + "x\n").encode()
        ),
        failed(r"^line 157288, column 10: 'x' is not a number$"),
        split=True,
    ),
    FileCase("missing-file", files.nothing, failed(r"file not found")),
    FileCase("a-directory", files.directory, failed(r"is a directory")),
]


def check_task(corpus: Corpus, source: dict, outcomes: list[Outcome], bound: float) -> dict:
    started = time.monotonic()
    task_id = corpus.submit(source)
    task = corpus.finished(task_id, bound)
    took = time.monotonic() - started
    assert any(outcome.matches(task) for outcome in outcomes), (
        f"ended {task['status']} ({task['error'] or task['result']!r:.300}) after {took:.1f}s;"
        f" expected one of {outcomes!r:.500}"
    )
    assert len(task["error"] or "") <= MAX_ERROR, f"an error of {len(task['error'])} characters"
    return task


@pytest.mark.parametrize("case", FILE_CASES, ids=lambda case: case.id)
def test_file(corpus: Corpus, case: FileCase):
    file_case(corpus, case)


def file_case(corpus: Corpus, case: FileCase) -> None:
    path = corpus.data_dir / f"{case.id}.csv"

    def body() -> None:
        case.make(path)
        source = {"storage": "local", "path": path.name, **case.options}
        task = check_task(corpus, source, case.outcomes, case.bound)
        if case.split:
            assert task["parts"]["total"] > 1, "not split"
        if case.idle_after:
            time.sleep(1)
            busy = corpus.cpu_growth(3)
            assert busy < 0.6, f"the executors spent {busy:.1f}s of CPU in 3s after the task"

    try:
        run(corpus, body)
    finally:
        if path.is_file() and not path.is_symlink():
            path.unlink()  # some are tens of MiB


def test_s3_key_that_does_not_exist(corpus: Corpus):
    source = {"storage": "s3", "bucket": corpus.bucket, "key": "no/such/key.csv"}
    run(corpus, lambda: check_task(corpus, source, failed(r"does not exist"), 10))


# Requests ------------------------------------------------------------------------------


@dataclass(frozen=True)
class RequestCase:
    id: str
    send: Callable[[Corpus], requests.Response]
    statuses: tuple[int, ...]
    error: str = ""  # a pattern the JSON error must match (when the status is an error)
    bound: float = 5.0


Send = Callable[[Corpus], requests.Response]


def post_json(body: object, **params) -> Send:
    return lambda corpus: requests.post(f"{corpus.api}/tasks", json=body, params=params, timeout=10)


def post_raw(data: bytes, content_type: str, **params) -> Send:
    return lambda corpus: requests.post(
        f"{corpus.api}/tasks",
        data=data,
        params=params,
        headers={"Content-Type": content_type},
        timeout=10,
    )


def upload(data: bytes, **params) -> Send:
    return post_raw(data, "text/csv", **params)


def call(method: str, path: str, **params) -> Send:
    return lambda corpus: requests.request(method, f"{corpus.api}{path}", params=params, timeout=10)


def on_a_task(**params) -> Send:
    """GET a task that exists (a fresh good one) with these parameters."""

    def send(corpus: Corpus) -> requests.Response:
        url = f"{corpus.api}/tasks/{corpus.submit(LOCAL)}"
        return requests.get(url, params=params, timeout=10)

    return send


def nested(depth: int) -> bytes:
    return b'{"storage":"local","path":"good.csv","header":' + b"[" * depth + b"]" * depth + b"}"


LOCAL = {"storage": "local", "path": "good.csv"}
UPLOAD = "0123456789abcdef0123456789abcdef.csv"  # an upload's name, of no task
UNKNOWN_ID = "0" * 32
OVER_LIMIT = (GOOD_CSV + (NINE + "1," * 10 + "2\n") * (UPLOAD_MAX_BYTES // 30)).encode()

REQUEST_CASES = [
    RequestCase(
        "multi-byte-delimiter", post_json({**LOCAL, "delimiter": "€"}), (400,), "delimiter"
    ),
    RequestCase(
        "multi-byte-delimiter-on-an-upload",
        upload(GOOD_CSV.encode(), delimiter="€"),
        (400,),
        "delimiter",
    ),
    RequestCase("wait-nan", on_a_task(wait="nan"), (400,), "wait"),
    RequestCase(
        "deeply-nested-json",
        post_raw(nested(100_000), "application/json"),
        (400, 413),
        r"JSON|nested|deep|larger",
    ),
    RequestCase(
        "nested-json-below-the-size-limit",
        post_raw(nested(20_000), "application/json"),
        (400,),
        r"JSON|nested|deep|header",
    ),
    RequestCase("limit-1e9", call("GET", "/tasks", limit="1e9"), (400,), "limit"),
    RequestCase(
        "unknown-query-parameter-on-an-upload",
        upload(GOOD_CSV.encode(), bogus="1"),
        (400,),
        "bogus",
    ),
    RequestCase(
        "unknown-field-and-missing-required-one",
        post_json({"storage": "local", "bogus": 1}),
        (400,),
        r"(?s)(bogus.*path|path.*bogus)",
    ),
    RequestCase("upload-over-upload-max-bytes", upload(OVER_LIMIT), (413,)),
    RequestCase("nul-in-the-path", post_json({"storage": "local", "path": "a\0.csv"}), (400,)),
    RequestCase(
        "path-out-of-data-dir",
        post_json({"storage": "local", "path": "../../etc/passwd"}),
        (400,),
        "DATA_DIR",
    ),
    RequestCase(
        "huge-cursor",
        call("GET", "/tasks", status="cancelled", limit="1", cursor="9" * 400),
        (200, 400),
    ),
    RequestCase("delete-an-unknown-id", call("DELETE", f"/tasks/{UNKNOWN_ID}"), (404,)),
    RequestCase(
        "json-body-over-64-kib", post_json({**LOCAL, "path": "a" * 70_000}), (413,), "larger"
    ),
    RequestCase(
        "json-that-is-not-utf8",
        post_raw(b'{"storage":"local","path":"\xff\xfe.csv"}', "application/json"),
        (400,),
        "JSON",
    ),
    RequestCase(
        "number-past-the-int-text-limit-in-a-field",
        post_raw(
            b'{"storage":"local","path":"good.csv","header":' + b"9" * 60_000 + b"}",
            "application/json",
        ),
        (400,),
        "number",
    ),
    RequestCase(
        "json-with-a-content-type-parameter-the-lane-leaves-to-flask",
        post_raw(b'{"storage":"local","path":"../x.csv"}', "application/json; charset=latin-1"),
        (400,),
        "DATA_DIR",
    ),
    RequestCase("custom-method", call("FOO", "/tasks"), (501,), "method is not one HTTP knows"),
    # What a client's task may read (issue 13): the corpus's client is `anonymous`.
    RequestCase(
        "another-clients-upload-by-path",
        post_json({"storage": "local", "path": f"uploads/bob/{UPLOAD}"}),
        (400,),
        r"another client's upload",
    ),
    RequestCase(
        "bucket-outside-s3-allowed-buckets",
        post_json({"storage": "s3", "bucket": "not-allowed", "key": "a.csv"}),
        (400,),
        r"'not-allowed' is not one this service reads .*allowed are hostile-",
    ),
]


@pytest.mark.parametrize("case", REQUEST_CASES, ids=lambda case: case.id)
def test_request(corpus: Corpus, case: RequestCase):
    def body() -> None:
        started = time.monotonic()
        response = case.send(corpus)
        took = time.monotonic() - started
        assert response.status_code in case.statuses, (
            f"answered {response.status_code}: {response.text[:300]}"
        )
        assert took < case.bound, f"answered after {took:.1f}s"
        if response.status_code >= 400:
            error = response.json()["error"]
            assert re.search(case.error, error), f"error {error[:300]!r}"
            assert len(error) <= MAX_ERROR

    run(corpus, body)


@pytest.mark.parametrize(
    ("source", "pattern"),
    [
        (LocalSource(path=f"uploads/bob/{UPLOAD}"), r"another client's upload"),
        (S3Source(bucket="not-allowed", key="a.csv"), r"allowed are hostile-"),
    ],
    ids=["another-clients-upload", "bucket-not-allowed"],
)
def test_a_task_that_reached_the_queue_another_way_is_refused_by_the_executor(
    corpus: Corpus, source, pattern: str
):
    """Written to Redis and published as the backend would, for the client `acme`, but
    without the backend's checks: the executors refuse it themselves."""
    upload = corpus.data_dir / "uploads" / "bob" / UPLOAD
    upload.parent.mkdir(parents=True, exist_ok=True)
    upload.write_text(GOOD_CSV)
    store = TaskStore(task_store.connect(corpus.settings.redis_url), corpus.settings.redis_prefix)
    task = Task(source=source, client="acme")

    def body() -> None:
        store.create(task)
        publisher = Publisher(corpus.settings.amqp_url, Topology.from_settings(corpus.settings))
        try:
            publisher.publish(task.id)
        finally:
            publisher.close()
        store.published(task.id)
        ended = corpus.finished(task.id, 10)
        assert ended["status"] == "failed" and re.search(pattern, ended["error"]), ended

    run(corpus, body)


@pytest.mark.parametrize(
    "body",
    [b"garbage", b'{"id": 5}', b"[" * 100_000 + b"]" * 100_000],
    ids=["not-json", "id-not-text", "nested-100000-deep"],
)
def test_a_message_in_the_queue_that_is_not_a_task_is_dropped(corpus: Corpus, body: bytes):
    """Whoever may publish to the exchange: what is not a task message is dropped at once,
    costing no executor a reconnection (nor itself a round of redeliveries)."""
    seen = {id(service): len(service.log) for service in corpus.executors}

    def since() -> str:
        return "".join(s.log[seen.get(id(s), 0) :] for s in corpus.executors)

    def case() -> None:
        connection = broker.connect(corpus.settings.amqp_url)
        try:
            connection.channel().basic_publish(
                corpus.settings.amqp_exchange, broker.ROUTING_KEY, body
            )
        finally:
            connection.close()
        wait_for(lambda: "dropping a message" in since())
        assert "unexpected error" not in since(), since()[-2000:]

    run(corpus, case)


def test_one_clients_flood_does_not_hold_up_another_clients_task(corpus: Corpus):
    """300 tasks from the client `flood`, recorded as the backend would (the corpus runs in
    open mode, so the API knows one client only); then one of `anonymous`: it runs next,
    not after the flood."""
    (corpus.data_dir / "good.csv").write_text(GOOD_CSV)
    store = TaskStore(task_store.connect(corpus.settings.redis_url), corpus.settings.redis_prefix)
    flood = [Task(source=LocalSource(path="good.csv"), client="flood") for _ in range(300)]

    def body() -> None:
        publisher = Publisher(corpus.settings.amqp_url, Topology.from_settings(corpus.settings))
        try:
            for task in flood:
                for dispatched in store.create(task):
                    publisher.publish(dispatched)
                    store.published(dispatched)
            mine = corpus.finished(corpus.submit(LOCAL), 10)
            assert mine["status"] == "done" and mine["result"] == GOOD_RESULT, mine
            assert store.counts("flood")["queued"] > 0  # it did not wait for the flood
        finally:
            publisher.close()
            for task in flood:  # what is left of the flood, so that later cases need not wait
                store.cancel(task.id)

    run(corpus, body)


def test_custom_methods_make_no_metric_series_of_their_own(corpus: Corpus):
    def body() -> None:
        for method in ("FOO", "BAR", "X-ANY"):
            assert requests.request(method, f"{corpus.api}/tasks", timeout=5).status_code == 501
        metrics = requests.get(f"{corpus.api}/metrics", timeout=5).text
        assert not re.search(r'method="(FOO|BAR|X-ANY)"', metrics)

    run(corpus, body)


def test_an_upload_cut_short_is_refused(corpus: Corpus):
    """The client promises more bytes than it sends, then closes its side."""

    def body() -> None:
        head = (
            "POST /tasks HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/csv\r\n"
            "Content-Length: 100000\r\nConnection: close\r\n\r\n"
        )
        port = int(corpus.api.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(head.encode() + GOOD_CSV.encode())
            sock.shutdown(socket.SHUT_WR)
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        status = answer.split(b"\r\n", 1)[0].decode(errors="replace")
        assert status.startswith("HTTP/1.1 400"), f"answered {status!r}"

    run(corpus, body)


def test_an_upload_reset_by_the_client_leaves_no_partial_file(corpus: Corpus):
    """The client sends 1 MiB of a promised 8, then resets the connection."""
    uploads = corpus.data_dir / "uploads"

    def body() -> None:
        head = (
            "POST /tasks HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/csv\r\n"
            f"Content-Length: {8 * MiB}\r\n\r\n"
        )
        port = int(corpus.api.rsplit(":", 1)[1])
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock.sendall(head.encode() + GOOD_CSV.encode() + (NINE + "1\n").encode() * (MiB // 20))
        time.sleep(0.3)
        # SO_LINGER with a zero timeout: close() sends a reset instead of a FIN.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()

        def no_partial_upload() -> bool:
            return not list(uploads.rglob("*.part"))

        wait_for(no_partial_upload, timeout=5)

    run(corpus, body)


# Webhooks ------------------------------------------------------------------------------


class Listener:
    """An HTTP server on loopback that records every request; it may answer a redirect."""

    def __init__(self, host: str = "127.0.0.1", redirect_to: str | None = None) -> None:
        self.requests: list[str] = []
        listener = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def answer(self) -> None:
                listener.requests.append(f"{self.command} {self.path}")
                if redirect_to:
                    self.send_response(302)  # urllib follows a 302, turning the POST into a GET
                    self.send_header("Location", redirect_to)
                else:
                    self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_POST = do_PUT = answer

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer((host, free_port()), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.port = self.server.server_port

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    listener = Listener()
    yield listener
    listener.close()


def webhook_case(corpus: Corpus, callback_url: str, pattern: str, silent: Listener) -> None:
    """The task is done and its webhook ends `failed` with a refusal (or POST refuses the
    callback_url at once with a 400 naming it); `silent` got nothing either way."""
    body = {**LOCAL, "callback_url": callback_url}
    response = requests.post(f"{corpus.api}/tasks", json=body, timeout=10)
    if response.status_code == 400:
        assert "callback_url" in response.json()["error"], response.text
        assert silent.requests == []
        return
    assert response.status_code == 202, response.text
    task_id = response.json()["id"]
    assert corpus.finished(task_id, 10)["status"] == "done"

    def settled() -> dict | None:
        hook = corpus.task(task_id)["webhook"] or {}
        return hook if hook.get("status") in ("delivered", "failed") else None

    hook = wait_for(settled, timeout=5)
    assert hook["status"] == "failed", f"{hook}; the private receiver got {silent.requests}"
    assert re.search(pattern, hook["last_error"] or ""), hook
    assert silent.requests == [], f"the private receiver got {silent.requests}"


# Not "connection refused": a refused address is never connected to (no port scanning).
REFUSED = r"private|loopback|link-local|not allowed|reserved|internal"

# Every spelling of loopback reaches the listener on 127.0.0.1 unless refused first. The
# corpus sends nothing off this machine: 169.254.169.254 is left to a test that needs no
# connection (something answers there on some machines, this one included).
LOOPBACK_HOSTS = ["127.0.0.1", "127.1", "2130706433", "0x7f000001", "0.0.0.0"]


@pytest.mark.parametrize("host", LOOPBACK_HOSTS)
def test_webhook_to_loopback_is_refused(corpus: Corpus, listener: Listener, host: str):
    url = f"http://{host}:{listener.port}/hook"
    run(corpus, lambda: webhook_case(corpus, url, REFUSED, listener))


def test_webhook_redirect_to_a_private_address_is_not_followed(corpus: Corpus, listener: Listener):
    """127.0.0.2 is allowed (WEBHOOK_ALLOWED_HOSTS in the corpus); what it redirects to
    is not, and must never be reached."""
    redirector = Listener("127.0.0.2", redirect_to=f"http://127.0.0.1:{listener.port}/reset")
    url = f"http://127.0.0.2:{redirector.port}/hook"

    def body() -> None:
        webhook_case(corpus, url, r"redirect|30[1278]", listener)
        assert redirector.requests, "the allowed receiver was never called"

    try:
        run(corpus, body)
    finally:
        redirector.close()


# Load ----------------------------------------------------------------------------------


def test_long_polls_beyond_the_backends_threads_leave_healthz_answering(corpus: Corpus):
    """24 long polls on a task that stays queued: more than 2 workers x 8 threads."""
    store = TaskStore(task_store.connect(corpus.settings.redis_url), corpus.settings.redis_prefix)
    waiting = Task(source=LocalSource(path="never.csv"))
    store.create(waiting)  # never published: the corpus's OUTBOX_GRACE outlasts the case

    def poll() -> int:
        url = f"{corpus.api}/tasks/{waiting.id}"
        return requests.get(url, params={"wait": "8"}, timeout=20).status_code

    def body() -> None:
        with ThreadPoolExecutor(24) as pool:
            polls = [pool.submit(poll) for _ in range(24)]
            try:
                time.sleep(1)
                for path in ("/healthz", "/tasks/active", "/healthz", "/tasks/active"):
                    started = time.monotonic()
                    response = requests.get(f"{corpus.api}{path}", timeout=1)
                    assert response.status_code == 200
                    assert time.monotonic() - started < 1, (
                        f"{path} took {time.monotonic() - started:.1f}s"
                    )
            finally:
                requests.delete(f"{corpus.api}/tasks/{waiting.id}", timeout=20)
            assert all(poll.result() == 200 for poll in polls)

    run(corpus, body)


def test_a_flood_of_posts_is_all_done_exactly(corpus: Corpus):
    def body() -> None:
        with ThreadPoolExecutor(8) as pool:
            ids = list(pool.map(lambda _: corpus.submit(LOCAL), range(100)))
        for task_id in ids:
            task = corpus.finished(task_id, 30)
            assert task["status"] == "done" and task["result"] == GOOD_RESULT, task

    run(corpus, body)


def test_a_running_task_cancelled_stops_its_work(corpus: Corpus):
    """Cells with an exponent take the exact path: 96 MiB of them run for seconds."""
    path = corpus.data_dir / "exponents.csv"
    row = ",".join(f'"{n}e0"' for n in range(1, 11)).encode() + b"\n"
    files.repeated(b"", row, 96 * MiB)(path)

    def body() -> None:
        task_id = corpus.submit({"storage": "local", "path": path.name})
        wait_for(lambda: corpus.task(task_id)["status"] == "running", timeout=10)
        response = requests.delete(f"{corpus.api}/tasks/{task_id}", timeout=10)
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "cancelled"
        time.sleep(2.5)  # a chunk being summed may finish first
        busy = corpus.cpu_growth(2)
        assert busy < 0.5, f"the executors spent {busy:.1f}s of CPU in 2s after the cancel"
        assert corpus.task(task_id)["status"] == "cancelled"

        def let_go() -> bool:  # an idle executor beats every 5 s
            executors = get(f"{corpus.api}/executors")[1]["executors"]
            return all(e["current_task"] != task_id for e in executors)

        wait_for(let_go, timeout=6, interval=0.2)

    try:
        run(corpus, body)
    finally:
        path.unlink()


def test_upload_of_the_good_file_is_done_exactly(corpus: Corpus):
    """The control: the corpus's own upload path works, so refusals above mean something."""

    def body() -> None:
        response = upload(GOOD_CSV.encode())(corpus)
        assert response.status_code == 202, response.text
        task = corpus.finished(response.json()["id"], 10)
        assert task["result"] == GOOD_RESULT

    run(corpus, body)


# Last: today the first-record scan of this file keeps a core busy for many minutes after
# its task has failed, which would slow every case after it.
OPEN_QUOTE = FileCase(
    "quote-then-16-mib-of-newlines",
    files.repeated(b'"', b"\n", 16 * MiB),
    failed(r"quote|longer than|too long|unexpected end|malformed"),
    idle_after=True,
)


def test_an_open_quote_then_16_mib_of_newlines_ends_and_leaves_no_core_busy(corpus: Corpus):
    file_case(corpus, OPEN_QUOTE)
