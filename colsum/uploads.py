"""Where an upload lives, named once for the backend that writes it, the executors that
read it (and refuse another client's) and the sweeper that deletes it when its task's
record has expired.

Uploads are kept per client, so that a client's task can be refused another's upload:

- `uploads/<client>/<task id>.csv`: a key in UPLOAD_BUCKET, or a file below DATA_DIR;
- `<client>/uploads/<task id>.csv` below DATA_DIR with CLIENT_DIRS, where the client's own
  paths start (`DATA_DIR/<client>/`), so that its task's source stays a path of its own;
- `uploads/<task id>.csv`: the flat layout of before clients, `anonymous`'s.

`.part` instead of `.csv` while a local upload is being written.
"""

from __future__ import annotations

import re

from colsum.task import ANONYMOUS

FOLDER = "uploads"
# A client's name as swagger.yaml's Client allows it: one path component, never `.` or `..`.
CLIENT = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
_ID = r"([0-9a-f]{32})\.(?:csv|part)"
_FLAT = re.compile(rf"uploads/{_ID}")
_SHARED = re.compile(rf"uploads/({CLIENT.pattern})/{_ID}")
_CLIENT_DIR = re.compile(rf"({CLIENT.pattern})/uploads/{_ID}")


def folder_name(client: str) -> str:
    """The client's name, checked to be one harmless folder (or key) name."""
    if not CLIENT.fullmatch(client):
        raise ValueError(f"the client name {client!r} cannot name a folder")
    return client


def key(task_id: str, client: str = ANONYMOUS) -> str:
    """The upload of a task as its key in UPLOAD_BUCKET (or below DATA_DIR, without
    CLIENT_DIRS)."""
    return f"{FOLDER}/{folder_name(client)}/{task_id}.csv"


def path(task_id: str, client: str = ANONYMOUS, client_dirs: bool = False) -> str:
    """The upload of a task as its source's path: relative to the client's root, which is
    DATA_DIR, or DATA_DIR/<client> with CLIENT_DIRS."""
    if client_dirs:
        folder_name(client)
        return f"{FOLDER}/{task_id}.csv"
    return key(task_id, client)


def partial(task_id: str, client: str = ANONYMOUS, client_dirs: bool = False) -> str:
    """Where a local upload is written before it is complete, as `path` names it."""
    return path(task_id, client, client_dirs).removesuffix(".csv") + ".part"


def task_id(upload: str) -> str | None:
    """The task an upload (or a partial one) belongs to, given its name relative to
    DATA_DIR or its key, in any of the layouts; None for any other name."""
    for layout in (_FLAT, _SHARED, _CLIENT_DIR):
        if match := layout.fullmatch(upload):
            return match.group(match.re.groups)
    return None


def owner(name: str) -> str | None:
    """The client whose upload `name` (a normalized path relative to DATA_DIR, or a key in
    UPLOAD_BUCKET) is; None for a name that is no upload.

    DATA_DIR/uploads/ and the bucket's `uploads/` are Colsum's: everything in
    `uploads/<client>/` is that client's, and any other name in `uploads/` (a flat upload
    of before clients, or one no layout makes) is `anonymous`'s.
    """
    parts = name.split("/")
    if parts[0] == FOLDER and len(parts) >= 2:
        return parts[1] if len(parts) >= 3 else ANONYMOUS
    if match := _CLIENT_DIR.fullmatch(name):
        return match.group(1)
    return None
