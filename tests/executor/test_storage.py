"""LocalStorage and the resumable reader under it: what they read, and the errors a user sees."""

from __future__ import annotations

import contextlib
import io
import os
import socket
import threading
from pathlib import Path

import pytest

from colsum.errors import PermanentError, SourceChanged, TransientError
from colsum.scope import Scope
from colsum.task import LocalSource
from executor.storage import LocalStorage, ReadStats, RetryPolicy
from executor.storage.local import LocalFile
from executor.storage.resumable import ResumableReader


def read(root: Path, path: str, stats: ReadStats | None = None) -> bytes:
    with LocalStorage(root).open(LocalSource(path=path), stats or ReadStats()) as stream:
        return stream.read()


def test_reads_a_file_below_the_root_and_counts_it(tmp_path: Path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.csv").write_bytes(b"1,2\n")
    stats = ReadStats()
    assert read(tmp_path, "sub/a.csv", stats) == b"1,2\n"
    assert stats.to_record() == {
        "attempts": 1,
        "resumes": 0,
        "bytes_read": 4,
        "bytes_total": 4,
        "rows_read": 0,
    }


def test_a_missing_file_is_a_permanent_error_naming_it(tmp_path: Path):
    with pytest.raises(PermanentError, match=r"file not found: nope\.csv"):
        read(tmp_path, "nope.csv")


def test_a_directory_is_a_permanent_error(tmp_path: Path):
    (tmp_path / "dir").mkdir()
    with pytest.raises(PermanentError, match="is a directory"):
        read(tmp_path, "dir")


def test_a_symlink_out_of_the_root_is_refused(tmp_path: Path):
    root = tmp_path / "root"
    root.mkdir()
    (tmp_path / "secret.csv").write_text("1\n")
    (root / "link.csv").symlink_to(tmp_path / "secret.csv")
    with pytest.raises(PermanentError, match="leads outside DATA_DIR"):
        read(root, "link.csv")


class FlakyFile:
    """Streams `data`, breaking after `cut` bytes on each of the first `breaks` opens."""

    name = "flaky.csv"
    size = None
    version = None

    def __init__(self, data: bytes, cut: int, breaks: int) -> None:
        self.data, self.cut, self.breaks = data, cut, breaks
        self.opened_at: list[int] = []

    def open_at(self, offset: int):
        self.opened_at.append(offset)
        breaking = len(self.opened_at) <= self.breaks
        stream = io.BytesIO(self.data[offset:])
        limit = self.cut if breaking else len(self.data)

        class Stream:
            sent = 0

            def readinto(self, buffer) -> int:
                if breaking and self.sent >= limit:
                    raise TransientError("connection reset")
                view = memoryview(buffer)[: max(1, min(len(buffer), limit - self.sent))]
                count = stream.readinto(view)
                self.sent += count
                return count

            def close(self) -> None:
                pass

        return Stream()


FAST = RetryPolicy(attempts=3, max_wait=0.01, budget=5)


def test_a_broken_stream_is_resumed_where_it_broke_with_no_byte_twice_or_missing():
    data = bytes(range(256)) * 40
    file = FlakyFile(data, cut=1000, breaks=4)
    stats = ReadStats()
    with io.BufferedReader(ResumableReader(file, FAST, stats, "test"), 300) as stream:
        assert stream.read() == data
    assert file.opened_at == [0, 1000, 2000, 3000, 4000]
    assert (stats.attempts, stats.resumes, stats.bytes_read) == (5, 4, len(data))


def test_a_retry_is_logged_under_the_readers_label_from_the_first_attempt(caplog):
    file = FlakyFile(b"x" * 100, cut=40, breaks=1)
    with io.BufferedReader(ResumableReader(file, FAST, ReadStats(), "task abc"), 30) as stream:
        assert stream.read() == b"x" * 100
    (retry,) = [r.getMessage() for r in caplog.records if "retrying" in r.getMessage()]
    assert retry.startswith("task abc: reading ")
    assert "failed at byte 40 (attempt 1)" in retry


def test_a_local_files_reader_carries_the_label_it_was_opened_with(tmp_path: Path):
    (tmp_path / "a.csv").write_bytes(b"1,2\n")
    source = LocalSource(path="a.csv")
    with LocalStorage(tmp_path).open(source, ReadStats(), "task abc") as stream:
        assert stream.raw.label == "task abc"


def test_failures_in_a_row_beyond_the_attempts_give_up_with_the_transient_error():
    file = FlakyFile(b"x" * 100, cut=0, breaks=10)
    reader = ResumableReader(file, FAST, ReadStats(), "test")
    with pytest.raises(TransientError, match="connection reset"):
        reader.read(10)
    assert len(file.opened_at) == FAST.attempts


def test_retries_stop_when_the_time_budget_is_spent():
    file = FlakyFile(b"x" * 100, cut=0, breaks=10)
    policy = RetryPolicy(attempts=1000, max_wait=0.05, budget=0.2)
    reader = ResumableReader(file, policy, ReadStats(), "test")
    with pytest.raises(TransientError):
        reader.read(10)
    assert 2 < len(file.opened_at) < 1000


def test_a_local_file_replaced_before_a_resume_is_reported(tmp_path: Path):
    path = tmp_path / "a.csv"
    path.write_bytes(b"1" * 100)
    file = LocalFile(path, "a.csv", tmp_path)
    file.open_at(0).close()
    path.unlink()
    path.write_bytes(b"2" * 100)
    with pytest.raises(SourceChanged, match=r"a\.csv was replaced while it was being read"):
        file.open_at(10)


def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path: Path):
    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)

    def write() -> None:  # so that a reader which opens it gets a CSV instead of hanging
        with contextlib.suppress(OSError), fifo.open("wb") as pipe:
            pipe.write(b"1,2\n")

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    try:
        with pytest.raises(PermanentError, match=r"^pipe\.csv is not a regular file \(a FIFO\)$"):
            read(tmp_path, "pipe.csv")
    finally:  # a reader of our own lets the writer go
        os.close(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))
        writer.join(5)


def test_a_socket_is_refused(tmp_path: Path):
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(tmp_path / "sock.csv"))
        with pytest.raises(PermanentError, match=r"sock\.csv is not a regular file \(a socket\)"):
            read(tmp_path, "sock.csv")


def test_a_symlink_to_a_device_is_refused(tmp_path: Path):
    (tmp_path / "zero.csv").symlink_to("/dev/zero")
    with pytest.raises(PermanentError, match="leads outside DATA_DIR"):
        read(tmp_path, "zero.csv")


def test_a_symlink_inside_the_root_is_followed(tmp_path: Path):
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "a.csv").write_bytes(b"1,2\n")
    (tmp_path / "link.csv").symlink_to(tmp_path / "real" / "a.csv")
    (tmp_path / "dir").symlink_to("real")
    assert read(tmp_path, "link.csv") == b"1,2\n"
    assert read(tmp_path, "dir/a.csv") == b"1,2\n"


def test_a_symlink_swapped_in_after_the_path_was_checked_is_not_followed(tmp_path: Path):
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "a.csv").write_bytes(b"1,2\n")
    (tmp_path / "secret").mkdir()
    (tmp_path / "secret" / "a.csv").write_bytes(b"secret\n")
    # The path is checked when the stream is made; the file is opened at the first read.
    stream = LocalStorage(root).open(LocalSource(path="sub/a.csv"), ReadStats())
    (root / "sub").rename(root / "old")
    (root / "sub").symlink_to(tmp_path / "secret")
    with stream, pytest.raises(PermanentError, match=r"sub/a\.csv leads outside DATA_DIR"):
        stream.read()


def test_a_regular_file_is_read_in_blocking_mode(tmp_path: Path):
    (tmp_path / "a.csv").write_bytes(b"1,2\n")
    raw = LocalFile(tmp_path / "a.csv", "a.csv", tmp_path).open_at(0).raw
    with raw:
        assert os.get_blocking(raw.fileno())


# What a client's task may read (colsum/scope.py) ---------------------------------------

UPLOAD = "0123456789abcdef0123456789abcdef.csv"


def read_as(root: Path, client: str, path: str, client_dirs: bool = False) -> bytes:
    """Read as `client`'s task would; `model_construct` lets a path in that the model would
    refuse, as a task that reached the queue another way could hold."""
    storage = LocalStorage(root, scope=Scope(root, client_dirs=client_dirs))
    source = LocalSource.model_construct(storage="local", path=path, filename=None)
    with storage.open(source, ReadStats(), client=client) as stream:
        return stream.read()


def put(root: Path, path: str, data: bytes = b"1,2\n") -> Path:
    file = root / path
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_bytes(data)
    return file


def test_with_client_dirs_a_path_is_read_below_the_clients_own_dir(tmp_path: Path):
    put(tmp_path, "acme/sub/a.csv", b"acme's\n")
    put(tmp_path, "sub/a.csv", b"shared\n")
    assert read_as(tmp_path, "acme", "sub/a.csv", client_dirs=True) == b"acme's\n"


def test_with_client_dirs_a_missing_file_names_the_clients_dir(tmp_path: Path):
    with pytest.raises(PermanentError, match=r"file not found: a\.csv \(in DATA_DIR/acme "):
        read_as(tmp_path, "acme", "a.csv", client_dirs=True)


def test_with_client_dirs_dot_dot_does_not_lead_to_another_clients_dir(tmp_path: Path):
    put(tmp_path, "bob/secret.csv")
    with pytest.raises(PermanentError, match=r"leads outside DATA_DIR/acme"):
        read_as(tmp_path, "acme", "../bob/secret.csv", client_dirs=True)


@pytest.mark.parametrize("target", ["bob/secret.csv", "shared.csv"])
def test_with_client_dirs_a_symlink_out_of_the_clients_dir_is_refused(tmp_path: Path, target):
    """Into another client's dir, or into DATA_DIR itself: both are outside acme's root."""
    put(tmp_path, target)
    (tmp_path / "acme").mkdir()
    (tmp_path / "acme" / "link.csv").symlink_to(tmp_path / target)
    with pytest.raises(PermanentError, match=r"leads outside DATA_DIR/acme"):
        read_as(tmp_path, "acme", "link.csv", client_dirs=True)


def test_with_client_dirs_a_client_name_that_is_not_a_folder_name_is_refused(tmp_path: Path):
    put(tmp_path, "secret.csv")
    with pytest.raises(PermanentError, match=r"cannot name a folder"):
        read_as(tmp_path, "..", "secret.csv", client_dirs=True)


def test_a_client_reads_its_own_uploads(tmp_path: Path):
    put(tmp_path, f"uploads/acme/{UPLOAD}")
    assert read_as(tmp_path, "acme", f"uploads/acme/{UPLOAD}") == b"1,2\n"


@pytest.mark.parametrize(
    "path", [f"uploads/bob/{UPLOAD}", f"uploads/{UPLOAD}", f"bob/uploads/{UPLOAD}"]
)
def test_another_clients_upload_is_refused_by_its_path(tmp_path: Path, path: str):
    """Per client, a flat one of before clients (anonymous's), and a CLIENT_DIRS one."""
    put(tmp_path, path)
    with pytest.raises(PermanentError, match=r"another client's upload"):
        read_as(tmp_path, "acme", path)


def test_another_clients_upload_is_refused_through_a_symlink(tmp_path: Path):
    put(tmp_path, f"uploads/bob/{UPLOAD}")
    (tmp_path / "link.csv").symlink_to(tmp_path / "uploads" / "bob" / UPLOAD)
    with pytest.raises(PermanentError, match=r"link\.csv: .*another client's upload"):
        read_as(tmp_path, "acme", "link.csv")
