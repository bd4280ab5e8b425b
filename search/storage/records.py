"""What the store takes and gives: documents and chunks as submitted, chunks as search shows them,
and what a write changed."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, NamedTuple


@dataclass(frozen=True)
class DocumentIn:
    """A document as submitted: the user's id, title, text and metadata."""

    external_id: str
    text: str
    title: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def content_hash(self) -> str:
        """Hash of what is embedded (title and text); a metadata change alone needs no new vectors."""
        digest = hashlib.sha256()
        digest.update(self.title.encode("utf-8", "surrogatepass"))
        digest.update(b"\x00")
        digest.update(self.text.encode("utf-8", "surrogatepass"))
        return digest.hexdigest()


@dataclass(frozen=True)
class ChunkIn:
    """A span of a document: its place among the document's chunks and its character offsets."""

    ordinal: int
    text: str
    start: int
    end: int


@dataclass(frozen=True)
class ChunkHit:
    """A chunk as search results show it, with its document's fields."""

    chunk_id: int
    document_id: str
    title: str
    text: str
    start: int
    end: int
    metadata: dict[str, Any]


class ChunkOwner(NamedTuple):
    """A chunk's document as ranking sees it: the user's id, and its metadata where a check needs it."""

    document_id: str
    metadata: dict[str, Any] | None


@dataclass
class WriteResult:
    """What one `write_documents` call changed."""

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    new_chunk_ids: list[int] = field(default_factory=list)
    removed_chunk_ids: list[int] = field(default_factory=list)
    # (document key, its new chunk keys), in the order the documents were given.
    written: list[tuple[int, list[int]]] = field(default_factory=list)
