"""swagger.yaml is a valid OpenAPI 3.1 document that describes the API the backend serves."""

from __future__ import annotations

import re
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator
from openapi_spec_validator import OpenAPIV31SpecValidator, validate
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from backend import create_app
from colsum.settings import Settings
from colsum.task import LocalSource, S3Source, Task, TaskStatus, now
from executor.summing import sum_columns

ROOT = Path(__file__).resolve().parent.parent
SPEC_URI = "urn:colsum:swagger"
HTTP_METHODS = {"get", "put", "post", "delete", "patch", "options", "head", "trace"}
TASK_EXAMPLES = ["QueuedTask", "RunningTask", "DoneTask", "FailedTask"]


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "swagger.yaml").read_text())


def schema(spec: dict[str, Any], name: str) -> Draft202012Validator:
    """A validator for components/schemas/<name>, resolving $refs within the spec."""
    registry = Registry().with_resource(SPEC_URI, DRAFT202012.create_resource(spec))
    return Draft202012Validator(
        {"$ref": f"{SPEC_URI}#/components/schemas/{name}"},
        registry=registry,
        format_checker=Draft202012Validator.FORMAT_CHECKER,
    )


def shape(path: str) -> str:
    """/tasks/{id} and /tasks/<task_id> both become /tasks/{}: names may differ."""
    return re.sub(r"\{[^}]*\}|<[^>]*>", "{}", path)


def sample_result() -> dict[str, Any]:
    with (ROOT / "sample.csv").open("rb") as stream:
        return sum_columns(stream).to_result()


def test_spec_is_valid_openapi_3_1(spec):
    assert spec["openapi"].startswith("3.1.")
    validate(spec, cls=OpenAPIV31SpecValidator)


def test_spec_documents_exactly_the_routes_the_app_serves(spec):
    app = create_app(Settings())
    served = {
        (shape(rule.rule), method.lower())
        for rule in app.url_map.iter_rules()
        if rule.endpoint != "static"
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    documented = {
        (shape(path), method)
        for path, item in spec["paths"].items()
        for method in item.keys() & HTTP_METHODS
    }
    assert documented == served


@pytest.mark.parametrize("name", TASK_EXAMPLES)
def test_task_example_matches_the_task_schema(spec, name):
    schema(spec, "Task").validate(spec["components"]["examples"][name]["value"])


def test_done_example_shows_the_sums_of_sample_csv(spec):
    example = spec["components"]["examples"]["DoneTask"]["value"]["result"]
    # YAML reads the sums as floats; their shortest repr is the decimal written in the spec.
    for column in example["columns"]:
        column["sum"] = Decimal(repr(column["sum"]))
    assert example == sample_result()


def task_in(status: TaskStatus) -> Task:
    queued = Task(source=LocalSource(path="sample.csv"))
    running = replace(queued, status=TaskStatus.RUNNING, started_at=now())
    if status is TaskStatus.QUEUED:
        return queued
    if status is TaskStatus.RUNNING:
        return running
    if status is TaskStatus.DONE:
        return replace(running, status=status, finished_at=now(), result=sample_result())
    broken = Task(source=S3Source(bucket="colsum-data", key="broken.csv"), header=True)
    return replace(
        broken,
        status=status,
        started_at=now(),
        finished_at=now(),
        error="line 7, column 20: 'abc' is not a number",
    )


@pytest.mark.parametrize("status", list(TaskStatus))
def test_real_task_record_matches_the_task_schema(spec, status):
    schema(spec, "Task").validate(task_in(status).to_json())


def test_task_schema_rejects_a_done_task_without_result(spec):
    record = replace(task_in(TaskStatus.DONE), result=None).to_json()
    assert not schema(spec, "Task").is_valid(record)


@pytest.mark.parametrize("name", ["local", "s3"])
def test_request_example_matches_the_request_schema(spec, name):
    content = spec["paths"]["/tasks"]["post"]["requestBody"]["content"]["application/json"]
    schema(spec, "TaskRequest").validate(content["examples"][name]["value"])
