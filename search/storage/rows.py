"""Row-level helpers of the write path, each inside a transaction its caller owns: locking, inserting
and deleting document and chunk rows, and id lists cut to what one statement may bind."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple, TypeVar, cast

from sqlalchemy import Table, delete, select, text
from sqlalchemy.orm import Session

from search.storage.bulk import insert_rows
from search.storage.models import Base, Chunk, Document, DocumentStatus, utcnow
from search.storage.records import ChunkIn, DocumentIn

T = TypeVar("T")


def table_of(model: type[Base]) -> Table:
    """The Core table of a model, for executemany statements keyed by column name."""
    return cast(Table, model.__table__)


def document_columns(doc: DocumentIn) -> dict[str, Any]:
    """A document's row values (a write always queues it for embedding again)."""
    return {
        "title": doc.title,
        "text": doc.text,
        "metadata": doc.metadata,
        "content_hash": doc.content_hash,
        "status": DocumentStatus.PENDING,
        "updated_at": utcnow(),
    }


def insert_documents(s: Session, docs: Sequence[DocumentIn]) -> list[int]:
    """Insert new document rows in one executemany; returns their keys in the order given."""
    if not docs:
        return []
    now = utcnow()
    insert_rows(
        s, table_of(Document), [{"external_id": d.external_id, **document_columns(d), "created_at": now} for d in docs]
    )
    keys: dict[str, int] = {}
    for part in parts([d.external_id for d in docs]):
        stmt = select(Document.external_id, Document.id).where(Document.external_id.in_(part))
        keys.update((ext, doc_id) for ext, doc_id in s.execute(stmt))
    return [keys[d.external_id] for d in docs]


class Locked(NamedTuple):
    """A stored document's row key and content hash, read on its locked row."""

    id: int
    content_hash: str


def lock_documents(s: Session, external_ids: Sequence[str]) -> dict[str, Locked]:
    """The rows of the documents that exist among `external_ids`, locked for this transaction (its
    first statement): a writer reads what it then replaces, and another writer's commit in between
    (the worker adding chunks to one of them, a racing write of the same id) must wait, or its chunks
    would be deleted with no entry in the change log, or a decision taken on the content hash read
    would apply to another writer's text. SQLite: the write lock at once (readers carry on, in WAL
    mode); PostgreSQL: the documents' rows."""
    sqlite = s.get_bind().dialect.name == "sqlite"
    if sqlite:
        s.execute(text("BEGIN IMMEDIATE"))
    found: dict[str, Locked] = {}
    for part in parts(external_ids):
        stmt = select(Document.external_id, Document.id, Document.content_hash).where(Document.external_id.in_(part))
        for ext, doc_id, content_hash in s.execute(stmt if sqlite else stmt.with_for_update()):
            found[ext] = Locked(doc_id, content_hash)
    return found


def delete_chunks_of(s: Session, doc_ids: Sequence[int]) -> list[int]:
    """Delete these documents' chunks; returns the keys deleted (for the change log)."""
    out: list[int] = []
    for part in id_parts(doc_ids):
        out += s.scalars(delete(Chunk).where(Chunk.document_id.in_(part)).returning(Chunk.id))
    return out


def insert_chunks_of(s: Session, docs: Sequence[tuple[int, Sequence[ChunkIn]]]) -> list[list[int]]:
    """Insert the chunk rows of several documents in one executemany; returns each document's new
    chunk keys, in the order given. The caller records them in the change log."""
    rows = [
        {"document_id": doc_id, "ordinal": c.ordinal, "text": c.text, "start_char": c.start, "end_char": c.end}
        for doc_id, chunks in docs
        for c in chunks
    ]
    if not rows:
        return [[] for _ in docs]
    insert_rows(s, table_of(Chunk), rows)
    # The documents had no chunks before (new, or their old ones deleted in this transaction).
    keys: dict[int, list[int]] = {}
    for part in id_parts([doc_id for doc_id, _ in docs]):
        stmt = (
            select(Chunk.document_id, Chunk.id)
            .where(Chunk.document_id.in_(part))
            .order_by(Chunk.document_id, Chunk.ordinal)
        )
        for doc_id, chunk_id in s.execute(stmt):
            keys.setdefault(doc_id, []).append(chunk_id)
    return [keys.get(doc_id, []) if chunks else [] for doc_id, chunks in docs]


def parts(items: Sequence[T], size: int = 10_000) -> Iterator[Sequence[T]]:
    """`items` in slices small enough for one IN list (SQLite and PostgreSQL cap bound parameters)."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def id_parts(ids: Sequence[int], size: int = 10_000) -> Iterator[list[int]]:
    """`ids` as plain ints (numpy's are not bound parameters) in slices for one IN list each."""
    for part in parts(ids, size):
        yield [int(i) for i in part]
