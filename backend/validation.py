"""Requests are checked against swagger.yaml by openapi-core before a view acts on them:
the spec is the one source of truth for what a request may hold, so the two cannot drift.
What a schema cannot say (a path that leads out of DATA_DIR) the task model checks.

OpenAPI cannot forbid query parameters it does not list, so that is checked here, against
the parameters the spec lists for the operation: a misspelt `?wiat=30` or `?delimter=;`
is refused, not silently ignored.

openapi-core takes 1.5-4.6 ms a request, several times what the rest of a request costs.
So the same schemas are also compiled once, at start-up, into jsonschema-rs validators
(`_Operation`, a few microseconds a request: bench/validation.py): a request they accept is
valid, and only one they refuse (or one they are unsure of: a repeated or empty parameter,
a number written oddly) goes to openapi-core, which says field by field what is wrong.
Every message still comes from one place, and the spec stays the one source.
"""

from __future__ import annotations

import functools
import re
import reprlib
import sys
from pathlib import Path

import jsonschema_rs
import yaml
from flask import Request
from openapi_core import OpenAPI
from openapi_core.contrib.flask import FlaskOpenAPIRequest
from openapi_core.deserializing.media_types.exceptions import MediaTypeDeserializeError
from openapi_core.deserializing.styles.exceptions import EmptyQueryParameterValue
from openapi_core.validation.request.validators import (
    V31RequestParametersValidator,
    V31RequestValidator,
)

SPEC = Path(__file__).resolve().parent.parent / "swagger.yaml"
HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
LONGEST = 80  # characters of a client's value that an error message echoes


class InvalidRequest(Exception):
    """The request does not fit the spec; the message says how, field by field."""


def clip(value: object) -> str:
    """A value as a message quotes it: its repr, cut to about LONGEST characters, so that
    a 64 KiB field does not come back as a 64 KiB error."""
    if isinstance(value, str):
        if len(value) <= LONGEST:
            return repr(value)
        text = repr(value[:LONGEST])
        return f"{text[:-1]}...{text[-1]} ({len(value)} characters)"
    text = _REPR.repr(value)
    return text if len(text) <= LONGEST else f"{text[:LONGEST]}..."


_REPR = reprlib.Repr()
_REPR.maxlevel = 3
_REPR.maxother = LONGEST


class _OpenAPIRequest(FlaskOpenAPIRequest):
    @property
    def method(self) -> str:
        return _route(self.request)[1]

    @property
    def content_type(self) -> str:
        # Any application/*+json body is JSON to the backend (request.is_json); the spec
        # lists application/json.
        if self.request.is_json and self.request.mimetype != "application/json":
            return "application/json"
        return super().content_type

    @property
    def path_pattern(self) -> str:
        return _route(self.request)[0]


def _route(request: Request) -> tuple[str, str]:
    """(path as the spec writes it, method): which operation a request is. Flask answers
    HEAD with the GET view; the spec, like most, documents the GET."""
    method = "get" if request.method == "HEAD" else request.method.lower()
    rule = request.url_rule.rule if request.url_rule else request.path
    return _template(rule), method


@functools.lru_cache(maxsize=256)
def _template(rule: str) -> str:
    return template(rule)


def template(rule: str) -> str:
    """A Flask rule as the spec writes its path: /tasks/<task_id:task_id> -> /tasks/{task_id}."""
    return re.sub(r"<(?:[^:>]+:)?(\w+)>", r"{\1}", rule)


def _load(document: dict) -> tuple[OpenAPI, dict[tuple[str, str], tuple[str, ...]]]:
    query: dict[tuple[str, str], tuple[str, ...]] = {}
    for path, item in document["paths"].items():
        shared = item.get("parameters", [])
        for method in HTTP_METHODS:
            if method in item:
                listed = [*shared, *item[method].get("parameters", [])]
                query[path, method] = tuple(p["name"] for p in listed if p["in"] == "query")
    return OpenAPI.from_dict(document), query


INTEGER = re.compile(r"-?[0-9]+")
NUMBER = re.compile(r"-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?")
UNSURE = object()  # a value the fast check leaves to openapi-core


class _Operation:
    """What one operation's requests may carry, as validators compiled from the spec."""

    def __init__(self, parameters: list[dict], body: dict | None, components: dict) -> None:
        def compiled(schema: dict) -> jsonschema_rs.Validator:
            # The spec's $refs point into its components: give the validator them as root.
            return jsonschema_rs.validator_for({**schema, "components": components})

        self.query = {
            p["name"]: (_resolved(p["schema"], components), compiled(p["schema"]))
            for p in parameters
            if p["in"] == "query"
        }
        self.path = {p["name"]: compiled(p["schema"]) for p in parameters if p["in"] == "path"}
        self.required = [p["name"] for p in parameters if p["in"] == "query" and p.get("required")]
        # Header and cookie parameters are not checked here: such an operation goes slow.
        self.simple = all(p["in"] in ("query", "path") for p in parameters)
        self.body = compiled(body) if body is not None else None

    def accepts(self, request: Request) -> bool:
        """True only if openapi-core would find nothing wrong either."""
        if not self.simple or any(name not in request.args for name in self.required):
            return False
        for name, values in request.args.lists():
            if name not in self.query or len(values) != 1:
                return False
            schema, validator = self.query[name]
            value = _value(values[0], schema)
            if value is UNSURE or not validator.is_valid(value):
                return False
        for name, validator in self.path.items():
            if not validator.is_valid((request.view_args or {}).get(name)):
                return False
        if request.mimetype == "text/csv":
            return True  # the body is an upload, checked as it streams
        if self.body is None:
            return not request.content_length and not request.headers.get("Transfer-Encoding")
        body = request.get_json(silent=True)
        return body is not None and self.body.is_valid(body)


def _resolved(schema: dict, components: dict) -> dict:
    """The schema a local $ref (#/components/schemas/Name) points to, for its type."""
    while "$ref" in schema:
        *_, kind, name = schema["$ref"].split("/")
        schema = components[kind][name]
    return schema


def _value(raw: str, schema: dict) -> object:
    """A query parameter's text as openapi-core reads it, when the reading is plain."""
    kind = schema.get("type")
    if not raw:
        return UNSURE  # openapi-core has words for an empty value
    if kind == "string":
        return raw
    if kind == "integer":
        return int(raw) if INTEGER.fullmatch(raw) else UNSURE
    if kind == "number":
        return float(raw) if NUMBER.fullmatch(raw) else UNSURE
    if kind == "boolean":
        return {"true": True, "false": False}.get(raw, UNSURE)
    return UNSURE


def _operations(document: dict) -> dict[tuple[str, str], _Operation]:
    operations = {}
    for path, item in document["paths"].items():
        for method in HTTP_METHODS:
            if method not in item:
                continue
            operation = item[method]
            body = operation.get("requestBody", {}).get("content", {}).get("application/json")
            operations[path, method] = _Operation(
                [*item.get("parameters", []), *operation.get("parameters", [])],
                body["schema"] if body else None,
                document.get("components", {}),
            )
    return operations


class _CredentialsCheckedElsewhere(V31RequestValidator):
    """Parameters and body against the spec, but not the credentials its `security`
    names: backend/auth.py checks those before any view (and in open mode wants none)."""

    def _get_security(self, parameters, operation):
        return None


DOCUMENT = yaml.safe_load(SPEC.read_text())
API, QUERY_PARAMETERS = _load(DOCUMENT)
OPERATIONS = _operations(DOCUMENT)
_PARAMETERS = V31RequestParametersValidator(API.spec)
_REQUEST = _CredentialsCheckedElsewhere(API.spec)


def check(request: Request) -> None:
    """Raise InvalidRequest unless the request's parameters and body fit the spec."""
    if (operation := OPERATIONS.get(_route(request))) is not None and operation.accepts(request):
        return
    wrapped = _OpenAPIRequest(request)
    if request.mimetype == "text/csv":
        # An upload's body is streamed to storage, never read here: parameters only.
        errors = list(_PARAMETERS.iter_errors(wrapped))
    else:
        try:
            errors = list(_REQUEST.iter_errors(wrapped))
        except TypeError:
            # openapi-schema-validator's discriminator code fails on a non-string tag
            # (`"storage": []`) instead of reporting it.
            raise InvalidRequest("'storage' must be 'local' or 's3'") from None
        except RecursionError:
            raise InvalidRequest(NESTED_TOO_DEEPLY) from None
    problems = [problem for error in errors for problem in describe(error)]
    problems += unknown_parameters(wrapped.path_pattern, wrapped.method, request.args)
    if problems:
        raise InvalidRequest("; ".join(problems))


def body_fits(path: str, method: str, body: object) -> bool:
    """True only if `check` would accept a request of the operation with this JSON body
    and no query: the fast lane's check (backend/fastlane.py). False leaves the request
    to `check`, whose message says what is wrong."""
    operation = OPERATIONS.get((path, method))
    if operation is None or operation.body is None or operation.required:
        return False
    return operation.simple and not operation.path and operation.body.is_valid(body)


NESTED_TOO_DEEPLY = "the request body is nested too deeply: a task is one flat JSON object"


def unknown_parameters(path: str, method: str, names) -> list[str]:
    """A sentence for the query parameters the spec does not list for this operation."""
    known = QUERY_PARAMETERS.get((path, method))
    if known is None:
        return []
    unknown = [name for name in names if name not in known]
    if not unknown:
        return []
    listed = ", ".join(clip(name) for name in unknown)
    takes = ", ".join(known) if known else "none"
    noun = "parameter" if len(unknown) == 1 else "parameters"
    return [f"unknown query {noun} {listed}: {method.upper()} {path} takes {takes}"]


def describe(error: Exception) -> list[str]:
    """Sentences a client can act on, naming each field as the client sent it."""
    name = getattr(error, "name", None)  # a parameter's
    cause = error.__cause__
    if isinstance(cause, MediaTypeDeserializeError):
        return [_unreadable(cause)]
    schema_errors = getattr(cause, "schema_errors", None) or []
    if not schema_errors:
        if name and hasattr(cause, "type") and hasattr(cause, "value"):  # a CastError
            kind = {"integer": "an integer", "number": "a number"}.get(cause.type, cause.type)
            return [f"'{name}': {clip(cause.value)} is not {kind}"]
        if name and isinstance(cause, EmptyQueryParameterValue):
            return [f"'{name}' must not be empty"]
        return [f"'{name}' is not valid" if name else str(error)]
    sentences: dict[str, str] = {}  # the first problem of each field is enough
    for schema_error in schema_errors:
        sentence = _sentence(name, schema_error)
        field = name or (str(schema_error.path[-1]) if schema_error.path else "")
        # The body's own problems (a field missing, others unknown) are each worth a word.
        sentences.setdefault(field or sentence, sentence)
    return list(sentences.values())


def _unreadable(error: MediaTypeDeserializeError) -> str:
    """A body our JSON reader took but openapi-core's did not: its message would quote
    the whole body."""
    reason = error.__cause__ or error.__context__
    if isinstance(reason, ValueError) and "integer string conversion" in str(reason):
        most = sys.get_int_max_str_digits()
        return f"a number in the request body is too long: at most {most:,} digits"
    return f"the request body is not valid JSON: {clip(str(reason or error))}"


def _sentence(parameter: str | None, error) -> str:
    # A schema may say in words what its pattern means (x-message in swagger.yaml).
    meaning = error.schema.get("x-message") if isinstance(error.schema, dict) else None
    if error.validator == "pattern" and meaning:
        message = f"must be {meaning}"
    else:
        message = _clipped(error.message, error.instance)
    if parameter is not None:
        return f"'{parameter}': {message}"
    field = error.path[-1] if error.path else None
    if error.validator == "required":
        return error.message.replace(" is a required property", " is required")
    if error.validator == "additionalProperties":
        allowed = error.schema.get("properties", {})
        unexpected = [clip(key) for key in error.instance if key not in allowed]
        return f"unknown field{'s' if len(unexpected) > 1 else ''} {', '.join(unexpected)}"
    if "discriminating property 'storage'" in error.message:
        return "'storage' is required: 'local' or 's3'"
    if "could not be resolved" in error.message:  # an unknown discriminator value
        return "'storage' must be 'local' or 's3'"
    if field is None and "is not of type 'object'" in error.message:
        return "the body must be a JSON object"
    if field is None:
        return message
    return f"'{field}': {message}"


def _clipped(message: str, instance: object) -> str:
    """jsonschema's message, with the value it quotes (all of it) cut short."""
    whole = repr(instance)
    return message.replace(whole, clip(instance), 1) if len(whole) > LONGEST else message
