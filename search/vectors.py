"""Chunk vectors in SQL, the queue of pending documents, and the tombstones of removed chunks.

The vectors of one embedding space are stored once, beside their chunk rows; the index file is built
from them. So a crash never loses a committed embedding, a change of index type re-embeds nothing,
and several workers (on PostgreSQL) can embed at once while one process at a time publishes."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from search.models import EMBEDDED, INDEXED, PENDING, Chunk, ChunkVector, Document, RemovedChunk
from search.store import ChunkIn, DocumentIn, Store, WriteResult, id_parts, insert_chunks


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


@dataclass(frozen=True)
class Embedded:
    """A document's vectors, ready to commit: for its existing chunk ids, or for new chunks to insert."""

    doc_id: int
    content_hash: str
    chunk_ids: list[int] | None
    chunks: list[ChunkIn]
    vectors: np.ndarray


class VectorRows:
    """The vectors of one embedding space and the bookkeeping around them."""

    def __init__(self, store: Store, space: str, dim: int) -> None:
        self.store = store
        self.space = space
        self.dim = dim
        self.postgres = store.engine.dialect.name == "postgresql"

    @contextmanager
    def claim(self, limit: int) -> Iterator[tuple[Session, list[PendingDoc]]]:
        """Up to `limit` pending documents, in one transaction that `commit_embedded` finishes.

        On PostgreSQL the rows stay locked (FOR UPDATE SKIP LOCKED) until then, so concurrent workers
        never take the same document. SQLite has one worker; a document changed meanwhile is caught by
        its content hash when the vectors are committed."""
        with self.store.session() as s:
            stmt = select(Document).where(Document.status == PENDING).order_by(Document.id).limit(limit)
            if self.postgres:
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

    def commit_embedded(self, s: Session, items: Sequence[Embedded]) -> int:
        """Store the vectors of documents whose content is still what was embedded; returns their number.

        The status update comes first: on SQLite it takes the write lock, so the chunk rows read after
        it cannot vanish before the vectors referring to them are inserted."""
        rows: list[dict[str, object]] = []
        done = 0
        for item in items:
            changed = s.execute(
                update(Document)
                .where(
                    Document.id == item.doc_id,
                    Document.content_hash == item.content_hash,
                    Document.status == PENDING,
                )
                .values(status=EMBEDDED)
                .returning(Document.id)
            ).first()
            if changed is None:
                continue  # replaced or deleted since it was read: its new version is pending again
            done += 1
            ids = item.chunk_ids if item.chunk_ids is not None else insert_chunks(s, item.doc_id, item.chunks)
            rows.extend(self._rows(ids, item.vectors))
        if rows:
            live = set(s.scalars(select(Chunk.id).where(Chunk.id.in_([r["chunk_id"] for r in rows]))))
            self._insert([r for r in rows if r["chunk_id"] in live], s)
        return done

    def write(self, chunk_ids: Sequence[int], vectors: np.ndarray) -> None:
        """Store vectors for existing chunks (an existing vector of the space is kept)."""
        with self.store.session() as s:
            self._insert(self._rows(list(chunk_ids), vectors), s)

    def _rows(self, ids: Sequence[int], vectors: np.ndarray) -> list[dict[str, object]]:
        if len(ids) != len(vectors):
            raise ValueError(f"{len(ids)} chunk ids for {len(vectors)} vectors")
        data = np.ascontiguousarray(vectors, dtype=np.float32)
        return [
            {"chunk_id": int(i), "space": self.space, "vector": data[n].tobytes(), "published": False}
            for n, i in enumerate(ids)
        ]

    def _insert(self, rows: list[dict[str, object]], s: Session) -> None:
        if not rows:
            return
        # A second worker (or a rerun) that embedded the same chunk keeps the first vector.
        dialect = postgresql if self.postgres else sqlite
        s.execute(dialect.insert(ChunkVector).on_conflict_do_nothing(), rows)

    def unpublished(self, s: Session) -> tuple[np.ndarray, np.ndarray]:
        """(chunk ids, vectors) of the space that no published index file holds yet."""
        rows = s.execute(
            select(ChunkVector.chunk_id, ChunkVector.vector).where(
                ChunkVector.space == self.space, ChunkVector.published.is_(False)
            )
        ).all()
        return self._arrays(rows)

    def fetch(self, chunk_ids: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """(chunk ids, vectors) of those of `chunk_ids` that have a vector in the space."""
        rows: list[tuple[int, bytes]] = []
        with self.store.session() as s:
            for part in id_parts(chunk_ids):
                stmt = select(ChunkVector.chunk_id, ChunkVector.vector).where(
                    ChunkVector.space == self.space, ChunkVector.chunk_id.in_(part)
                )
                rows.extend((int(cid), bytes(vec)) for cid, vec in s.execute(stmt))
        return self._arrays(rows)

    def iter_all(self, block: int = 65_536) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Every vector of the space, in blocks of ascending chunk ids (memory stays bounded)."""
        after = -1
        while True:
            with self.store.session() as s:
                rows = s.execute(
                    select(ChunkVector.chunk_id, ChunkVector.vector)
                    .where(ChunkVector.space == self.space, ChunkVector.chunk_id > after)
                    .order_by(ChunkVector.chunk_id)
                    .limit(block)
                ).all()
            if not rows:
                return
            after = int(rows[-1][0])
            yield self._arrays(rows)

    def _arrays(self, rows: Sequence[tuple[int, bytes]]) -> tuple[np.ndarray, np.ndarray]:
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        vectors = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), self.dim)
        return ids, vectors

    def mark_published(self, s: Session, chunk_ids: np.ndarray) -> None:
        """The index file now holds these vectors: mark them, and their documents as indexed."""
        for part in id_parts(chunk_ids.tolist()):
            s.execute(
                update(ChunkVector)
                .where(ChunkVector.space == self.space, ChunkVector.chunk_id.in_(part))
                .values(published=True)
            )
            owners = select(Chunk.document_id).where(Chunk.id.in_(part)).scalar_subquery()
            s.execute(
                update(Document).where(Document.id.in_(owners), Document.status == EMBEDDED).values(status=INDEXED)
            )

    def unpublish_all(self) -> None:
        """Forget what the index file holds (it was lost or is rebuilt from the rows)."""
        with self.store.session() as s:
            s.execute(update(ChunkVector).where(ChunkVector.space == self.space).values(published=False))

    @staticmethod
    def tombstones(s: Session) -> np.ndarray:
        """Chunk ids removed from the store whose vectors may still be in the index file."""
        return np.asarray(list(s.scalars(select(RemovedChunk.chunk_id))), dtype=np.int64)

    @staticmethod
    def clear_tombstones(s: Session, chunk_ids: np.ndarray) -> None:
        """Forget tombstones whose vectors the published index no longer holds."""
        for part in id_parts(chunk_ids.tolist()):
            s.execute(delete(RemovedChunk).where(RemovedChunk.chunk_id.in_(part)))

    def ids(self) -> np.ndarray:
        """Chunk ids that have a vector in the space."""
        with self.store.session() as s:
            stmt = select(ChunkVector.chunk_id).where(ChunkVector.space == self.space)
            return np.asarray(list(s.scalars(stmt)), dtype=np.int64)

    def chunks_without_vectors(self) -> list[int]:
        """Chunk ids of documents past the queue (embedded or indexed) that lack a vector in the space:
        after a model change, or rows written before vectors were stored in SQL."""
        have = select(ChunkVector.chunk_id).where(ChunkVector.space == self.space)
        stmt = (
            select(Chunk.id).join(Document).where(Document.status != PENDING, Chunk.id.not_in(have)).order_by(Chunk.id)
        )
        with self.store.session() as s:
            return list(s.scalars(stmt))

    def pending_count(self) -> int:
        """Documents still waiting for vectors."""
        with self.store.session() as s:
            return int(s.scalar(select(func.count()).select_from(Document).where(Document.status == PENDING)) or 0)


def enqueue(store: Store, docs: Sequence[DocumentIn]) -> tuple[WriteResult, list[str]]:
    """Write documents for the worker to embed (pending, not chunked yet); returns what was written and
    the ids left as they were (same title and text: only their metadata is updated, nothing re-embedded)."""
    stored = store.content_hashes([d.external_id for d in docs]) if docs else {}
    same = [d for d in docs if stored.get(d.external_id) == d.content_hash]
    if same:
        store.update_metadata({d.external_id: d.metadata for d in same})
    changed = [d for d in docs if stored.get(d.external_id) != d.content_hash]
    result = store.write_documents([(d, []) for d in changed]) if changed else WriteResult()
    return result, [d.external_id for d in same]
