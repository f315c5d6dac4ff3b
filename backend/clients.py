"""The `/clients` resource: who may call the API, for the admin token only."""

from __future__ import annotations

from flask import Blueprint, abort, request
from werkzeug.exceptions import BadRequest

from backend import auth, validation
from backend.services import services
from colsum.clients import DEFAULT_WEIGHT, ClientExists, InvalidClient, NoSuchClient

blueprint = Blueprint("clients", __name__, url_prefix="/clients")


@blueprint.before_request
def _admin_only() -> None:
    auth.require_admin()


@blueprint.post("")
def create():
    if not request.is_json:
        abort(415, "send the client as JSON with 'Content-Type: application/json'")
    try:
        body = request.get_json()
    except BadRequest:
        abort(400, "the request body is not valid JSON")
    except RecursionError:
        abort(400, validation.NESTED_TOO_DEEPLY)
    if not isinstance(body, dict):
        abort(400, 'the body must be a JSON object: {"name": "acme", "weight": 1}')
    validation.check(request)
    name = body["name"]
    try:
        token = services().clients.create(name, body.get("weight", DEFAULT_WEIGHT))
    except InvalidClient as error:
        abort(400, str(error))
    except ClientExists as error:
        abort(409, str(error))
    return {"client": name, "token": token}, 201, {"Location": f"/clients/{name}"}


@blueprint.get("")
def index():
    validation.check(request)
    found = services()
    return {
        "clients": [
            {**client.to_json(), **found.store.counts(client=client.name)}
            for client in found.clients.all()
        ]
    }


@blueprint.delete("/<name>")
def revoke(name: str):
    """Its tokens stop working at once; its record and tasks stay (their owner, and the
    weight its queued tasks are dispatched by)."""
    validation.check(request)
    try:
        revoked = services().clients.revoke(name)
    except NoSuchClient as error:
        abort(404, str(error))
    return {"client": name, "revoked_tokens": revoked}


@blueprint.post("/<name>/tokens")
def issue(name: str):
    validation.check(request)
    try:
        token = services().clients.issue(name)
    except NoSuchClient as error:
        abort(404, str(error))
    return {"client": name, "token": token}, 201
