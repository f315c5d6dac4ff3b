"""The API described: the OpenAPI document, and Swagger UI to read it in a browser.

Swagger UI's files come from the flask-swagger-ui package, not from a CDN: users may be
offline.
"""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Flask, send_file
from flask_swagger_ui import get_swaggerui_blueprint

SPEC = Path(__file__).resolve().parent.parent / "swagger.yaml"

blueprint = Blueprint("spec", __name__)


@blueprint.get("/openapi.yaml")
def spec():
    return send_file(SPEC, mimetype="application/yaml")


def register(app: Flask) -> None:
    app.register_blueprint(blueprint)
    app.register_blueprint(
        get_swaggerui_blueprint("/docs", "/openapi.yaml", config={"app_name": "Colsum"})
    )
