"""Deterministic CSV files for tests, with their exact expected sums."""

from __future__ import annotations

import random
from decimal import Decimal
from pathlib import Path


def write_numbers(
    path: Path, rows: int, columns: int = 40, seed: int = 0, empty: float = 0.05
) -> list[Decimal]:
    """A CSV with a header and `rows` rows of integers and 2-decimal numbers, some negative
    and a share `empty` of cells empty; returns the exact sums of columns 10, 20, 30, ..."""
    rnd = random.Random(seed)
    summed = range(9, columns, 10)
    sums = [Decimal(0)] * len(summed)
    with path.open("w", newline="") as out:
        out.write(",".join(f"c{i + 1}" for i in range(columns)) + "\n")
        for _ in range(rows):
            cells = []
            for _column in range(columns):
                kind = rnd.random()
                if kind < empty:
                    cell = ""
                elif kind < 0.5 + empty / 2:
                    cell = str(rnd.randint(-(10**6), 10**6))
                else:
                    cell = str(Decimal(rnd.randint(-(10**8), 10**8)).scaleb(-2))
                cells.append(cell)
            for slot, i in enumerate(summed):
                if cells[i]:
                    sums[slot] += Decimal(cells[i])
            out.write(",".join(cells) + "\n")
    return sums
