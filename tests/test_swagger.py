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
from colsum import jsoncodec
from colsum.settings import Settings
from colsum.store import Page
from colsum.task import LocalSource, S3Source, Task, TaskStatus, now
from executor.summing import sum_columns

ROOT = Path(__file__).resolve().parent.parent
SPEC_URI = "urn:colsum:swagger"
HTTP_METHODS = {"get", "put", "post", "delete", "patch", "options", "head", "trace"}
TASK_EXAMPLES = ["QueuedTask", "RunningTask", "DoneTask", "FailedTask", "CancelledTask"]
# Swagger UI (flask-swagger-ui) serves the docs at these paths; they are not the API.
SWAGGER_UI = "/docs"


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


def is_swagger_ui(path: str) -> bool:
    return path == SWAGGER_UI or path.startswith(f"{SWAGGER_UI}/")


def test_spec_documents_exactly_the_routes_the_app_serves(spec):
    app = create_app(Settings())
    rules = [rule for rule in app.url_map.iter_rules() if rule.endpoint != "static"]
    assert any(is_swagger_ui(rule.rule) for rule in rules), "Swagger UI is not served"
    served = {
        (shape(rule.rule), method.lower())
        for rule in rules
        if not is_swagger_ui(rule.rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    documented = {
        (shape(path), method)
        for path, item in spec["paths"].items()
        for method in item.keys() & HTTP_METHODS
    }
    assert ("/openapi.yaml", "get") in served
    assert documented == served


def test_openapi_yaml_serves_this_document():
    response = create_app(Settings()).test_client().get("/openapi.yaml")
    assert response.status_code == 200
    assert response.mimetype == "application/yaml"
    assert response.get_data() == (ROOT / "swagger.yaml").read_bytes()


@pytest.mark.parametrize("name", TASK_EXAMPLES)
def test_task_example_matches_the_task_schema(spec, name):
    schema(spec, "Task").validate(spec["components"]["examples"][name]["value"])


@pytest.mark.parametrize("name", TASK_EXAMPLES)
def test_task_example_is_a_record_the_code_would_write(spec, name):
    """The derived fields (progress, timings, speed) are what Task computes from the rest."""
    example = spec["components"]["examples"][name]["value"]
    derived = {"progress", "queued_at", "wait_seconds", "run_seconds", "lead_seconds"}
    derived |= {"mb_per_second", "webhook"}  # webhook: stored flat, as webhook_*
    stored = {k: v for k, v in example.items() if k not in derived}
    task = Task(
        **{
            **stored,
            "status": TaskStatus(example["status"]),
            "source": (LocalSource if example["source"]["storage"] == "local" else S3Source)(
                **example["source"]
            ),
        }
    )
    assert task.to_json() == example


def test_task_list_example_matches_the_task_list_schema(spec):
    schema(spec, "TaskList").validate(spec["components"]["examples"]["TaskPage"]["value"])


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
    if status is TaskStatus.CANCELLED:
        # Cancelled while running: it keeps the progress last recorded. (One cancelled
        # while queued has no started_at: test_a_task_cancelled_while_queued_...)
        return replace(
            running,
            status=status,
            finished_at=now(),
            executor="worker-1:4242",
            attempt=1,
            attempts=1,
            resumes=0,
            bytes_read=4096,
            bytes_total=95864,
            rows_read=20,
        )
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


def test_a_split_task_record_matches_the_task_schema(spec):
    running = task_in(TaskStatus.RUNNING)
    split = replace(running, parts_total=4, parts_done=1, parts_failed=0, parts_executors="a:1 b:2")
    body = split.to_json()
    assert body["parts"] == {"total": 4, "done": 1, "failed": 0, "executors": ["a:1", "b:2"]}
    schema(spec, "Task").validate(body)
    assert "parts" not in running.to_json()  # an unsplit task's JSON is as it was


def test_a_task_cancelled_while_queued_matches_the_task_schema(spec):
    cancelled = replace(task_in(TaskStatus.QUEUED), status=TaskStatus.CANCELLED, finished_at=now())
    schema(spec, "Task").validate(cancelled.to_json())


class PagingStore:
    """Stands in for TaskStore: GET /tasks shapes whatever page the store returns."""

    def __init__(self, page: Page) -> None:
        self.result = page

    def page(
        self, status: TaskStatus | None, limit: int, cursor: str | None, client: str | None = None
    ) -> Page:
        return self.result


@pytest.mark.parametrize(
    "page",
    [
        Page([task_in(TaskStatus.DONE)], None),
        Page([task_in(status) for status in reversed(TaskStatus)], "7"),
        Page([], None),
    ],
    ids=["last", "more", "empty"],
)
def test_task_list_schema_matches_a_real_page(spec, page):
    app = create_app(Settings())
    app.extensions["colsum"].store = PagingStore(page)
    response = app.test_client().get("/tasks?limit=5")
    assert response.status_code == 200
    body = response.get_json()
    # Read back as the API's exact JSON codec reads it (numbers as Decimal).
    expected = {"tasks": [task.to_json() for task in page.tasks], "next_cursor": page.next_cursor}
    assert body == jsoncodec.loads(jsoncodec.dumps(expected))
    schema(spec, "TaskList").validate(body)


def test_task_schema_rejects_a_done_task_without_result(spec):
    record = replace(task_in(TaskStatus.DONE), result=None).to_json()
    assert not schema(spec, "Task").is_valid(record)


@pytest.mark.parametrize("status", [TaskStatus.DONE, TaskStatus.FAILED])
def test_task_schema_rejects_a_cancelled_task_with_an_outcome(spec, status):
    record = {**task_in(status).to_json(), "status": TaskStatus.CANCELLED.value}
    assert not schema(spec, "Task").is_valid(record)


@pytest.mark.parametrize("name", ["local", "s3"])
def test_request_example_matches_the_request_schema(spec, name):
    content = spec["paths"]["/tasks"]["post"]["requestBody"]["content"]["application/json"]
    schema(spec, "TaskRequest").validate(content["examples"][name]["value"])
