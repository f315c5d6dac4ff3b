"""RATE_LIMIT: how many tasks each client may create, per client, with flask-limiter.

Counted in Redis (REDIS_URL, under REDIS_PREFIX), so every gunicorn worker and every
backend shares one window per client; the key is the caller's client name, so one
client's flood does not use up another's allowance. Beyond it: 429 with Retry-After.
"""

from __future__ import annotations

from flask import Flask
from flask_limiter import Limiter

from backend import auth

LIMITED = "tasks.create"  # POST /tasks: the only endpoint that makes work


def register(app: Flask) -> None:
    settings = app.extensions["colsum"].settings
    if not settings.rate_limit:
        return
    limiter = Limiter(
        key_func=auth.current_client,
        app=app,
        storage_uri=settings.redis_url,
        storage_options={"key_prefix": f"{settings.redis_prefix}ratelimit"},
        strategy="moving-window",
        headers_enabled=True,
        # Redis down: let the request through; creating the task answers 503 itself.
        swallow_errors=True,
    )
    message = f"too many tasks from this client: at most {settings.rate_limit} (RATE_LIMIT)"
    view = app.view_functions[LIMITED]
    app.view_functions[LIMITED] = limiter.limit(settings.rate_limit, error_message=message)(view)
