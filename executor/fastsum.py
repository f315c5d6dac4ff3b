"""The fast path: one compiled pass over a chunk that sums it exactly or says it cannot.

The kernel (numba, compiled once and cached on disk; no compiler needed) finds the special
bytes of 64 at a time with word arithmetic: the delimiter, LF, CR and the quote. From
them it walks the fields, checks every row's width, and parses only the summed fields, as
integers scaled by their number of decimals, into an int64 accumulator per column and
scale. RFC 4180 quoting is followed (a quoted number is a number; doubled quotes; quoted
delimiters and newlines), and CRLF ends a line as LF does. Anything it cannot prove exact
(more than 18 digits, an exponent, a cell that is not a plain number, a lone CR, a row of
another width, a quote it cannot close in the chunk) makes it answer None, and the chunk
goes to the exact path, which also names the line of the error.

The kernel releases the GIL, so threads sum chunks side by side.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path


def _writable(folder: Path) -> bool:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=folder).close()
    except OSError:
        return False
    return True


def _choose_cache() -> None:
    """numba refuses to import a cached kernel at all when no folder it would cache in is
    writable (a read-only root file system, say): then it caches in the temporary folder.
    Its own order: NUMBA_CACHE_DIR, __pycache__ beside this file, ~/.cache/numba."""
    configured = os.environ.get("NUMBA_CACHE_DIR")
    candidates = (
        [Path(configured)]
        if configured
        else [Path(__file__).parent / "__pycache__", Path.home() / ".cache" / "numba"]
    )
    if not any(_writable(folder) for folder in candidates):
        os.environ["NUMBA_CACHE_DIR"] = str(Path(tempfile.gettempdir()) / "colsum-numba")


_choose_cache()  # before numba reads its configuration

import numpy as np  # noqa: E402
from llvmlite import ir  # noqa: E402
from numba import njit, types  # noqa: E402
from numba.extending import intrinsic  # noqa: E402

EVERY = 10  # columns 10, 20, 30, ... are summed
NL, CR, QUOTE, MINUS, PLUS, DOT = 10, 13, 34, 45, 43, 46
BLOCK = 64  # bytes the kernel looks at at once
PAD = 2 * BLOCK  # bytes after a piece the kernel may read: its sentinel, its last block
SCALES = 19  # decimals a summed cell may have, 0 to 18
DIGITS = 18  # every int64 holds 18 digits
LIMIT = 1 << 62  # an accumulator stays within +-(LIMIT + 10**18): no int64 overflow
OK, INEXACT = 0, 1

LOW7 = np.uint64(0x7F7F7F7F7F7F7F7F)
HIGH = np.uint64(0x8080808080808080)
ONES = np.uint64(0x0101010101010101)
GATHER = np.uint64(0x0102040810204080)  # the high bit of byte j to bit 56 + j


@intrinsic
def _trailing_zeros(typingctx, x):
    """LLVM's cttz: one instruction where numba has no function for it."""

    def codegen(context, builder, signature, args):
        return builder.cttz(args[0], ir.Constant(ir.IntType(1), 0))

    return types.uint64(types.uint64), codegen


@intrinsic
def _bit_count(typingctx, x):
    """LLVM's ctpop."""

    def codegen(context, builder, signature, args):
        return builder.ctpop(args[0])

    return types.uint64(types.uint64), codegen


@njit(nogil=True, cache=True, boundscheck=False)
def _count(buf, words, stop, byte):
    total = 0
    spread = ONES * np.uint64(byte)
    add_one = ONES * np.uint64(127)
    for k in range(stop // 8):
        x = words[k] ^ spread
        total += _bit_count(~(((x & LOW7) + add_one) | x) & HIGH)
    for j in range(stop // 8 * 8, stop):
        total += buf[j] == byte
    return total


def count_byte(data: bytes | bytearray, byte: int, stop: int) -> int:
    """data.count(byte, 0, stop), eight bytes at a time: CPython's count looks at one at a
    time (6 ms for the quotes of an 8 MiB chunk, more than summing it)."""
    buffer = np.frombuffer(data, np.uint8)
    return int(_count(buffer, buffer[: len(buffer) // 8 * 8].view(np.uint64), stop, byte))


@njit(inline="always")
def _add_number(buf, first, stop, acc, carry, slot):
    """Add the number in buf[first:stop]: [+-] digits [. digits] with at most DIGITS
    significant digits and SCALES - 1 decimals, or nothing (an empty cell is 0)."""
    negative = False
    j = first
    if j < stop:
        negative = buf[j] == MINUS
        if negative or buf[j] == PLUS:
            j += 1
            if j == stop:
                return INEXACT
    value = 0
    digits = 0
    significant = 0  # digits from the first that is not 0: what must fit an int64
    scale = 0
    point = False
    while j < stop:
        d = np.int64(buf[j]) - 48
        if 0 <= d <= 9:
            value = value * 10 + d
            digits += 1
            significant += value != 0
            scale += point
        elif buf[j] == DOT and not point:
            point = True
        else:
            return INEXACT
        j += 1
    if digits == 0:
        return INEXACT if point else OK
    if significant > DIGITS or scale >= SCALES:
        return INEXACT
    a = acc[slot, scale] + (-value if negative else value)
    if a >= LIMIT:
        a -= LIMIT
        carry[slot, scale] += 1
    elif a <= -LIMIT:
        a += LIMIT
        carry[slot, scale] -= 1
    acc[slot, scale] = a
    return OK


@njit(nogil=True, cache=True, boundscheck=False)
def _scan(buf, words, n, width, delim, acc, carry, out):
    """Sum columns 10, 20, ... of buf[:n] into acc and carry (per column and scale: the
    sum is carry * LIMIT + acc); rows and lines into out. buf[n] must be a newline (the
    sentinel that ends a last row without one), and `words` buf as uint64, at least
    (n // BLOCK + 1) * BLOCK bytes. Returns OK, or INEXACT to hand the chunk on."""
    # A byte is flagged when below `low`; the delimiter, when not below it, is tested apart.
    low = max(delim, QUOTE) + 1 if delim < MINUS else QUOTE + 1
    add_low = ONES * np.uint64(128 - low)
    apart = delim >= MINUS
    spread = ONES * np.uint64(delim)
    add_one = ONES * np.uint64(127)
    rows = 0
    lines = 0
    field = 0  # its index in the row
    until_summed = EVERY - 1  # fields before the next summed one
    start = 0  # the field's first byte
    row_start = 0
    in_quotes = False
    quoted = False  # the field began with a quote
    close = -1  # where its closing quote is
    skip = -1  # the second quote of a doubled pair
    for block in range((n + BLOCK) // BLOCK):
        mask = np.uint64(0)
        for k in range(8):
            w = words[block * 8 + k]
            m = ~(((w & LOW7) + add_low) | w) & HIGH  # bytes < low, exactly (no carries)
            if apart:
                x = w ^ spread
                m |= ~(((x & LOW7) + add_one) | x) & HIGH
            mask |= (((m >> np.uint64(7)) * GATHER) >> np.uint64(56)) << np.uint64(8 * k)
        while mask:
            pos = block * BLOCK + np.int64(_trailing_zeros(mask))
            mask &= mask - np.uint64(1)
            if pos > n:
                break
            c = buf[pos]
            if in_quotes:
                if c == QUOTE:
                    if pos == skip:
                        continue
                    if buf[pos + 1] == QUOTE and pos + 1 < n:
                        skip = pos + 1
                        continue
                    in_quotes = False
                    close = pos
                elif c == NL:
                    if pos >= n:
                        return INEXACT  # a quote open at the end of the chunk
                    lines += 1
                continue
            if c == delim and until_summed:  # the common case: a field not summed ends
                if quoted:
                    if close + 1 != pos:
                        return INEXACT  # text after the closing quote
                    quoted = False
                field += 1
                until_summed -= 1
                start = pos + 1
                continue
            if c == QUOTE:
                if pos == start:
                    in_quotes = quoted = True
                continue  # else a quote inside a field, which is just a character
            if c == CR:
                if buf[pos + 1] != NL or pos + 1 >= n:
                    return INEXACT  # a lone CR: an error on the exact path
                continue  # the LF after it ends the field
            if c == NL:
                end = pos - 1 if pos > start and buf[pos - 1] == CR else pos
                if field == 0 and end == row_start:  # a blank line
                    if pos < n:
                        lines += 1
                    start = row_start = pos + 1
                    continue
            elif c == delim:
                end = pos
            else:
                continue  # another byte below `low`: a space, say
            if quoted:
                if close + 1 != end:
                    return INEXACT  # text after the closing quote
                first, stop = start + 1, close
            else:
                first, stop = start, end
            if until_summed == 0 and field < width:
                until_summed = EVERY
                if _add_number(buf, first, stop, acc, carry, field // EVERY) != OK:
                    return INEXACT
            until_summed -= 1
            quoted = False
            start = pos + 1
            if c == delim:
                field += 1
                continue
            if field + 1 != width:
                return INEXACT
            rows += 1
            if pos >= n:
                break
            lines += 1
            field = 0
            until_summed = EVERY - 1
            row_start = start
        else:
            continue
        break
    if in_quotes:
        return INEXACT
    out[0] = rows
    out[1] = lines
    return OK


@dataclass
class ChunkSums:
    """A chunk's rows and lines, and its sums as scaled integers (carry * LIMIT + acc)."""

    rows: int
    lines: int
    acc: np.ndarray
    carry: np.ndarray


def padded(data: bytes | bytearray | memoryview) -> memoryview:
    """`data` copied into a buffer with room for the kernel, for a piece `chunks` did not cut."""
    buffer = bytearray(len(data) + PAD)
    buffer[: len(data)] = data
    return memoryview(buffer)[: len(data)]


def sum_chunk(piece: memoryview, width: int, delimiter: str) -> ChunkSums | None:
    """The exact sums of a chunk of whole records, or None: use the exact path.

    `piece` is the start of a bytearray with PAD bytes to spare after it (as
    `chunks.chunks` and `padded` make); the byte after the piece is overwritten."""
    n = len(piece)
    buffer = np.frombuffer(piece.obj, np.uint8)
    at = np.frombuffer(piece, np.uint8).ctypes.data if n else buffer.ctypes.data
    if len(buffer) < n + PAD or at != buffer.ctypes.data:
        raise ValueError("no room for the kernel's blocks after the piece: use padded()")
    buffer[n] = NL
    columns = len(range(EVERY - 1, width, EVERY))
    acc = np.zeros((columns, SCALES), np.int64)
    carry = np.zeros((columns, SCALES), np.int64)
    out = np.zeros(2, np.int64)
    words = buffer[: len(buffer) // 8 * 8].view(np.uint64)
    if _scan(buffer, words, n, width, ord(delimiter), acc, carry, out) != OK:
        return None
    return ChunkSums(rows=int(out[0]), lines=int(out[1]), acc=acc, carry=carry)


class Totals:
    """The sums of every chunk the kernel summed, kept as scaled integers until the end."""

    def __init__(self, columns: int) -> None:
        self.acc = np.zeros((columns, SCALES), np.int64)
        self.carry = np.zeros((columns, SCALES), np.int64)

    def add(self, part: ChunkSums) -> None:
        # Keep acc in [0, LIMIT): two of them add without overflow, the rest goes to carry.
        self.carry += part.carry + (part.acc >> 62)
        self.acc += part.acc & (LIMIT - 1)
        self.carry += self.acc >> 62
        self.acc &= LIMIT - 1

    def decimals(self) -> list[Decimal]:
        """The exact sum of each column: call it in a context that does not round."""
        sums = [Decimal(0)] * len(self.acc)
        for column, scale in zip(*np.nonzero(self.acc | self.carry), strict=True):
            value = int(self.carry[column, scale]) * LIMIT + int(self.acc[column, scale])
            sums[column] += Decimal(f"{value}e-{scale}")  # a string converts exactly
        return sums


def warm() -> None:
    """Compile the kernels, or load them from numba's cache, before the first task needs them."""
    sum_chunk(padded(b"1,2,3,4,5,6,7,8,9,10\n"), 10, ",")
    count_byte(bytearray(b'"'), QUOTE, 1)
