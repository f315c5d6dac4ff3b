"""The dashboard's HTML, through Flask's test client (the browser test is in tests/e2e)."""

from __future__ import annotations

import re

import pytest

from backend.dashboard import duration


def create(client, path: str) -> str:
    response = client.post("/tasks", json={"storage": "local", "path": path})
    assert response.status_code == 202
    return response.get_json()["id"]


def test_the_page_lists_the_recent_tasks(client):
    task_id = create(client, "sample.csv")

    page = client.get("/")

    assert page.status_code == 200
    assert page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assert f'data-task="{task_id}"' in html
    assert 'data-status="queued"' in html
    assert '<strong id="active">1</strong>' in html


def test_the_live_part_is_served_alone_for_the_page_to_swap_in(client):
    create(client, "sample.csv")

    live = client.get("/dashboard/live").get_data(as_text=True)

    assert '<strong id="queued">1</strong>' in live
    assert "<html" not in live and "<form" not in live


def test_a_file_name_is_shown_as_text_never_as_markup(client):
    create(client, "<img src=x onerror=alert(1)>.csv")

    html = client.get("/").get_data(as_text=True)

    assert "<img src=x" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;.csv" in html


def links(html: str) -> list[str]:
    return re.findall(r'(?:src|href)="([^"]*)"', html)


def test_the_page_needs_nothing_from_another_host(client):
    html = client.get("/").get_data(as_text=True)

    assert links(html)
    assert all(url.startswith("/") and not url.startswith("//") for url in links(html))


def test_the_script_and_styles_are_served(client):
    html = client.get("/").get_data(as_text=True)

    assets = [url for url in links(html) if url.endswith((".js", ".css"))]

    assert len(assets) == 2
    assert all(client.get(url).status_code == 200 for url in assets)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, ""), (0.041, "0.04 s"), (12.34, "12.3 s"), (125, "2 min 5 s"), (7384, "2 h 3 min")],
)
def test_durations_read_at_a_glance(seconds, text):
    assert duration(seconds) == text


def test_a_done_task_shows_its_first_sums_and_links_to_all_of_them(client, store):
    task_id = create(client, "wide.csv")
    columns = [{"column": 10 * n, "name": None, "sum": 7000 + n} for n in range(1, 2001)]
    store.claim(task_id, "test", 1, 30)
    assert store.complete(task_id, {"rows": 1, "columns": columns}, holder="test")
    html = client.get("/dashboard/live").get_data(as_text=True)
    assert "2000 columns" in html
    assert "7010" in html and "7011" not in html  # the first ten only
    assert f'<a href="/tasks/{task_id}">all 2000</a>' in html
    assert len(html) < 20_000
