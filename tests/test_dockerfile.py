"""The Dockerfile's habits, read from the file: there is no Docker engine to build it here."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
INSTRUCTION = re.compile(r"^([A-Z]+)\s+(.*)$")


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines()]
    return [
        (match[1], match[2])
        for line in lines
        if line and not line.startswith("#") and (match := INSTRUCTION.match(line))
    ]


def index(name: str, containing: str = "") -> int:
    return next(
        i for i, (kind, args) in enumerate(instructions()) if kind == name and containing in args
    )


def test_the_base_image_is_slim_and_pinned_to_a_python_minor_version() -> None:
    base = dict(instructions())["FROM"]
    assert re.fullmatch(r"python:3\.\d+-slim(-\w+)?", base), base


def test_the_processes_run_as_an_unprivileged_user() -> None:
    users = [args for kind, args in instructions() if kind == "USER"]
    assert users and users[-1] not in ("root", "0")
    assert index("USER") < index("CMD")


def test_dependencies_are_a_layer_of_their_own_before_the_code() -> None:
    dependencies = index("RUN", "requirements")
    assert index("COPY", "pyproject.toml") < dependencies < index("COPY", "colsum/")
    # ...and installing the code itself does not resolve them again.
    assert index("COPY", "colsum/") < index("RUN", "pip install --no-deps .")


def test_pip_keeps_no_cache_in_the_image() -> None:
    env = " ".join(args for kind, args in instructions() if kind == "ENV")
    assert "PIP_NO_CACHE_DIR=1" in env


def test_every_copied_path_exists() -> None:
    for kind, args in instructions():
        if kind == "COPY":
            for source in args.split()[:-1]:
                assert "*" in source or (ROOT / source).exists(), source


@pytest.mark.parametrize("path", [".git", ".venv", "data", "tests", "bench", "**/__pycache__"])
def test_the_build_context_leaves_out(path: str) -> None:
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    assert path in ignored


def test_the_engine_kernel_is_compiled_into_a_cache_the_user_may_write() -> None:
    warm = index("RUN", "fastsum.warm()")
    assert index("ENV", "NUMBA_CACHE_DIR") < warm < index("USER")
    assert "chown -R colsum" in instructions()[warm][1]
