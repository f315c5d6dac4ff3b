"""`make run` says where everything is, once the backend answers."""

from __future__ import annotations

import dataclasses
import importlib.util
import subprocess
import threading
from urllib.parse import urlsplit

import pytest

from colsum.settings import Settings
from tests.conftest import ROOT

pytestmark = pytest.mark.e2e


def load_services_script():
    spec = importlib.util.spec_from_file_location("services_script", ROOT / "scripts/services.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_it_names_the_dashboard_api_docs_metrics_and_data(settings, services, capsys):
    api = services.backend()
    port = urlsplit(api).port

    load_services_script().announce(dataclasses.replace(settings, port=port), threading.Event())

    printed = capsys.readouterr().out
    assert "Colsum is up." in printed
    for where in ("/\n", "/tasks", "/docs/", "/executors", "/metrics"):
        assert f"{api}{where}" in printed, where
    assert str(settings.data_dir) in printed


def test_it_says_nothing_once_the_command_it_ran_has_stopped(settings, services, capsys):
    """What answers then is some other backend: this run's own failed."""
    port = urlsplit(services.backend()).port
    stopped = threading.Event()
    stopped.set()

    load_services_script().announce(dataclasses.replace(settings, port=port), stopped)

    assert "Colsum is up" not in capsys.readouterr().out


def test_its_curl_example_pastes_as_one_command(settings, services, capsys):
    api = services.backend()
    port = urlsplit(api).port
    load_services_script().announce(dataclasses.replace(settings, port=port), threading.Event())
    lines = capsys.readouterr().out.splitlines()
    start = next(n for n, line in enumerate(lines) if line.strip().startswith("curl "))
    pasted = "\n".join(lines[start : start + 2]).replace("curl ", "printf '%s|' ", 1)
    words = subprocess.run(["bash", "-c", pasted], capture_output=True, text=True, check=True)
    assert words.stdout.split("|")[:4] == ["-X", "POST", f"{api}/tasks", "-H"]
    assert '-d|{"storage":"local","path":"sample.csv"}|' in words.stdout


def test_in_open_mode_it_says_auth_is_off_and_how_to_turn_it_on(settings):
    printed = load_services_script().tokens("http://127.0.0.1:8000", settings)
    assert "auth       off" in printed and "ADMIN_TOKEN=" in printed


def test_with_admin_token_it_shows_how_to_get_a_token_without_printing_the_admin_token():
    settings = Settings(admin_token="the-secret-admin-token")
    printed = load_services_script().tokens("http://127.0.0.1:8000", settings)
    assert "curl -X POST http://127.0.0.1:8000/clients" in printed
    assert "colsum client create acme" in printed
    assert "the-secret-admin-token" not in printed


def test_with_admin_token_its_curl_example_sends_a_token(settings, services, capsys):
    port = urlsplit(services.backend()).port  # it only waits for /readyz, open either way
    with_auth = dataclasses.replace(settings, port=port, admin_token="the-secret-admin-token")
    load_services_script().announce(with_auth, threading.Event())
    lines = capsys.readouterr().out.splitlines()
    example = next(line for line in lines if line.strip().startswith("curl -X POST"))
    assert '-H "Authorization: Bearer $TOKEN"' in example
