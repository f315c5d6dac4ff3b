"""What a client's tasks may read: its own local root, the allowed S3 buckets, and never
another client's upload.

The backend asks before it stores a task (a refusal is a 400), and the executors ask again
before they read (a refusal fails the task), for a task that reached the queue another way.
A refusal never depends on whether the file exists, so it tells nobody what is there.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from pathlib import Path

from colsum import uploads
from colsum.settings import Settings
from colsum.task import LocalSource, S3Source


@dataclass(frozen=True)
class Scope:
    data_dir: Path
    client_dirs: bool = False  # a local path is relative to DATA_DIR/<client>/
    allowed_buckets: tuple[str, ...] = ()  # none: any bucket
    upload_bucket: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> Scope:
        return cls(
            settings.data_dir,
            settings.client_dirs,
            settings.s3_allowed_buckets,
            settings.upload_bucket,
        )

    def root(self, client: str) -> Path:
        """Where the client's local paths start. ValueError for a client name that is not
        one harmless folder name."""
        if self.client_dirs:
            return self.data_dir / uploads.folder_name(client)
        return self.data_dir

    def root_label(self, client: str) -> str:
        """The root as messages name it."""
        return f"DATA_DIR/{client}" if self.client_dirs else "DATA_DIR"

    def below_data_dir(self, path: str, client: str) -> str:
        """A path relative to the client's root, made relative to DATA_DIR."""
        return posixpath.join(client, path) if self.client_dirs else path

    def refusal(self, source: LocalSource | S3Source, client: str) -> str | None:
        """Why the client may not read `source`, or None if it may."""
        if isinstance(source, S3Source):
            return self.s3_refusal(source.bucket, source.key, client)
        return self.local_refusal(self.below_data_dir(source.path, client), client)

    def local_refusal(self, below_data_dir: str, client: str) -> str | None:
        """For a normalized path relative to DATA_DIR (as the file really is, for the
        executors): refused if it is another client's upload."""
        owner = uploads.owner(below_data_dir)
        if owner is None or owner == client:
            return None
        return f"'path' names another client's upload: {self._yours(client)}"

    def s3_refusal(self, bucket: str, key: str, client: str) -> str | None:
        confined = bool(self.allowed_buckets) or bucket == self.upload_bucket
        if confined and {".", ".."} & set(key.split("/")):
            # S3 keeps such a key as it is, but a proxy or an S3-compatible store may resolve
            # `/bucket/uploads/me/../you/x` (path-style) into another folder or bucket.
            return "'key' must not have '.' or '..' segments here"
        if bucket == self.upload_bucket and key.startswith(f"{uploads.FOLDER}/"):
            if uploads.owner(key) == client:
                return None  # its own upload, whether the bucket is listed or not
            return f"'key' names another client's upload in UPLOAD_BUCKET: {self._yours(client)}"
        if self.allowed_buckets and bucket not in self.allowed_buckets:
            allowed = ", ".join(self.allowed_buckets)
            return (
                f"'bucket': {bucket!r} is not one this service reads (S3_ALLOWED_BUCKETS):"
                f" allowed are {allowed}"
            )
        return None

    def _yours(self, client: str) -> str:
        if self.client_dirs:
            return f"a task reads only its own client's (yours are in {uploads.FOLDER}/)"
        return f"a task reads only its own client's (yours are in {uploads.FOLDER}/{client}/)"
