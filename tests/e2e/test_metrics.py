"""Prometheus metrics of the backend and of an executor move when a task runs."""

from __future__ import annotations

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import HEADER, ROW, wait_for
from tests.e2e.client import finished, local, submit

pytestmark = pytest.mark.e2e


def scrape(url: str) -> dict[tuple[str, tuple], float]:
    text = requests.get(url, timeout=10).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_backend_and_executor_metrics_count_a_task(settings, services):
    (settings.data_dir / "a.csv").write_text(HEADER + ROW)
    api = services.backend()
    services.executor()
    executors = wait_for(lambda: requests.get(f"{api}/executors", timeout=10).json()["executors"])
    executor_metrics = f"http://127.0.0.1:{executors[0]['metrics_port']}/metrics"
    done = ("colsum_executor_tasks_total", (("outcome", "done"),))
    before = scrape(executor_metrics).get(done, 0)

    assert finished(api, submit(api, local("a.csv")))["status"] == "done"

    backend = scrape(f"{api}/metrics")
    assert backend[("colsum_tasks_created_total", ())] >= 1
    posted = (("method", "POST"), ("route", "/tasks"), ("status", "202"))
    assert backend[("colsum_http_requests_total", posted)] >= 1
    assert backend[("colsum_tasks_active", ())] == 0
    assert ("colsum_queue_depth", ()) in backend
    after = scrape(executor_metrics)
    assert after[done] == before + 1
    assert after[("colsum_executor_rows_total", ())] >= 1
    assert after[("colsum_executor_task_bytes_count", ())] >= 1


def test_the_backend_removes_its_metrics_folder_when_it_stops(services, tmp_path):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    services.backend(TMPDIR=str(scratch))
    assert [p.name[:15] for p in scratch.iterdir()] == ["colsum-metrics-"]

    backend = services.started[0]
    # A SIGTERM that reaches a gunicorn worker still booting (forked, its handlers not yet
    # installed) is lost: the master then waits out its graceful timeout (30 s) for it.
    assert backend.stop(timeout=45) == 0

    assert list(scratch.iterdir()) == []
    assert "Traceback" not in backend.log  # no worker lost its folder while it ran
