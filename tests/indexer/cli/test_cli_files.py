"""`semsearch index DIR` on a folder of real documents, as a new user tries it: every file is either
indexed or listed with why not, the metadata the files give is filterable, PDF hits name their page,
and Markdown hits are plain text whose offsets point into the text the store serves."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from sample_files import HTML, MARKDOWN, PAGE_ONE, PAGE_TWO, docx_bytes, pdf_bytes

from indexer.cli.main import main
from search.components import open_store
from search.settings import Settings

MTIME = 1_700_000_000


@pytest.fixture
def folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tiny_model_dir: Path) -> Path:
    monkeypatch.setenv("SEMSEARCH_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("SEMSEARCH_MODEL", str(tiny_model_dir))
    monkeypatch.setenv("SEMSEARCH_DTYPE", "float32")
    monkeypatch.setenv("SEMSEARCH_BACKEND", "torch")
    docs = tmp_path / "docs"
    (docs / "hr").mkdir(parents=True)
    files = {
        "hr/leave.md": MARKDOWN.encode(),
        "travel.docx": docx_bytes(),
        # Pages long enough for several chunks each: a chunk's page is where it starts.
        "q3.pdf": pdf_bytes((" ".join([PAGE_ONE] * 40), " ".join([PAGE_TWO] * 40))),
        "billing.html": HTML.encode(),
        "logo.png": b"\x89PNG\r\n",
    }
    for rel, data in files.items():
        (docs / rel).write_bytes(data)
        os.utime(docs / rel, (MTIME, MTIME))
    return docs


def _search(capsys: pytest.CaptureFixture[str], query: str, *flags: str) -> list[dict[str, object]]:
    capsys.readouterr()
    assert main(["search", query, "--json", *flags]) == 0
    hits: list[dict[str, object]] = json.loads(capsys.readouterr().out)
    return hits


def test_every_file_is_indexed_or_listed_with_its_reason(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (folder / "broken.pdf").write_bytes(b"%PDF-1.4 garbage")
    # A file of a known type that fails is an error (exit 1); a file of an unknown type is not.
    assert main(["index", str(folder), "--json"]) == 1
    out, err = capsys.readouterr()
    summary = json.loads(out)
    assert (summary["documents"], summary["rejected"], summary["skipped"]) == (4, 1, 1)
    [skipped] = summary["skipped_files"]
    assert skipped["path"] == str(folder / "logo.png") and skipped["reason"].startswith("unknown type (.png)")
    assert (
        [line for line in err.splitlines() if line.startswith("rejected ")]
        == [
            line
            for line in err.splitlines()
            if line.startswith(f"rejected {folder / 'broken.pdf'}: not a readable PDF")
        ]
        != []
    )

    assert main(["index", str(folder), "--exclude", "broken.pdf"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "0 rejected, 1 skipped" in out[0]
    assert out[1].startswith(f"  skipped {folder / 'logo.png'}: unknown type (.png); readers exist for .docx")


def test_file_metadata_filters_pages_and_offsets(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["index", str(folder), "--include", "*.md", "--include", "*.pdf", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["documents"], summary["skipped"], summary["rejected"]) == (2, 0, 0)

    [hit] = _search(capsys, "leave", "--filter", '{"team": "hr", "year": {"$gte": 2024}}')
    assert hit["id"] == "hr/leave.md" and hit["title"] == "Leave policy" and hit["page"] is None
    # The snippet is plain text, and its offsets point into the text the store serves.
    text = str(hit["text"])
    assert "#" not in text and "**" not in text and "](" not in text and "25 days of paid leave" in text
    store = open_store(Settings())
    served = store.get_document("hr/leave.md")
    store.close()
    assert served is not None and served.text[int(str(hit["start"])) : int(str(hit["end"]))] == text

    hits = _search(capsys, "helium valves", "--mode", "keyword", "--filter", '{"ext": "pdf", "dir": ""}')
    assert [(h["id"], h["page"]) for h in hits] == [("q3.pdf", 2)]
    assert [h["id"] for h in _search(capsys, "leave", "--filter", f'{{"mtime": {{"$gt": {MTIME}}}}}')] == []
    assert {h["id"] for h in _search(capsys, "leave", "--filter", f'{{"mtime": {{"$gte": {MTIME}}}}}')} == {
        "hr/leave.md",
        "q3.pdf",
    }


def test_add_lists_skipped_files_too(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["add", str(folder), "--exclude", "*.docx", "--json"]) == 0
    out, err = capsys.readouterr()
    summary = json.loads(out)
    assert (summary["added"], summary["rejected"], summary["skipped"]) == (3, 0, 1)
    assert [s["path"] for s in summary["skipped_files"]] == [str(folder / "logo.png")]
    assert f"skipped {folder / 'logo.png'}: unknown type (.png)" in err
