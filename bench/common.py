"""Shared helpers of the benchmarks: SciFact texts, timing, resident memory, table printing."""

from __future__ import annotations

import json
import resource
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

SCIFACT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "scifact"
T = TypeVar("T")


def scifact_docs(n: int | None = None) -> list[dict[str, Any]]:
    """The first `n` SciFact documents (all when n is None)."""
    docs = []
    with (SCIFACT / "corpus.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            docs.append(json.loads(line))
            if n is not None and len(docs) >= n:
                break
    return docs


def scifact_queries() -> list[str]:
    """Every SciFact query text."""
    with (SCIFACT / "queries.jsonl").open(encoding="utf-8") as fh:
        return [json.loads(line)["text"] for line in fh]


def timed(fn: Callable[[], T]) -> tuple[T, float]:
    """Run `fn` once; return its result and the seconds it took."""
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def rss_mb() -> float:
    """Current resident set size in MiB (Linux)."""
    with Path("/proc/self/statm").open() as fh:
        pages = int(fh.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def print_table(title: str, header: list[str], rows: list[list[Any]]) -> None:
    """A plain aligned table."""
    cells = [header, *[[f"{c:.3f}" if isinstance(c, float) else str(c) for c in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    print(f"\n{title}")
    for i, row in enumerate(cells):
        print("  ".join(c.rjust(w) if j else c.ljust(w) for j, (c, w) in enumerate(zip(row, widths, strict=True))))
        if i == 0:
            print("  ".join("-" * w for w in widths))
