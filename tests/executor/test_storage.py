"""LocalStorage: what it opens, and the errors a user sees for what it cannot."""

from pathlib import Path

import pytest

from colsum.errors import PermanentError
from colsum.task import LocalSource
from executor.storage import LocalStorage


def test_opens_a_file_below_the_root(tmp_path: Path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.csv").write_bytes(b"1,2\n")
    with LocalStorage(tmp_path).open(LocalSource(path="sub/a.csv")) as stream:
        assert stream.read() == b"1,2\n"


def test_a_missing_file_is_a_permanent_error_naming_it(tmp_path: Path):
    with pytest.raises(PermanentError, match=r"file not found: nope\.csv"):
        LocalStorage(tmp_path).open(LocalSource(path="nope.csv"))


def test_a_directory_is_a_permanent_error(tmp_path: Path):
    (tmp_path / "dir").mkdir()
    with pytest.raises(PermanentError, match="is a directory"):
        LocalStorage(tmp_path).open(LocalSource(path="dir"))


def test_a_symlink_out_of_the_root_is_refused(tmp_path: Path):
    root = tmp_path / "root"
    root.mkdir()
    (tmp_path / "secret.csv").write_text("1\n")
    (root / "link.csv").symlink_to(tmp_path / "secret.csv")
    with pytest.raises(PermanentError, match="leads outside DATA_DIR"):
        LocalStorage(root).open(LocalSource(path="link.csv"))
