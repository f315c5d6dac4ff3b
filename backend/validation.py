"""Requests are checked against swagger.yaml by openapi-core before a view acts on them:
the spec is the one source of truth for what a request may hold, so the two cannot drift.
What a schema cannot say (a path that leads out of DATA_DIR) the task model checks.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from flask import Request
from openapi_core import OpenAPI
from openapi_core.contrib.flask import FlaskOpenAPIRequest
from openapi_core.validation.request.validators import V31RequestParametersValidator

SPEC = Path(__file__).resolve().parent.parent / "swagger.yaml"


class InvalidRequest(Exception):
    """The request does not fit the spec; the message says how, field by field."""


def _load() -> OpenAPI:
    return OpenAPI.from_dict(yaml.safe_load(SPEC.read_text()))


API = _load()
_PARAMETERS = V31RequestParametersValidator(API.spec)


def check(request: Request) -> None:
    """Raise InvalidRequest unless the request's parameters and body fit the spec."""
    wrapped = FlaskOpenAPIRequest(request)
    if request.mimetype == "text/csv":
        # An upload's body is streamed to storage, never read here: parameters only.
        errors = list(_PARAMETERS.iter_errors(wrapped))
    else:
        try:
            errors = list(API.iter_request_errors(wrapped))
        except TypeError:
            # openapi-schema-validator's discriminator code fails on a non-string tag
            # (`"storage": []`) instead of reporting it.
            raise InvalidRequest("'storage' must be 'local' or 's3'") from None
    if errors:
        raise InvalidRequest("; ".join(problem for error in errors for problem in describe(error)))


def describe(error: Exception) -> list[str]:
    """Sentences a client can act on, naming each field as the client sent it."""
    name = getattr(error, "name", None)  # a parameter's
    cause = error.__cause__
    schema_errors = getattr(cause, "schema_errors", None) or []
    if not schema_errors:
        if name and hasattr(cause, "type") and hasattr(cause, "value"):  # a CastError
            kind = {"integer": "an integer", "number": "a number"}.get(cause.type, cause.type)
            return [f"'{name}': {cause.value!r} is not {kind}"]
        return [f"'{name}' is not valid" if name else str(error)]
    sentences: dict[str, str] = {}  # the first problem of each field is enough
    for schema_error in schema_errors:
        field = name or (str(schema_error.path[-1]) if schema_error.path else "")
        sentences.setdefault(field, _sentence(name, schema_error))
    return list(sentences.values())


def _sentence(parameter: str | None, error) -> str:
    # A schema may say in words what its pattern means (x-message in swagger.yaml).
    meaning = error.schema.get("x-message") if isinstance(error.schema, dict) else None
    message = f"must be {meaning}" if error.validator == "pattern" and meaning else error.message
    if parameter is not None:
        return f"'{parameter}': {message}"
    field = error.path[-1] if error.path else None
    if error.validator == "required":
        return error.message.replace(" is a required property", " is required")
    if error.validator == "additionalProperties":
        unexpected = error.message.split("(", 1)[-1].split(" was", 1)[0].split(" were", 1)[0]
        return f"unknown field {unexpected}"
    if "discriminating property 'storage'" in error.message:
        return "'storage' is required: 'local' or 's3'"
    if "could not be resolved" in error.message:  # an unknown discriminator value
        return "'storage' must be 'local' or 's3'"
    if field is None and "is not of type 'object'" in error.message:
        return "the body must be a JSON object"
    if field is None:
        return message
    return f"'{field}': {message}"
