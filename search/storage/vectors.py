"""Chunk vectors in SQL (the queue of documents waiting for them is search/work/queue.py).

The vectors of one embedding space are stored once, beside their chunk rows, and each arrival is
recorded in the change log; the index files are built from them. So a crash never loses a committed
embedding, a change of index type re-embeds nothing, readers catch up from the log, and several
workers (on PostgreSQL) can embed at once."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from sqlalchemy import and_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from search.filters import MetadataFilter
from search.storage import changes, metadata_index, reads
from search.storage.models import Chunk, ChunkVector, Document, DocumentStatus
from search.storage.records import ChunkIn, ChunkOwner
from search.storage.rows import id_parts, insert_chunks_of, parts
from search.storage.store import Store


@dataclass(frozen=True)
class Embedded:
    """A document's vectors, ready to commit: for its existing chunk ids, or for new chunks to insert."""

    doc_id: int
    content_hash: str
    chunk_ids: list[int] | None
    chunks: list[ChunkIn]
    vectors: np.ndarray


@dataclass(frozen=True)
class Matches:
    """The chunks a filter passes: their ids (ascending) and, when they are few, their vectors in
    the space, row for row (then `ids` are those of the passing chunks embedded in the space), and
    each one's document, read in the same lookup (so ranking them needs no second one)."""

    ids: np.ndarray
    vectors: np.ndarray | None = None
    owners: Mapping[int, ChunkOwner] | None = None


@dataclass(frozen=True)
class FewMatches:
    """The few chunks a narrow filter passes, from one lookup that serves both retrievers: every
    passing chunk's id (`ids`, ascending, for the keyword one) and those embedded in the space with
    their vectors (`embedded`, for the dense one)."""

    ids: np.ndarray
    embedded: Matches

    @property
    def owners(self) -> Mapping[int, ChunkOwner]:
        """The document of each passing chunk."""
        assert self.embedded.owners is not None
        return self.embedded.owners


class VectorRows:
    """The vectors of one embedding space and the bookkeeping around them."""

    def __init__(self, store: Store, space: str, dim: int) -> None:
        self.store = store
        self.space = space
        self.dim = dim
        self.postgres = store.engine.dialect.name == "postgresql"

    def commit_embedded(self, s: Session, items: Sequence[Embedded]) -> int:
        """Store the vectors of documents whose content is still what was embedded; returns their number.

        The status update comes first: on SQLite it takes the write lock, so the chunk rows read after
        it cannot vanish before the vectors referring to them are inserted."""
        kept: list[Embedded] = []
        for item in items:
            changed = s.execute(
                update(Document)
                .where(
                    Document.id == item.doc_id,
                    Document.content_hash == item.content_hash,
                    Document.status == DocumentStatus.PENDING,
                )
                .values(status=DocumentStatus.INDEXED)
                .returning(Document.id)
            ).first()
            if changed is not None:  # else replaced or deleted since it was read: its new version is pending
                kept.append(item)
        fresh = [item for item in kept if item.chunk_ids is None]
        inserted = iter(insert_chunks_of(s, [(item.doc_id, item.chunks) for item in fresh]))
        rows: list[dict[str, object]] = []
        added: list[int] = []
        for item in kept:
            ids = item.chunk_ids
            if ids is None:
                ids = next(inserted)
                added.extend(ids)
            rows.extend(self._rows(ids, item.vectors))
        live: set[int] = set()
        for part in parts([r["chunk_id"] for r in rows]):
            live.update(s.scalars(select(Chunk.id).where(Chunk.id.in_(part))))
        changes.append(s, changes.Op.ADD, added)
        self._insert([r for r in rows if r["chunk_id"] in live], s)
        return len(kept)

    def write(self, chunk_ids: Sequence[int], vectors: np.ndarray) -> None:
        """Store vectors for existing chunks (an existing vector of the space is kept)."""
        with self.store.session() as s:
            self._insert(self._rows(list(chunk_ids), vectors), s)

    def _rows(self, ids: Sequence[int], vectors: np.ndarray) -> list[dict[str, object]]:
        if len(ids) != len(vectors):
            raise ValueError(f"{len(ids)} chunk ids for {len(vectors)} vectors")
        data = np.ascontiguousarray(vectors, dtype=np.float32)
        return [{"chunk_id": int(i), "space": self.space, "vector": data[n].tobytes()} for n, i in enumerate(ids)]

    def _insert(self, rows: list[dict[str, object]], s: Session) -> None:
        """Insert vectors and log the ones that were new: a second worker (or a rerun) that embedded the
        same chunk keeps the first vector, and the log records each vector once."""
        if not rows:
            return
        dialect = postgresql if self.postgres else sqlite
        stmt = dialect.insert(ChunkVector).on_conflict_do_nothing().returning(ChunkVector.chunk_id)
        new = [int(cid) for part in parts(rows) for cid in s.scalars(stmt, list(part))]
        changes.append(s, changes.Op.VEC, sorted(new), self.space)

    def vectors_since(
        self, s: Session, after: int, limit: int = 50_000
    ) -> tuple[list[changes.Entry], dict[int, bytes]]:
        """The log entries after `after` that matter to this space ("vec" of the space, "del"), and the
        vectors of their "vec" entries whose chunks still exist (a deleted chunk's vector is gone)."""
        entries = changes.read(s, after, limit, ops=(changes.Op.VEC, changes.Op.DEL), space=self.space)
        wanted = [e.chunk_id for e in entries if e.op is changes.Op.VEC]
        found: dict[int, bytes] = {}
        for part in id_parts(wanted):
            stmt = select(ChunkVector.chunk_id, ChunkVector.vector).where(
                ChunkVector.space == self.space, ChunkVector.chunk_id.in_(part)
            )
            found.update((int(cid), bytes(vec)) for cid, vec in s.execute(stmt))
        return entries, found

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

    def document_vectors(self, chunk_ids: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """(one of `chunk_ids` per row, a vector) for every chunk embedded in the space of the
        documents that `chunk_ids` belong to: what each document's own cosine is the best of."""
        stmt = reads.document_vectors(self.store.postgres)
        rows = self.store.by_ids(stmt, chunk_ids, space=self.space)
        return self._arrays([(int(cid), bytes(vec)) for cid, vec in rows])

    def matching_vectors(self, check: MetadataFilter, limit: int) -> FewMatches | None:
        """The chunks passing `check`, their documents, and the vectors of those embedded in the
        space, in one query when at most `limit` pass; None when more do (a narrow filter then needs
        its ids alone)."""
        joined = and_(ChunkVector.chunk_id == Chunk.id, ChunkVector.space == self.space)
        stmt = (
            select(Chunk.id, Document.external_id, ChunkVector.vector)
            .join(Document, Document.id == Chunk.document_id)
            .outerjoin(ChunkVector, joined)
            .where(metadata_index.chunk_condition(check, self.store.postgres))
            .limit(limit + 1)
        )
        # Sorted here, not in SQL: there the sort would copy every vector into a temporary tree.
        with self.store.engine.connect() as connection:
            rows = sorted((int(cid), str(doc), vec) for cid, doc, vec in connection.execute(stmt))
        if len(rows) > limit:
            return None
        ids = np.fromiter((cid for cid, _, _ in rows), dtype=np.int64, count=len(rows))
        owners = {cid: ChunkOwner(doc, None) for cid, doc, _ in rows}
        embedded = self._arrays([(cid, bytes(vec)) for cid, _, vec in rows if vec is not None])
        return FewMatches(ids, Matches(*embedded, owners=owners))

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
            select(Chunk.id)
            .join(Document)
            .where(Document.status != DocumentStatus.PENDING, Chunk.id.not_in(have))
            .order_by(Chunk.id)
        )
        with self.store.session() as s:
            return list(s.scalars(stmt))
