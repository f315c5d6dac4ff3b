"""Makers of hostile files: each takes the path to create (below the corpus's DATA_DIR).

Generated at run time, never committed: some are tens of MiB, some are not files at all.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from pathlib import Path

Maker = Callable[[Path], None]

NAMES = ",".join("abcdefghij") + "\n"  # a header: ten columns, the tenth summed
NINE = "1,2,3,4,5,6,7,8,9,"  # the nine cells before a summed one


def text(content: str) -> Maker:
    def make(path: Path) -> None:
        path.write_bytes(content.encode())

    return make


def raw(content: bytes) -> Maker:
    def make(path: Path) -> None:
        path.write_bytes(content)

    return make


def repeated(head: bytes, unit: bytes, size: int, tail: bytes = b"") -> Maker:
    """`head`, then `unit` over and over for `size` bytes, then `tail`."""

    def make(path: Path) -> None:
        block = unit * max(1, (1 << 20) // len(unit))
        with path.open("wb") as out:
            out.write(head)
            written = 0
            while written < size:
                written += out.write(block[: size - written])
            out.write(tail)

    return make


def wide(columns: int, rows: int) -> Maker:
    """`rows` rows of `columns` cells, each 1."""
    return text(("1," * (columns - 1) + "1\n") * rows)


def binary(size: int, seed: int = 12) -> Maker:
    """Random bytes with NULs in them, as an image or a zip would be."""

    def make(path: Path) -> None:
        data = bytearray(random.Random(seed).randbytes(size))
        data[100:104] = b"\0\0\0\0"
        path.write_bytes(bytes(data))

    return make


def fifo(path: Path) -> None:
    os.mkfifo(path)  # nobody ever writes to it: open() for reading blocks for ever


def symlink(target: str) -> Maker:
    def make(path: Path) -> None:
        path.symlink_to(target)

    return make


def directory(path: Path) -> None:
    path.mkdir()


def nothing(path: Path) -> None:
    """The task names a file that does not exist."""


def link_to_another_clients_upload(path: Path) -> None:
    """A symlink, in DATA_DIR, to an upload of the client `bob` (the corpus is `anonymous`)."""
    upload = path.parent / "uploads" / "bob" / "0123456789abcdef0123456789abcdef.csv"
    upload.parent.mkdir(parents=True, exist_ok=True)
    upload.write_text(NAMES + NINE + "10\n")
    path.symlink_to(upload)
