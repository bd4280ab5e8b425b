"""The demo corpus of `make run`: the local standard library's docstrings, parsed, never imported."""

from __future__ import annotations

import json
from pathlib import Path

from indexer.ingest.demo import module_document, write_corpus
from indexer.ingest.sources import read_sources
from search.storage.records import DocumentIn


def test_demo_corpus_is_real_indexable_text(tmp_path: Path) -> None:
    path = write_corpus(tmp_path)
    records = list(read_sources([path]))
    assert len(records) > 100 and all(isinstance(r, DocumentIn) for r in records)
    by_id = {r.external_id: r for r in records if isinstance(r, DocumentIn)}
    assert "json" in by_id and "JSON" in by_id["json"].text
    assert by_id["json"].metadata == {"module": "json"}


def test_module_document_reads_docstrings_without_importing(tmp_path: Path) -> None:
    source = tmp_path / "boom.py"
    body = "Explains things. " * 20
    source.write_text(f'"""{body}"""\nraise SystemExit("imported!")\ndef public():\n    """Does X."""\n')
    record = module_document("boom", source)
    assert record is not None and "public: Does X." in str(record["text"])
    assert module_document("_private", source) is None
    (tmp_path / "tiny.py").write_text('"""Short."""\n')
    assert module_document("tiny", tmp_path / "tiny.py") is None
    json.dumps(record)
