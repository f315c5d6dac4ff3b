"""Schemathesis against the served spec: for generated valid and invalid requests, no 5xx,
and every response conforms to the spec (status, headers, body)."""

from __future__ import annotations

import dataclasses
import uuid

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from backend import create_app
from colsum.settings import Settings
from tests.conftest import remove_test_data

pytestmark = pytest.mark.slow

# Schemathesis reads the schema when the module loads: the app is built here, under names
# of its own, and the fixture below checks the services and removes what the run made.
NAME = f"colsum-test-{uuid.uuid4().hex[:12]}"
SETTINGS = dataclasses.replace(
    Settings.from_env(), redis_prefix=f"{NAME}:", amqp_exchange=NAME, amqp_queue=NAME
)
schema = schemathesis.openapi.from_wsgi("/openapi.yaml", create_app(SETTINGS))


@pytest.fixture(scope="module", autouse=True)
def services(redis_url, amqp_url):
    yield
    remove_test_data(redis_url, amqp_url, NAME)


@schema.parametrize()
@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
def test_the_api_keeps_its_spec(case):
    case.call_and_validate()
