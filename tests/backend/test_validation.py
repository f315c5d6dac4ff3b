"""The fast check of requests (jsonschema-rs validators compiled from swagger.yaml) never
accepts what openapi-core refuses: it only spares openapi-core the requests that are valid."""

from __future__ import annotations

import json
from urllib.parse import urlencode

import pytest
from flask import Flask, request
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backend import validation

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=6,
)
names = st.sampled_from(
    [
        "storage",
        "path",
        "bucket",
        "key",
        "header",
        "delimiter",
        "priority",
        "callback_url",
        "version",
        "extra",
    ]
)
values = st.one_of(
    json_values,
    st.sampled_from(
        [
            "local",
            "s3",
            "a.csv",
            "../a.csv",
            "/etc/passwd",
            "b",
            ",",
            ";;",
            "high",
            "low",
            "http://example.com/hook",
            "",
            "bucket.name",
            "k" * 2000,
        ]
    ),
)
bodies = st.one_of(json_values, st.dictionaries(names, values, max_size=6))
queries = st.dictionaries(
    st.sampled_from(
        ["wait", "status", "limit", "cursor", "header", "delimiter", "priority", "client", "wiat"]
    ),
    st.sampled_from(
        [
            "",
            "0",
            "30",
            "-1",
            "1.5",
            "1e1",
            "nan",
            "inf",
            "x",
            "true",
            "false",
            "done",
            "queued",
            "101",
            "5",
            " 5",
            "0x10",
            "12345678901234567890",
        ]
    ),
    max_size=3,
)


def slow_accepts(flask_request) -> bool:
    """openapi-core's verdict, with the unknown-parameter rule, as check() applies them."""
    wrapped = validation._OpenAPIRequest(flask_request)
    errors = list(validation._REQUEST.iter_errors(wrapped))
    unknown = validation.unknown_parameters(
        wrapped.path_pattern, wrapped.method, flask_request.args
    )
    return not errors and not unknown


@pytest.fixture(scope="module")
def routes() -> Flask:
    """The API's routes, with views that do nothing: only the request's shape matters."""
    app = Flask(__name__)
    for rule in ("/tasks", "/tasks/<task_id>", "/tasks/active", "/clients/<name>"):
        app.add_url_rule(rule, rule, lambda **_: "", methods=["GET", "POST", "DELETE"])
    return app


def verdicts(app: Flask, method: str, path: str, query: dict, body) -> tuple[bool, bool]:
    data = None if body is None else json.dumps(body)
    with app.test_request_context(
        f"{path}?{urlencode(query)}",
        method=method,
        data=data,
        content_type="application/json" if data is not None else None,
    ):
        operation = validation.OPERATIONS[
            validation._OpenAPIRequest(request).path_pattern, method.lower()
        ]
        try:
            slow = slow_accepts(request)
        except (TypeError, RecursionError):  # check() turns these into messages itself
            slow = False
        return operation.accepts(request), slow


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=bodies, query=queries)
def test_a_task_body_the_fast_check_accepts_openapi_core_accepts_too(routes, body, query):
    fast, slow = verdicts(routes, "POST", "/tasks", query, body)
    assert slow or not fast


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(query=queries, path=st.sampled_from(["/tasks", "/tasks/" + "a" * 32, "/tasks/active"]))
def test_a_query_the_fast_check_accepts_openapi_core_accepts_too(routes, query, path):
    fast, slow = verdicts(routes, "GET", path, query, None)
    assert slow or not fast


@pytest.mark.parametrize(
    ("method", "path", "query", "body"),
    [
        ("GET", "/tasks/" + "a" * 32, {}, None),
        ("GET", "/tasks/" + "a" * 32, {"wait": "30"}, None),
        ("GET", "/tasks", {"status": "done", "limit": "5"}, None),
        ("GET", "/tasks/active", {}, None),
        ("POST", "/tasks", {}, {"storage": "local", "path": "a.csv"}),
        ("POST", "/tasks", {}, {"storage": "s3", "bucket": "data", "key": "a.csv"}),
    ],
)
def test_the_hot_requests_take_the_fast_check(routes, method, path, query, body):
    """Else the fast check would hold trivially, and spare openapi-core nothing."""
    assert verdicts(routes, method, path, query, body) == (True, True)
