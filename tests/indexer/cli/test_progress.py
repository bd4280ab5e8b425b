"""Progress output: a live line on a terminal, throttled plain lines otherwise, an ETA when the total is known."""

from __future__ import annotations

import io
import json
from pathlib import Path

from indexer.cli.progress import Progress, count_records
from indexer.write.pipeline import IndexSummary


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_terminal_line_with_eta() -> None:
    out = _Tty()
    progress = Progress(out, total=100)
    progress(IndexSummary(added=20, rejected=5, chunks=40, seconds=5.0))
    # 25 of 100 records read in 5 s, 5 of them rejected: 4 documents/s, 75 records left at 5 a second.
    assert out.getvalue() == "\r\033[K25/100 records: 20 documents, 5 rejected, 40 chunks, 4.0 docs/s, ETA 15 s"
    progress.close()
    assert out.getvalue().endswith("\r\033[K")


def test_plain_lines_are_throttled() -> None:
    out = io.StringIO()
    progress = Progress(out, interval=3600)
    for n in range(1, 5):
        progress(IndexSummary(added=n * 10, chunks=n * 10, seconds=float(n)))
    assert out.getvalue() == "progress: 10 documents, 0 rejected, 10 chunks, 10.0 docs/s\n"


def test_count_records(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_text("".join(json.dumps({"id": i, "text": "x"}) + "\n" for i in range(7)))
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "one.md").write_text("# one")
    (tmp_path / "d" / "skip.png").write_bytes(b"x")
    assert count_records([tmp_path / "a.jsonl", tmp_path / "d"]) == 8


def test_indexer_reports_after_each_batch(settings, tiny_encoder) -> None:
    from indexer.write.pipeline import open_indexer
    from search.storage.records import DocumentIn

    indexer = open_indexer(settings, encoder=tiny_encoder)
    indexer.batch_docs = 4
    seen: list[tuple[int, int]] = []
    docs = [DocumentIn(f"d{i}", f"the cat {i}") for i in range(10)]
    indexer.run(docs, on_progress=lambda s: seen.append((s.documents, s.chunks)))
    # Rows of the next batch are read while the current one embeds: documents run at most a batch ahead.
    assert [c for _, c in seen] == [4, 8, 10] and seen[-1] == (10, 10)
    assert all(0 <= d - c <= 4 for d, c in seen)
