"""Reading documents from JSON Lines, BEIR corpora and folders of files, rejecting bad records by place.

Files of every type a reader takes (indexer/ingest/readers/) are read through indexer/ingest/files.py;
a file of another type found in a folder is `Skipped`, and said.

Every record must pass the rules the API applies (search.validation.check_document): what the CLI
indexes, a PUT would have stored, and what it refuses, the API refuses naming the same field."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from indexer.ingest.files import Skipped, read_file, unknown_type, walk
from indexer.ingest.readers import reader_for
from search.json_input import loads
from search.storage.records import DocumentIn
from search.validation import FieldError, check_document

JSONL_SUFFIXES = {".jsonl", ".ndjson"}
# A larger record is almost always a mistake (a binary, a dump); it is reported, not read. The text's
# own limit (search.validation.MAX_DOCUMENT_CHARS) applies to what is read.
MAX_DOCUMENT_BYTES = 10 * 1024 * 1024


@dataclass(frozen=True)
class Rejected:
    """A record that was not indexed: where it was and why; `field` names the part of the document
    that broke a rule ("metadata.year"), None when the record could not be read as a document at all."""

    path: Path
    line: int | None
    reason: str
    field: str | None = None

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line is not None else str(self.path)
        return f"{where}: {self.reason}"


Record = DocumentIn | Rejected | Skipped
# Internally every record travels with its place: (file, line or None, document or the reason it failed).
_Placed = tuple[Path, int | None, DocumentIn | FieldError | str] | Skipped


def read_sources(
    paths: Iterable[Path],
    max_bytes: int = MAX_DOCUMENT_BYTES,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
) -> Iterator[Record]:
    """Documents from every path in turn; a repeated id within one run is rejected after its first use.
    In folders, only files matching an `include` glob (when any is given) and no `exclude` glob are
    read (see indexer.ingest.files.walk); a file named outright is always read."""
    seen: dict[str, str] = {}
    for path in paths:
        for placed in _read_path(Path(path), max_bytes, include, exclude):
            if isinstance(placed, Skipped):
                yield placed
                continue
            where, line, record = placed
            if isinstance(record, FieldError):
                yield Rejected(where, line, str(record), record.field)
                continue
            if isinstance(record, str):
                yield Rejected(where, line, record)
                continue
            place = f"{where}:{line}" if line is not None else str(where)
            first = seen.setdefault(record.external_id, place)
            if first != place:
                yield Rejected(where, line, f"duplicate id {record.external_id!r} (first seen at {first})")
                continue
            yield record


def _read_path(path: Path, max_bytes: int, include: Sequence[str], exclude: Sequence[str]) -> Iterator[_Placed]:
    if path.is_dir():
        beir = path / "corpus.jsonl"
        if beir.is_file():
            yield from read_jsonl(beir, max_bytes)
            return
        for child in walk(path, include, exclude):
            if child.suffix.lower() in JSONL_SUFFIXES:
                yield from read_jsonl(child, max_bytes)
            elif reader_for(child.name) is not None:
                yield child, None, read_file(child, child.relative_to(path).as_posix(), max_bytes)
            else:
                yield Skipped(child, unknown_type(child.name))
    elif not path.exists():
        yield path, None, "no such file or directory"
    elif path.suffix.lower() not in JSONL_SUFFIXES and reader_for(path.name) is not None:
        yield path, None, read_file(path, path.name, max_bytes)
    else:
        # A file named outright of no known type is read as JSON Lines (corpora often end in .json or nothing).
        yield from read_jsonl(path, max_bytes)


def read_jsonl(path: Path, max_bytes: int = MAX_DOCUMENT_BYTES) -> Iterator[_Placed]:
    """One document per line: `id` or `_id`, `text`, optional `title` and `metadata`."""
    try:
        handle = path.open("rb")
    except OSError as exc:
        yield path, None, f"cannot read: {exc.strerror or exc}"
        return
    with handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            if len(raw) > max_bytes:
                yield path, number, f"record of {len(raw)} bytes exceeds the {max_bytes}-byte limit"
                continue
            yield path, number, _parse_line(raw)


def _parse_line(raw: bytes) -> DocumentIn | FieldError | str:
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"not UTF-8 (byte {exc.start})"
    try:
        obj = loads(line, "record")
    except json.JSONDecodeError as exc:
        return f"malformed JSON: {exc.msg} at column {exc.colno}"
    except FieldError as exc:  # nested too deep
        return exc
    if not isinstance(obj, dict):
        return f"expected a JSON object, got {type(obj).__name__}"
    try:
        return document_from_mapping(obj)
    except FieldError as exc:
        return exc


def document_from_mapping(obj: dict[str, Any]) -> DocumentIn:
    """One JSON record as a document, by the rules every door applies; raises FieldError naming the
    faulty field. Two conventions of JSON Lines corpora are read first: the id may be `_id` (BEIR)
    and an integer, and a null title or metadata counts as absent."""
    doc_id = obj.get("id", obj.get("_id"))
    if isinstance(doc_id, int) and not isinstance(doc_id, bool):
        doc_id = str(doc_id)
    if doc_id is None:
        raise FieldError("id", "is required (as 'id' or '_id')")
    title = "" if obj.get("title") is None else obj["title"]
    metadata = {} if obj.get("metadata") is None else obj["metadata"]
    doc_id, title, text, metadata = check_document(doc_id=doc_id, title=title, text=obj.get("text"), metadata=metadata)
    return DocumentIn(external_id=doc_id, text=text, title=title, metadata=metadata)
