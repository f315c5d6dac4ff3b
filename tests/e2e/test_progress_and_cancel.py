"""Progress while a task runs, and cancelling it, through real executor processes."""

from __future__ import annotations

import threading
import time

import pytest
import requests

from tests.conftest import slow_source, wait_for
from tests.e2e.client import finished, local, submit, task

pytestmark = pytest.mark.e2e

# An exponent, which only the exact path reads (about 100 MB/s): progress has time to show.
SLOW_ROW = '"note, quoted",2,3,4,5,6,7,8,9,1e1\n'


def test_progress_rises_monotonically_to_1_on_a_large_file(settings, services):
    path = settings.data_dir / "large.csv"
    path.write_text("a,b,c,d,e,f,g,h,i,j\n" + SLOW_ROW * 2_500_000)  # 85 MB
    api = services.backend()
    services.executor()
    task_id = submit(api, local("large.csv"))
    seen = []
    while (record := task(api, task_id))["status"] not in ("done", "failed"):
        seen.append(record["progress"])
        time.sleep(0.05)
    assert record["status"] == "done"
    assert record["progress"] == 1
    assert seen == sorted(seen)
    assert any(0 < p < 1 for p in seen), seen
    assert record["rows_read"] == 2_500_000
    assert record["bytes_total"] == record["bytes_read"] == path.stat().st_size
    assert record["mb_per_second"] > 0


def test_cancelling_a_running_task_stops_it_and_the_executor_takes_the_next(settings, services):
    slow = slow_source(release=threading.Event())  # never set: the read hangs
    (settings.data_dir / "a.csv").write_text("a,b,c,d,e,f,g,h,i,j\n1,2,3,4,5,6,7,8,9,10\n")
    api = services.backend()
    services.executor(**slow.env)
    running = submit(api, slow.source("hung.csv"))
    wait_for(lambda: task(api, running)["status"] == "running")
    started = time.monotonic()
    assert requests.delete(f"{api}/tasks/{running}", timeout=10).json()["status"] == "cancelled"
    following = submit(api, local("a.csv"))
    assert finished(api, following)["status"] == "done"
    assert time.monotonic() - started < 5
    assert task(api, running)["status"] == "cancelled"


def upload(api: str, data, query: str = "") -> requests.Response:
    headers = {"Content-Type": "text/csv"}
    return requests.post(f"{api}/tasks{query}", data=data, headers=headers, timeout=120)


def test_an_uploaded_csv_is_stored_under_data_dir_and_summed(settings, services):
    api = services.backend()
    services.executor()
    response = upload(api, b"a;b;c;d;e;f;g;h;i;j\n1;2;3;4;5;6;7;8;9;10.5\n", "?delimiter=;")
    assert response.status_code == 202
    created = response.json()
    assert created["source"] == {
        "storage": "local",
        "path": f"uploads/anonymous/{created['id']}.csv",
    }
    done = finished(api, created["id"])
    assert done["result"]["columns"] == [{"column": 10, "name": "j", "sum": 10.5}]


@pytest.mark.slow
def test_an_upload_larger_than_the_backends_memory_limit_streams_through(settings, services):
    row = b"1,2,3,4,5,6,7,8,9,10\n"
    rows = 20_000_000  # 420 MB, the backend may hold 300 MB of data
    api = services.backend(limit_data=300 << 20)
    services.executor()

    def body():
        yield b"a,b,c,d,e,f,g,h,i,j\n"
        block = row * 100_000
        for _ in range(rows // 100_000):
            yield block

    response = upload(api, body())
    assert response.status_code == 202, response.text
    done = finished(api, response.json()["id"], timeout=120)
    assert done["status"] == "done", done["error"]
    assert done["result"]["rows"] == rows
    assert done["result"]["columns"][0]["sum"] == 10 * rows
