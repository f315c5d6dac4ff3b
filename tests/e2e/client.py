"""A tiny client for the API, as a user's script would call it."""

from __future__ import annotations

import json
from decimal import Decimal

import requests

from tests.conftest import wait_for


def submit(api: str, source: dict) -> str:
    response = requests.post(f"{api}/tasks", json=source, timeout=10)
    assert response.status_code == 202, response.text
    return response.json()["id"]


def local(path: str) -> dict:
    return {"storage": "local", "path": path}


def task(api: str, task_id: str) -> dict:
    response = requests.get(f"{api}/tasks/{task_id}", timeout=10)
    assert response.status_code == 200
    # Parsed as Decimal, as the API promises a client can, to compare every digit.
    return json.loads(response.text, parse_float=Decimal)


def finished(api: str, task_id: str, timeout: float = 30) -> dict:
    return wait_for(
        lambda: (t := task(api, task_id))["status"] in ("done", "failed") and t, timeout
    )


def active(api: str) -> dict:
    return requests.get(f"{api}/tasks/active", timeout=10).json()
