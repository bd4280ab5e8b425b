"""Reading documents: every bad record is reported with its file, line and reason; the rest is read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from indexer.ingest.sources import Rejected, read_sources
from search.storage.records import DocumentIn


def _split(records: list[DocumentIn | Rejected]) -> tuple[list[DocumentIn], list[Rejected]]:
    return [r for r in records if isinstance(r, DocumentIn)], [r for r in records if isinstance(r, Rejected)]


def test_jsonl_with_bad_lines(tmp_path: Path) -> None:
    path = tmp_path / "docs.jsonl"
    lines = [
        json.dumps({"id": "a", "title": "A", "text": "first", "metadata": {"k": 1}}).encode(),
        b'{"id": "b", "text": "unterminated',
        json.dumps({"_id": 7, "text": "beir style id"}).encode(),
        json.dumps({"id": "c", "text": 42}).encode(),
        json.dumps({"text": "no id"}).encode(),
        json.dumps({"id": "d", "text": "   "}).encode(),
        b'{"id": "e", "text": "bad \xff byte"}',
        json.dumps(["not", "an", "object"]).encode(),
        b"",
        json.dumps({"id": "a", "text": "duplicate of line 1"}).encode(),
        json.dumps({"id": "f", "text": "metadata list", "metadata": [1]}).encode(),
        json.dumps({"id": "g", "text": "x" * 2000}).encode(),
        json.dumps({"id": "h", "title": "H", "text": "last good"}).encode(),
    ]
    path.write_bytes(b"\n".join(lines) + b"\n")
    docs, rejected = _split(list(read_sources([path], max_bytes=1000)))
    assert [d.external_id for d in docs] == ["a", "7", "h"]
    assert docs[0] == DocumentIn("a", "first", "A", {"k": 1})
    reasons = {r.line: r.reason for r in rejected}
    assert all(r.path == path for r in rejected)
    assert "malformed JSON" in reasons[2]
    assert reasons[4] == "text: must be a string, got int"
    assert reasons[5] == "id: is required (as 'id' or '_id')"
    assert reasons[6] == "text: is blank: there is nothing to embed"
    assert "not UTF-8" in reasons[7]
    assert "JSON object" in reasons[8]
    assert "duplicate id 'a'" in reasons[10] and f"{path}:1" in reasons[10]
    assert reasons[11] == "metadata: must be a JSON object, got list"
    assert "exceeds the 1000-byte limit" in reasons[12]
    assert str(rejected[0]).startswith(f"{path}:2: ")


def test_records_the_api_would_refuse_are_rejected_naming_the_field(tmp_path: Path) -> None:
    # What the API answers with a 422 never reaches the store through the CLI either (search.validation).
    path = tmp_path / "docs.jsonl"
    lines = [
        '{"id": "nan", "text": "fine", "metadata": {"score": NaN}}',  # Python's json reads NaN, as the API's does
        json.dumps({"id": "nul", "text": "a\x00b"}),
        json.dumps({"id": "i" * 600, "text": "fine"}),
        json.dumps({"id": "good", "text": "fine", "metadata": {"score": 0.5}}),
    ]
    path.write_text("\n".join(lines) + "\n")
    docs, rejected = _split(list(read_sources([path])))
    assert docs == [DocumentIn("good", "fine", "", {"score": 0.5})]
    assert [(r.line, r.field) for r in rejected] == [(1, "metadata.score"), (2, "text"), (3, "id")]
    assert [str(r) for r in rejected] == [
        f"{path}:1: metadata.score: nan is not a finite number (JSON has no NaN or Infinity)",
        f"{path}:2: text: holds a NUL character at position 1, which the database cannot store",
        f"{path}:3: id: has 600 characters; it must have 1 to 512",
    ]


def test_a_record_nested_too_deep_is_rejected_naming_the_depth(tmp_path: Path) -> None:
    # json.loads raised RecursionError on it, which stopped the whole run.
    path = tmp_path / "docs.jsonl"
    deep = '{"id": "deep", "text": "fine", "metadata": {"x": ' + "[" * 1000 + "]" * 1000 + "}}"
    path.write_text(deep + "\n" + json.dumps({"id": "good", "text": "fine"}) + "\n")
    docs, rejected = _split(list(read_sources([path])))
    assert [d.external_id for d in docs] == ["good"]
    assert [str(r) for r in rejected] == [
        f"{path}:1: record: JSON nested deeper than 64 levels of arrays and objects (1002 levels)"
    ]


def test_a_text_file_the_api_would_refuse_is_rejected(tmp_path: Path) -> None:
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "binary.txt").write_bytes(b"looks like text\x00but is not")
    (folder / "long-title.md").write_text("# " + "t" * 5000 + "\n\nbody\n")
    (folder / "good.md").write_text("# Good\n\nbody\n")
    docs, rejected = _split(list(read_sources([folder])))
    assert [d.external_id for d in docs] == ["good.md"]
    assert {r.path.name: (r.line, r.field) for r in rejected} == {
        "binary.txt": (None, "text"),
        "long-title.md": (None, "title"),
    }
    reason = "text: holds a NUL character at position 15, which the database cannot store"
    assert str(rejected[0]) == f"{folder / 'binary.txt'}: {reason}"


def test_folder_of_text_files_and_beir_directory(tmp_path: Path) -> None:
    folder = tmp_path / "notes"
    (folder / "sub").mkdir(parents=True)
    (folder / "intro.md").write_text("# Getting started\n\nInstall it.\n")
    (folder / "sub" / "plain.txt").write_text("just text")
    (folder / "empty.txt").write_text("")
    (folder / "image.png").write_bytes(b"\x89PNG")
    (folder / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    docs, rejected = _split(list(read_sources([folder])))
    assert {d.external_id: d.title for d in docs} == {"intro.md": "Getting started", "sub/plain.txt": "plain"}
    assert {r.path.name: r.reason for r in rejected} == {
        "empty.txt": "text: is blank: there is nothing to embed",
        "latin1.txt": "not UTF-8 (byte 3)",
    }

    beir = tmp_path / "beir"
    beir.mkdir()
    (beir / "corpus.jsonl").write_text(json.dumps({"_id": "d1", "title": "T", "text": "abstract"}) + "\n")
    (beir / "queries.jsonl").write_text(json.dumps({"_id": "q1", "text": "not a document"}) + "\n")
    docs, rejected = _split(list(read_sources([beir])))
    assert [d.external_id for d in docs] == ["d1"] and not rejected


def test_missing_and_unreadable_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    locked = tmp_path / "locked.jsonl"
    locked.write_text('{"id": "x", "text": "y"}\n')
    real_open = Path.open

    def refuse(self: Path, *args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        if self == locked:
            raise PermissionError(13, "Permission denied")
        return real_open(self, *args, **kwargs)  # type: ignore[arg-type]

    # Tests run as root here, where chmod 0 does not stop a read; refuse the open instead.
    monkeypatch.setattr(Path, "open", refuse)
    good = tmp_path / "good.jsonl"
    good.write_text('{"id": "g", "text": "fine"}\n')
    records = list(read_sources([tmp_path / "absent.jsonl", locked, good]))
    assert [str(r) for r in records[:2]] == [
        f"{tmp_path / 'absent.jsonl'}: no such file or directory",
        f"{locked}: cannot read: Permission denied",
    ]
    assert records[2] == DocumentIn("g", "fine")
