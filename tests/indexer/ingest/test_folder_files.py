"""A folder of real documents: every file a reader takes is read with the metadata its place gives
it, every other file is skipped and said, a file of a known type that fails is rejected with why,
and --include/--exclude choose the files."""

from __future__ import annotations

import os
from pathlib import Path

from sample_files import HTML, MARKDOWN, MARKDOWN_TEXT, docx_bytes, encrypted_pdf, image_only_pdf, pdf_bytes

from indexer.ingest.files import Skipped
from indexer.ingest.sources import Rejected, read_sources
from search.storage.records import DocumentIn

MTIME = 1_700_000_000


def _docs_folder(root: Path) -> Path:
    folder = root / "company-docs"
    (folder / "policies" / "hr").mkdir(parents=True)
    (folder / "reports").mkdir()
    files = {
        "policies/hr/leave.md": MARKDOWN.encode(),
        "policies/travel.docx": docx_bytes(),
        "reports/q3.pdf": pdf_bytes(),
        "index.html": HTML.encode(),
        "notes.txt": b"plain notes",
        "logo.png": b"\x89PNG\r\n",
        "Makefile": b"all:\n",
        "reports/scan.pdf": image_only_pdf(),
        "reports/locked.pdf": encrypted_pdf(),
        "reports/broken.pdf": b"%PDF-1.4 garbage",
    }
    for rel, data in files.items():
        (folder / rel).write_bytes(data)
        os.utime(folder / rel, (MTIME, MTIME))
    return folder


def _split(folder: Path, **globs: list[str]) -> tuple[dict[str, DocumentIn], dict[str, str], dict[str, str]]:
    records = list(read_sources([folder], **globs))  # type: ignore[arg-type]
    docs = {r.external_id: r for r in records if isinstance(r, DocumentIn)}
    skipped = {s.path.relative_to(folder).as_posix(): s.reason for s in records if isinstance(s, Skipped)}
    rejected = {r.path.relative_to(folder).as_posix(): r.reason for r in records if isinstance(r, Rejected)}
    return docs, skipped, rejected


def test_a_folder_of_documents_is_read_skipped_or_rejected_file_by_file(tmp_path: Path) -> None:
    folder = _docs_folder(tmp_path)
    docs, skipped, rejected = _split(folder)
    assert sorted(docs) == ["index.html", "notes.txt", "policies/hr/leave.md", "policies/travel.docx", "reports/q3.pdf"]
    supported = ".docx, .htm, .html, .markdown, .md, .pdf, .rst, .text, .txt, .xhtml and .jsonl"
    assert skipped == {
        "Makefile": f"unknown type (no extension); readers exist for {supported}",
        "logo.png": f"unknown type (.png); readers exist for {supported}",
    }
    assert rejected == {
        "reports/broken.pdf": rejected["reports/broken.pdf"],
        "reports/locked.pdf": "encrypted PDF: it needs a password to be read",
        "reports/scan.pdf": "PDF of 1 pages without a text layer (scanned images?): run OCR on it first",
    }
    assert rejected["reports/broken.pdf"].startswith("not a readable PDF")

    leave = docs["policies/hr/leave.md"]
    assert (leave.title, leave.text) == ("Leave policy", MARKDOWN_TEXT)
    size = len(MARKDOWN.encode())
    assert leave.metadata == {
        "title": "Leave policy",
        "team": "hr",
        "year": 2024,
        "reviewed": "2024-03-01",
        "tags": ["leave", "holidays"],
        "path": "policies/hr/leave.md",
        "dir": "policies/hr",
        "ext": "md",
        "size": size,
        "mtime": MTIME,
    }
    assert docs["index.html"].metadata["dir"] == "" and docs["index.html"].metadata["lang"] == "fr"
    assert docs["index.html"].title == "Billing migration"
    assert docs["policies/travel.docx"].title == "Travel policy"
    report = docs["reports/q3.pdf"]
    assert report.metadata["pages"] == 2 and report.metadata["ext"] == "pdf" and report.title == "Field guide"
    assert docs["notes.txt"].title == "notes"


def test_front_matter_cannot_hide_the_files_place(tmp_path: Path) -> None:
    # The file system's keys win where front matter names the same: `path` is the document's identity.
    (tmp_path / "a.md").write_text("---\npath: elsewhere.md\nsize: huge\nteam: ops\n---\nbody\n")
    [doc] = read_sources([tmp_path])
    assert isinstance(doc, DocumentIn)
    assert (doc.metadata["path"], doc.metadata["size"], doc.metadata["team"]) == ("a.md", 53, "ops")


def test_front_matter_the_api_would_refuse_is_rejected_naming_the_key(tmp_path: Path) -> None:
    (tmp_path / "deep.md").write_text("---\nscore: .nan\n---\nbody\n")
    [record] = read_sources([tmp_path])
    assert isinstance(record, Rejected) and record.field == "metadata.score"


def test_include_and_exclude_globs(tmp_path: Path) -> None:
    folder = _docs_folder(tmp_path)
    docs, skipped, rejected = _split(folder, include=["*.md", "*.docx"])
    assert sorted(docs) == ["policies/hr/leave.md", "policies/travel.docx"] and not skipped and not rejected
    docs, skipped, rejected = _split(folder, exclude=["reports/*", "*.png", "Makefile"])
    assert sorted(docs) == ["index.html", "notes.txt", "policies/hr/leave.md", "policies/travel.docx"]
    assert not skipped and not rejected
    docs, _, _ = _split(folder, include=["policies/*"], exclude=["*.docx"])
    assert sorted(docs) == ["policies/hr/leave.md"]


def test_a_file_named_outright_is_read_by_its_type(tmp_path: Path) -> None:
    path = tmp_path / "q3.pdf"
    path.write_bytes(pdf_bytes())
    [doc] = read_sources([path])
    assert isinstance(doc, DocumentIn) and doc.external_id == "q3.pdf"
    assert doc.metadata["path"] == "q3.pdf" and doc.metadata["dir"] == ""
