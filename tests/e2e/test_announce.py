"""`make run` says where everything is, once the backend answers."""

from __future__ import annotations

import dataclasses
import importlib.util
from urllib.parse import urlsplit

import pytest

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

    load_services_script().announce(dataclasses.replace(settings, port=port))

    printed = capsys.readouterr().out
    assert "Colsum is up." in printed
    for where in ("/\n", "/tasks", "/docs/", "/executors", "/metrics"):
        assert f"{api}{where}" in printed, where
    assert str(settings.data_dir) in printed
