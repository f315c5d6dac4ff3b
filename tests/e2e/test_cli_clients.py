"""`colsum client ...` and `COLSUM_TOKEN`, against a backend with ADMIN_TOKEN set."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest
from werkzeug.serving import make_server

from backend import create_app
from tests.conftest import ROOT, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.settings(admin_token="the-admin-token")]


@pytest.fixture
def api(settings) -> Iterator[str]:
    app = create_app(settings)
    port = free_port()
    server = make_server("127.0.0.1", port, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{port}"
    server.shutdown()


def colsum(api: str, *args: str, token: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "COLSUM_TOKEN"}
    if token is not None:
        env["COLSUM_TOKEN"] = token
    command = [sys.executable, "-m", "colsum.cli", "--url", api, *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=ROOT, env=env)


def test_client_create_prints_the_token_which_then_works_as_colsum_token(api):
    run = colsum(api, "client", "create", "acme", "--weight", "3", token="the-admin-token")
    assert run.returncode == 0, run.stderr
    token = run.stdout.strip()
    assert token.startswith("cs_")
    assert "shown this once" in run.stderr
    active = colsum(api, "active", token=token)
    assert active.returncode == 0, active.stderr
    assert active.stdout.strip() == "active 0  queued 0  running 0"


def test_client_list_shows_weights_and_counts(api):
    colsum(api, "client", "create", "acme", "--weight", "3", token="the-admin-token")
    run = colsum(api, "client", "list", "--token", "the-admin-token")
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "acme  weight 3  1 token(s)  active 0  queued 0  running 0"


def test_client_revoke_then_token_lets_it_back_in_with_a_new_token(api):
    first = colsum(api, "client", "create", "acme", token="the-admin-token").stdout.strip()
    revoked = colsum(api, "client", "revoke", "acme", token="the-admin-token")
    assert revoked.stdout.strip() == "acme: 1 token(s) revoked"
    refused = colsum(api, "list", token=first)
    assert refused.returncode == 2
    assert "401" in refused.stderr
    second = colsum(api, "client", "token", "acme", token="the-admin-token").stdout.strip()
    assert colsum(api, "list", token=second).returncode == 0


def test_without_a_token_the_cli_is_refused_with_the_reason(api):
    run = colsum(api, "active")
    assert run.returncode == 2
    assert "401: send your token" in run.stderr


def test_a_client_token_cannot_manage_clients(api):
    token = colsum(api, "client", "create", "acme", token="the-admin-token").stdout.strip()
    run = colsum(api, "client", "create", "evil", token=token)
    assert run.returncode == 2
    assert "403: only the admin token may do this" in run.stderr
