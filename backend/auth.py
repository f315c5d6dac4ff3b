"""Who is calling: the client a request's token names, checked before any view runs.

Open mode (ADMIN_TOKEN unset): every request is the client `anonymous`, which sees and
may do everything, as before clients existed; the backend says so in its log at start.

With ADMIN_TOKEN set, every route but PUBLIC needs `Authorization: Bearer <token>`: the
admin token, or a client's (colsum/clients.py). The browser dashboard cannot send a
Bearer header, so the token is also accepted as the password of HTTP Basic auth (any user
name): the browser asks for it once, then sends it with the page's own requests
(`/dashboard/live`, the form's `POST /tasks`). A token never travels in a URL.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging

from flask import Flask, abort, g, request
from werkzeug.exceptions import Unauthorized

from backend.services import services
from colsum.clients import ADMIN, ClientRegistry
from colsum.settings import Settings
from colsum.task import ANONYMOUS

log = logging.getLogger(__name__)

# Health for orchestrators, the API's description and the dashboard's script, stylesheet
# and icon (the same for everyone) need no token.
PUBLIC = frozenset({"/healthz", "/readyz", "/openapi.yaml", "/docs"})
PUBLIC_PREFIXES = ("/docs/", "/static/")
# Where a browser is the caller: a 401 asks for Basic credentials, which a browser prompts for.
BROWSER = frozenset({"/", "/dashboard/live"})
REALM = "Colsum (user name: anything, password: your token)"

_CLIENT, _ADMIN = "colsum_client", "colsum_admin"  # flask.g attributes


def current_client() -> str:
    """The caller's client name: `anonymous` in open mode, `admin` for ADMIN_TOKEN."""
    return g.get(_CLIENT, ANONYMOUS)


def is_admin() -> bool:
    """True for ADMIN_TOKEN, and in open mode (anonymous sees every task, as before)."""
    return g.get(_ADMIN, not services().settings.admin_token)


def open_mode() -> bool:
    return not services().settings.admin_token


def require_admin() -> None:
    """403 unless the caller holds ADMIN_TOKEN. In open mode too: a token minted while
    anybody may call would still work once ADMIN_TOKEN is set."""
    if open_mode():
        abort(403, "clients and tokens need ADMIN_TOKEN set on the backend: it runs in open mode")
    if not is_admin():
        abort(403, "only the admin token may do this")


def announce(settings: Settings) -> None:
    """Once per backend, at start (`python -m backend`), not once per worker process:
    whether auth is off, or how to get a client's token (`docker compose logs backend`)."""
    if not settings.admin_token:
        log.warning(
            "ADMIN_TOKEN is not set: authentication is off, every caller is the client "
            "'anonymous' and sees every task"
        )
        return
    log.info(
        "ADMIN_TOKEN is set: every request needs a token; create a client and its token "
        'with POST /clients {"name": "acme"} and \'Authorization: Bearer <ADMIN_TOKEN>\', '
        "or COLSUM_TOKEN=<ADMIN_TOKEN> colsum client create acme"
    )


def register(app: Flask) -> None:
    """Check every request's credentials first: before rate limits and views."""
    app.before_request_funcs.setdefault(None, []).insert(0, _authenticate)


def _authenticate() -> None:
    found = services()
    if found.settings.admin_token and (
        request.path in PUBLIC or request.path.startswith(PUBLIC_PREFIXES)
    ):
        return
    token = token_of(request.headers.get("Authorization", ""))
    caller = identify(token, found.settings, found.clients)
    if caller is None:
        _refuse("a valid token is required" if token else None)
    g.colsum_client, g.colsum_admin = caller


def identify(
    token: str | None, settings: Settings, clients: ClientRegistry
) -> tuple[str, bool] | None:
    """(client, is admin) for a request bearing `token`, or None: refused. Open mode
    needs no token: everyone is `anonymous`, who sees everything."""
    if not settings.admin_token:
        return ANONYMOUS, True
    if token is not None and hmac.compare_digest(
        token.encode("utf-8", "surrogateescape"),
        settings.admin_token.encode("utf-8", "surrogateescape"),
    ):
        return ADMIN, True
    name = clients.client_of(token) if token else None
    return None if name is None else (name, False)


def token_of(authorization: str) -> str | None:
    """The token of `Authorization: Bearer <token>`, or the password of Basic auth."""
    scheme, _, value = authorization.strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer" and value:
        return value
    if scheme.lower() == "basic" and value:
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return decoded.partition(":")[2] or None
    return None


def _refuse(problem: str | None) -> None:
    if problem is None:
        problem = "send your token: 'Authorization: Bearer <token>'"
    challenge = f'Basic realm="{REALM}"' if request.path in BROWSER else 'Bearer realm="Colsum"'
    raise _Challenge(f"{problem}; the operator issues tokens (POST /clients)", challenge)


class _Challenge(Unauthorized):
    """A 401 whose WWW-Authenticate says which credentials to send."""

    def __init__(self, description: str, challenge: str) -> None:
        super().__init__(description)
        self.challenge = challenge

    def get_headers(self, environ=None, scope=None):
        return [*super().get_headers(environ, scope), ("WWW-Authenticate", self.challenge)]
