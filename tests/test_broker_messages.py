"""A task message is `{"id": "<task id>"}`; anything else in the queue is refused as such."""

from __future__ import annotations

import pytest

from colsum import broker


def test_a_task_message_reads_back_as_its_id():
    assert broker.decode(broker.encode("f" * 32)) == "f" * 32


@pytest.mark.parametrize(
    "body",
    [
        b"garbage",
        b"",
        b"\xff\xfe",
        b"[1]",
        b'"id"',
        b"null",
        b'{"id": 5}',
        b'{"task": "x"}',
        b"[" * 100_000 + b"]" * 100_000,  # nesting deeper than any recursion limit
    ],
)
def test_anything_else_is_refused_as_not_a_task_message(body):
    with pytest.raises(ValueError, match="not a Colsum task message"):
        broker.decode(body)
