"""Where records end, for any mix of quotes and newlines, at a cost linear in the input."""

from __future__ import annotations

import io
import random

import pytest

from executor import chunks


def reference_ends(data: bytes) -> list[int]:
    """Every offset just past a newline outside quotes, byte by byte."""
    ends, quotes = [], 0
    for i, byte in enumerate(data):
        quotes += byte == ord('"')
        if byte == ord("\n") and quotes % 2 == 0:
            ends.append(i + 1)
    return ends


def random_bytes(rnd: random.Random) -> bytes:
    return bytes(rnd.choice(b'"\na,') for _ in range(rnd.randint(0, 80)))


@pytest.fixture
def tiny_blocks(monkeypatch):
    """Blocks of a few bytes and no backward walk: every case crosses the numpy scan."""
    monkeypatch.setattr(chunks, "BLOCK", 5)
    monkeypatch.setattr(chunks, "WALK", 1)


def test_first_and_last_record_ends_match_a_byte_by_byte_count(tiny_blocks):
    rnd = random.Random(12)
    for _ in range(3000):
        data = random_bytes(rnd)
        ends = reference_ends(data)
        assert chunks.first_record_end(data) == (ends[0] if ends else -1), data
        stop = rnd.randint(0, len(data))
        within = [end for end in ends if end <= stop]
        assert chunks.last_record_end(bytearray(data), stop) == (within[-1] if within else -1)


def test_the_first_record_of_a_growing_buffer_is_found_as_if_scanned_at_once(tiny_blocks):
    rnd = random.Random(7)
    for _ in range(2000):
        data = random_bytes(rnd)
        ends = reference_ends(data)
        scanner, buffer, end = chunks.FirstRecord(), bytearray(), -1
        for start in range(0, len(data), 3):
            buffer += data[start : start + 3]
            if (end := scanner.end(buffer)) != -1:
                break
        assert end == (ends[0] if ends else -1), data


def test_a_growing_first_record_is_scanned_once(monkeypatch):
    scanned = []
    scan = chunks._scan

    def spy(data, start, stop, quoted, first):
        scanned.append(stop - start)
        return scan(data, start, stop, quoted, first)

    monkeypatch.setattr(chunks, "_scan", spy)
    scanner, buffer = chunks.FirstRecord(), bytearray(b'"')
    for _ in range(100):
        buffer += b"\n" * 1000
        assert scanner.end(buffer) == -1
    assert sum(scanned) == len(buffer)


def test_a_quote_left_open_before_many_newlines_is_cut_by_a_vectorised_scan(monkeypatch):
    """A Python loop over each quoted newline took minutes for 64 MiB of them."""
    scans = []
    scan = chunks._scan
    monkeypatch.setattr(
        chunks, "_scan", lambda *args, **kwargs: scans.append(args[1:3]) or scan(*args, **kwargs)
    )
    data = bytearray(b"a,b\n" + b'"' + b"\n" * 100_000)
    assert chunks.last_record_end(data) == 4
    assert len(scans) == 1  # after a few newlines, one scan instead of 100,000 steps


def test_chunks_calls_check_before_every_read():
    calls = []

    def check():
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt  # any exception: the caller's way to stop

    with pytest.raises(KeyboardInterrupt):
        list(chunks.chunks(io.BytesIO(b'"' + b"\n" * 10_000), 16, check=check))
    assert len(calls) == 3


def test_pieces_cut_records_whole_and_stay_unchanged_while_the_caller_holds_some():
    records = b"".join(b'"a\nb",%d\n' % n for n in range(2000))
    buffers = [bytearray() for _ in range(4)]
    held = []
    for piece in chunks.chunks(io.BytesIO(records), 64, buffers=buffers):
        held.append((piece, bytes(piece)))
        held = held[-2:]  # len(buffers) - 2
        assert all(bytes(view) == copy for view, copy in held)
        assert piece[-1:] == b"\n"
    assert len(buffers) == 4


def test_a_buffer_pool_lends_the_same_buffers_to_the_next_file():
    pool = chunks.BufferPool(1024)
    with pool.lend(3) as first:
        pass
    with pool.lend(4) as second:
        assert {id(b) for b in first} < {id(b) for b in second}
        grown = second[0] = bytearray(2048)  # for a long record: not kept
    with pool.lend(4) as third:
        assert all(b is not grown for b in third)
