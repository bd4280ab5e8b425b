"""The write queue: documents written for the worker to embed (`enqueue`), taken a batch at a time
(`claim`); the worker's `VectorRows.commit_embedded` finishes what `claim` began."""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from search.storage import documents
from search.storage.models import Chunk, Document, DocumentStatus
from search.storage.records import ChunkIn, DocumentIn, WriteResult
from search.storage.store import Store


@dataclass(frozen=True)
class PendingDoc:
    """A document waiting for vectors, with its chunks (None: not chunked yet, as `add` and the API
    leave it) as (chunk id, chunk)."""

    id: int
    external_id: str
    title: str
    text: str
    content_hash: str
    chunks: list[tuple[int, ChunkIn]] | None


@contextmanager
def claim(store: Store, limit: int, skip: Collection[int] = ()) -> Iterator[tuple[Session, list[PendingDoc]]]:
    """Up to `limit` pending documents (but those whose key is in `skip`), in one transaction that
    `commit_embedded` finishes.

    On PostgreSQL the rows stay locked (FOR UPDATE SKIP LOCKED) until then, so concurrent workers
    never take the same document. SQLite has one worker; a document changed meanwhile is caught by
    its content hash when the vectors are committed."""
    with store.session() as s:
        stmt = select(Document).where(Document.status == DocumentStatus.PENDING).order_by(Document.id).limit(limit)
        if skip:
            stmt = stmt.where(Document.id.not_in(list(skip)))
        if store.postgres:
            stmt = stmt.with_for_update(skip_locked=True)
        docs = list(s.scalars(stmt))
        chunks: dict[int, list[tuple[int, ChunkIn]]] = {}
        if docs:
            rows = s.execute(
                select(Chunk.document_id, Chunk.id, Chunk.ordinal, Chunk.text, Chunk.start, Chunk.end)
                .where(Chunk.document_id.in_([d.id for d in docs]))
                .order_by(Chunk.document_id, Chunk.ordinal)
            )
            for doc_id, cid, ordinal, text, start, end in rows:
                chunks.setdefault(doc_id, []).append((cid, ChunkIn(ordinal, text, start, end)))
        yield s, [PendingDoc(d.id, d.external_id, d.title, d.text, d.content_hash, chunks.get(d.id)) for d in docs]


def enqueue(store: Store, docs: Sequence[DocumentIn]) -> tuple[WriteResult, list[str]]:
    """Write documents for the worker to embed (pending, not chunked yet), in one transaction; returns
    what was written and the ids left as they were (same title and text: only their metadata is
    updated, nothing re-embedded). Racing writes of one id may fail on a conflict and can be run
    again whole (`retry_write`)."""
    if not docs:
        return WriteResult(), []
    with store.session(write=True) as s:
        upserted = documents.upsert(s, docs)
    return upserted.result, upserted.unchanged
