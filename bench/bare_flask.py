"""The anchor of bench/api.py: a bare Flask app doing what GET /tasks/<id> must at least do,
one HGETALL and a JSON answer, under gunicorn with Colsum's workers and threads.

    REDIS_URL=... BARE_KEY_PREFIX=... gunicorn -k gthread -w 4 --threads 8 bench.bare_flask:app
"""

from __future__ import annotations

import os

import redis
from flask import Flask, abort

app = Flask(__name__)
store = redis.Redis.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
prefix = os.environ.get("BARE_KEY_PREFIX", "")


@app.get("/tasks/<task_id>")
def show(task_id: str):
    record = store.hgetall(f"{prefix}task:{task_id}")
    if not record:
        abort(404)
    return {key.decode(): value.decode() for key, value in record.items()}
