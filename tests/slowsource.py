"""A slow S3 endpoint, for tests and the chaos check that need a task to keep running."""

from __future__ import annotations

import contextlib
import http.server
import threading
import time

from colsum.task import S3Source


class SlowSource:
    """An S3 endpoint of the caller's own whose every object is `body` served slowly: its
    first `split` bytes at once, the rest after `seconds` or once `release` is set. For a
    task that must keep running: a source that legitimately takes its time (a FIFO under
    DATA_DIR, which served this before, is refused as not a regular file). Executors reach
    it with `env`; a reader that dies leaves nothing behind, each read being a request.
    """

    bucket = "slow-bucket"

    def __init__(
        self, body: bytes, split: int, seconds: float = 0, release: threading.Event | None = None
    ) -> None:
        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _head(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/csv")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("ETag", '"slow"')
                self.send_header("Last-Modified", "Thu, 01 Jan 2026 00:00:00 GMT")
                self.end_headers()

            def do_HEAD(self) -> None:
                self._head()

            def do_GET(self) -> None:
                self._head()
                with contextlib.suppress(OSError):
                    self.wfile.write(body[:split])
                    self.wfile.flush()
                    if release is None:
                        time.sleep(seconds)
                    else:
                        release.wait()
                    self.wfile.write(body[split:])

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def env(self) -> dict[str, str]:
        """What an executor needs to read from here (with no read timeout to speak of)."""
        return {
            "AWS_URL": f"http://127.0.0.1:{self.server.server_port}",
            "AWS_ID": "testing",
            "AWS_SECRET": "testing",
            "S3_READ_TIMEOUT": "600",
        }

    def source(self, key: str = "slow.csv") -> dict[str, str]:
        """The task source, as a POST /tasks body."""
        return {"storage": "s3", "bucket": self.bucket, "key": key}

    def s3(self, key: str = "slow.csv") -> S3Source:
        return S3Source(bucket=self.bucket, key=key)
