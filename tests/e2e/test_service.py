"""The whole path over HTTP: gunicorn backend, two executor processes, Redis, RabbitMQ."""

from __future__ import annotations

import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest

from tests.conftest import ROOT, slow_source, wait_for
from tests.csvfiles import write_numbers
from tests.e2e.client import active, finished, local, submit

pytestmark = pytest.mark.e2e

SAMPLE_SUMS = [
    {"column": 10, "name": "revenue", "sum": Decimal("4617083.41")},
    {"column": 20, "name": "margin", "sum": Decimal("1123509.6")},
    {"column": 30, "name": "stock_delta", "sum": Decimal("-10269")},
]


@pytest.fixture
def api(settings, services) -> str:
    url = services.backend()
    services.executor()
    services.executor()
    return url


def test_the_sample_file_sums_exactly(settings, api):
    shutil.copy(ROOT / "sample.csv", settings.data_dir / "sample.csv")
    done = finished(api, submit(api, local("sample.csv")))
    assert done["status"] == "done", done["error"]
    assert done["result"] == {"rows": 500, "columns": SAMPLE_SUMS}
    assert done["created_at"] <= done["started_at"] <= done["finished_at"]


@pytest.mark.slow
def test_a_100000_row_file_sums_exactly(settings, api):
    expected = write_numbers(settings.data_dir / "big.csv", rows=100_000, columns=40, seed=3)
    done = finished(api, submit(api, local("big.csv")), timeout=120)
    assert done["status"] == "done", done["error"]
    assert done["result"]["rows"] == 100_000
    assert [c["sum"] for c in done["result"]["columns"]] == expected
    assert [c["name"] for c in done["result"]["columns"]] == ["c10", "c20", "c30", "c40"]


def test_many_tasks_submitted_at_once_all_finish_with_their_own_results(settings, api):
    expected = {}
    for n in range(12):
        expected[f"f{n}.csv"] = write_numbers(settings.data_dir / f"f{n}.csv", rows=200, seed=n)
    with ThreadPoolExecutor(max_workers=6) as pool:
        ids = dict(
            zip(expected, pool.map(lambda path: submit(api, local(path)), expected), strict=True)
        )
    for path, task_id in ids.items():
        done = finished(api, task_id)
        assert done["status"] == "done", done["error"]
        assert [c["sum"] for c in done["result"]["columns"]] == expected[path]
    assert active(api) == {"active": 0, "queued": 0, "running": 0}


def test_active_counts_tasks_while_they_run_and_none_after(settings, services):
    release = threading.Event()
    slow = slow_source(release=release)
    api = services.backend()
    services.executor(**slow.env)
    services.executor(**slow.env)
    ids = [submit(api, slow.source(f"slow{n}.csv")) for n in range(3)]
    # Two executors hold one task each; the third waits in the queue.
    assert wait_for(lambda: active(api) == {"active": 3, "queued": 1, "running": 2})
    release.set()
    for task_id in ids:
        assert finished(api, task_id)["status"] == "done"
    assert active(api) == {"active": 0, "queued": 0, "running": 0}


def test_a_bad_task_fails_without_disturbing_the_next(settings, api):
    (settings.data_dir / "bad.csv").write_text("a,b,c,d,e,f,g,h,i,j\n1,2,3,4,5,6,7,8,9,x\n")
    shutil.copy(ROOT / "sample.csv", settings.data_dir / "sample.csv")
    bad, good = submit(api, local("bad.csv")), submit(api, local("sample.csv"))
    failed = finished(api, bad)
    assert failed["status"] == "failed"
    assert failed["error"] == "line 2, column 10: 'x' is not a number"
    assert finished(api, good)["result"]["columns"] == SAMPLE_SUMS


def test_a_sum_even_task_counts_the_integers_and_sums_the_even_ones(settings, api):
    (settings.data_dir / "numbers.txt").write_text("1 2 3\n4,5,6\n-8 10\n")
    done = finished(api, submit(api, {**local("numbers.txt"), "op": "sum_even"}))
    assert done["status"] == "done", done["error"]
    assert done["op"] == "sum_even"
    assert done["result"] == {"count": 8, "even_count": 5, "sum": 14}


def test_a_sum_even_task_on_a_csv_fails_naming_the_line(settings, api):
    (settings.data_dir / "a.csv").write_text("a,b,c\n1,2,3\n")
    done = finished(api, submit(api, {**local("a.csv"), "op": "sum_even"}))
    assert done["status"] == "failed"
    assert done["error"] == "line 1: 'a' is not an integer"
