"""Files as documents: found in folders (with include and exclude globs), read by the reader of their
type, given the metadata the file system knows. Files that are not read are said, never dropped:
`Skipped` for a type no reader takes (or a glob left out), a rejection for a file that failed.

The metadata every file gets (one owner: `file_facts`): `path` (also its id), `dir` (its folder
relative to the folder indexed, "" at the top), `ext` (its extension, lower case, no dot), `size`
(bytes) and `mtime` (last modified, whole seconds since the Unix epoch: a number, so range filters
such as {"mtime": {"$gte": ...}} work). What the file itself says (front matter, `lang`, pages) is
added beneath: where both name a key, the file system's value is kept."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path, PurePath
from typing import Any

from indexer.ingest.readers import Reader, ReadError, reader_for, supported_suffixes
from search.storage.records import DocumentIn
from search.validation import FieldError, check_document


@dataclass(frozen=True)
class Skipped:
    """A file that was not read, and why: no reader for its type. Not an error (the exit status
    stays 0), but always reported, so that no file is left out unsaid."""

    path: Path
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


def unknown_type(name: str) -> str:
    """The reason a file of an unsupported type is not read, listing the supported ones."""
    suffix = PurePath(name).suffix.lower() or "no extension"
    return f"unknown type ({suffix}); readers exist for {', '.join(supported_suffixes())} and .jsonl"


def walk(folder: Path, include: Sequence[str] = (), exclude: Sequence[str] = ()) -> Iterator[Path]:
    """The files under `folder`, sorted, that match an `include` glob (any, when none is given) and
    no `exclude` glob. A glob is matched against the path relative to `folder` ("*" crosses "/", so
    "*.md" takes Markdown files at every depth) and against the file's name alone."""
    for child in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = child.relative_to(folder).as_posix()
        if include and not _matches(rel, include):
            continue
        if not _matches(rel, exclude):
            yield child


def _matches(rel: str, globs: Sequence[str]) -> bool:
    name = rel.rsplit("/", 1)[-1]
    return any(fnmatchcase(rel, g) or fnmatchcase(name, g) for g in globs)


def file_facts(name: str, size: int, rel: str | None = None, mtime: float | None = None) -> dict[str, Any]:
    """The metadata a file's place gives it: `ext` and `size` always (an upload has no more); `path`
    and `dir` for a file found at `rel` (relative to the folder indexed), `mtime` when known."""
    facts: dict[str, Any] = {"ext": PurePath(name).suffix.lower().lstrip("."), "size": size}
    if rel is not None:
        parent = PurePath(rel).parent.as_posix()
        facts["path"] = rel
        facts["dir"] = "" if parent == "." else parent
    if mtime is not None:
        facts["mtime"] = int(mtime)
    return facts


def read_file(path: Path, rel: str, max_bytes: int) -> DocumentIn | FieldError | str:
    """The file at `path` (known as `rel`) as a document with id `rel`; a FieldError or a reason
    when it cannot be one. Its type must have a reader (see `reader_for`)."""
    reader = reader_for(path.name)
    if reader is None:
        return unknown_type(path.name)
    try:
        stat = path.stat()
        if stat.st_size > max_bytes:
            return f"file of {stat.st_size} bytes exceeds the {max_bytes}-byte limit"
        data = path.read_bytes()
    except OSError as exc:
        return f"cannot read: {exc.strerror or exc}"
    facts = file_facts(path.name, stat.st_size, rel, stat.st_mtime)
    try:
        return document_from_bytes(reader, data, path.name, rel, facts)
    except ReadError as exc:
        return exc.reason
    except FieldError as exc:
        return exc


def document_from_bytes(reader: Reader, data: bytes, name: str, doc_id: str, metadata: Mapping[str, Any]) -> DocumentIn:
    """A file's bytes read by `reader` as a document under `doc_id`: its title is the one the file
    names, else its file name's stem; `metadata` is laid over what the file carries. Every door's
    rules apply (search.validation.check_document). Raises ReadError when the file cannot be read,
    FieldError naming the field a rule refused."""
    extracted = reader.read(data, name)
    title = extracted.title or PurePath(name).stem
    meta = {**extracted.metadata, **metadata}
    doc_id, title, text, meta = check_document(doc_id=doc_id, title=title, text=extracted.text, metadata=meta)
    return DocumentIn(external_id=doc_id, text=text, title=title, metadata=meta)
