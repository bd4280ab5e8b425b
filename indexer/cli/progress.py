"""Progress of a long indexing run: a live line on a terminal, periodic plain lines elsewhere."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from indexer.ingest.readers import reader_for
from indexer.ingest.sources import JSONL_SUFFIXES

if TYPE_CHECKING:
    from indexer.write.pipeline import IndexSummary


def count_records(paths: Sequence[Path]) -> int:
    """A cheap upper bound of the records in `paths` (lines of JSONL files, files a reader takes), for the ETA."""
    total = 0
    for path in paths:
        files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path]
        for file in files:
            if file.suffix.lower() in JSONL_SUFFIXES or (file == path and reader_for(file.name) is None):
                total += _count_lines(file)
            elif reader_for(file.name) is not None:
                total += 1
    return total


def _count_lines(path: Path) -> int:
    try:
        with path.open("rb") as fh:
            return sum(block.count(b"\n") for block in iter(partial(fh.read, 1 << 20), b""))
    except OSError:
        return 0


class Progress:
    """Called with the running summary after each batch; writes to `stream` (stderr in the CLI)."""

    def __init__(self, stream: TextIO, total: int | None = None, interval: float = 10.0) -> None:
        self.stream = stream
        self.total = total
        self.interval = interval
        self.live = stream.isatty()
        # -inf, not 0: monotonic() counts from boot, so on a machine up for less than `interval`
        # a 0 would hold back the first line.
        self._last = -math.inf

    def line(self, summary: IndexSummary) -> str:
        """One progress line: documents indexed and records rejected (apart), chunks, the rate of
        documents and, when the total is known, records read of it and the ETA."""
        read = summary.documents + summary.rejected
        rate = summary.documents / summary.seconds if summary.seconds else 0.0
        text = f"{summary.documents} documents, {summary.rejected} rejected, {summary.chunks} chunks, {rate:.1f} docs/s"
        if self.total and read and summary.seconds:
            # The total counts records (lines, files), rejected ones too: the ETA is in records.
            left = max(self.total - read, 0) * summary.seconds / read
            text = f"{read}/{self.total} records: {text}, ETA {left:.0f} s"
        return text

    def __call__(self, summary: IndexSummary) -> None:
        if self.live:
            self.stream.write("\r\033[K" + self.line(summary))
            self.stream.flush()
        elif time.monotonic() - self._last >= self.interval:
            self._last = time.monotonic()
            self.stream.write(f"progress: {self.line(summary)}\n")
            self.stream.flush()

    def close(self) -> None:
        """End the live line so the summary starts on a fresh one."""
        if self.live:
            self.stream.write("\r\033[K")
            self.stream.flush()
