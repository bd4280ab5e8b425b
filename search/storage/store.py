"""Documents, chunks and index bookkeeping in SQL (SQLite by default, PostgreSQL through psycopg)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import numpy as np
from sqlalchemy import Row, delete, func, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from search.filters import MetadataFilter
from search.storage import changes, documents, metadata_index, reads, schema
from search.storage.bulk import ids_value
from search.storage.db import make_engine
from search.storage.disk import writes_in_thread
from search.storage.models import Chunk, Document, GenerationState, IndexGeneration
from search.storage.outage import CommitUnknownError, classify, outage_of
from search.storage.owners import OwnerCache
from search.storage.records import ChunkHit, ChunkIn, ChunkOwner, DocumentIn, WriteResult
from search.storage.rows import (
    delete_chunks_of,
    id_parts,
    lock_documents,
)


class Store:
    """The metadata store. The SQL rows are the source of truth; the vector index follows them."""

    def __init__(self, url: str, upgrade: bool = True, deployment: bool = True) -> None:
        """Open the store at `url`; with `upgrade`, its schema is first brought to the newest revision
        (tests and one-off tools). A process migrates once as it starts (search.components.migrate)
        and opens its stores with search.components.open_store, which checks the schema instead.
        `deployment` is False for a collection's own database (search/collections/placement.py),
        which holds no deployment-wide tables."""
        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        self.url = url
        self.deployment = deployment
        self.engine = make_engine(url, collection=not deployment)
        self.postgres = self.engine.dialect.name == "postgresql"
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._full_disk = outage_of(self.engine).disk
        self.owners = OwnerCache()  # chunk -> document, for ranking without a query per chunk
        if upgrade:
            self.upgrade()

    def upgrade(self) -> None:
        """Bring the schema to the newest Alembic revision (idempotent; see `schema.upgrade`)."""
        schema.upgrade(self.engine, self.url, self.deployment)

    def require_current_schema(self) -> None:
        """Check, without migrating, that the schema is the newest (see `schema.require_current`)."""
        schema.require_current(self.engine, self.url, self.deployment)

    @contextmanager
    def session(self, write: bool = False) -> Iterator[Session]:
        """A session whose transaction commits on success and rolls back on error. With `write`, a
        COMMIT that the database's going away interrupted is a CommitUnknownError: the client was
        answered nothing, so it cannot know whether the write was kept. A write committed ends a
        full disk of the database (search.storage.disk)."""
        committing = False
        writes = writes_in_thread()
        try:
            with self._sessions.begin() as session:
                yield session
                session.flush()  # an error from here on is the COMMIT's, and only the COMMIT's
                committing = True
        except DBAPIError as exc:
            failure = classify(exc) if committing and write else None
            if failure is not None and failure.kind == "unavailable":
                raise CommitUnknownError(failure) from exc
            raise
        if writes_in_thread() != writes:
            self._full_disk.stored()

    def close(self) -> None:
        """Release pooled connections."""
        self.engine.dispose()

    def get_document(self, external_id: str) -> Document | None:
        """One document by the user's id, or None."""
        with self.session() as s:
            return s.scalars(select(Document).where(Document.external_id == external_id)).first()

    def statuses(self, external_ids: Sequence[str]) -> dict[str, str]:
        """The indexing status of each of `external_ids` that exists."""
        with self.session() as s:
            rows = s.execute(
                select(Document.external_id, Document.status).where(Document.external_id.in_(external_ids))
            )
            return {ext: status for ext, status in rows}

    def list_documents(self, offset: int, limit: int) -> tuple[int, list[Document]]:
        """(number of documents, the page of `limit` from `offset` in the order first written)."""
        with self.session() as s:
            total = int(s.scalar(select(func.count()).select_from(Document)) or 0)
            page = list(s.scalars(select(Document).order_by(Document.id).offset(offset).limit(limit)))
        return total, page

    def content_hashes(self, external_ids: Sequence[str]) -> dict[str, str]:
        """The stored content hash of each of `external_ids` that exists."""
        with self.session() as s:
            rows = s.execute(
                select(Document.external_id, Document.content_hash).where(Document.external_id.in_(external_ids))
            )
            return {ext: h for ext, h in rows}

    def write_documents(self, docs: Sequence[tuple[DocumentIn, Sequence[ChunkIn]]]) -> WriteResult:
        """Insert or replace documents with their chunks, in one transaction (`documents.write_documents`)."""
        with self.session(write=True) as s:
            return documents.write_documents(s, docs)

    def update_metadata(self, updates: dict[str, dict[str, Any]]) -> None:
        """Replace the metadata of existing documents (no new vectors needed)."""
        with self.session(write=True) as s:
            documents.update_metadata(s, updates)

    def delete_documents(self, external_ids: Sequence[str]) -> tuple[list[str], list[int]]:
        """Delete documents and their chunks in one transaction, however many; returns the ids that
        existed and their chunk ids."""
        with self.session(write=True) as s:
            found = lock_documents(s, external_ids)
            doc_ids = [row.id for row in found.values()]
            chunk_ids = delete_chunks_of(s, doc_ids)
            for id_part in id_parts(doc_ids):
                s.execute(delete(Document).where(Document.id.in_(id_part)))
            changes.append(s, changes.Op.DEL, chunk_ids)
        return list(found), chunk_ids

    def chunk_inputs(self, chunk_ids: Sequence[int]) -> dict[int, tuple[str, str]]:
        """(title, chunk text) of each chunk: what its vector embeds."""
        out: dict[int, tuple[str, str]] = {}
        with self.session() as s:
            for part in id_parts(chunk_ids):
                stmt = select(Chunk.id, Document.title, Chunk.text).join(Document).where(Chunk.id.in_(part))
                out.update({cid: (title, text) for cid, title, text in s.execute(stmt)})
        return out

    def chunk_hits(self, chunk_ids: Sequence[int]) -> dict[int, ChunkHit]:
        """The chunks (with their document's fields) for the ids that still exist; the owners of
        those gone are forgotten (`owners`)."""
        if not chunk_ids:
            return {}
        rows = self.by_ids(reads.chunk_hits(self.postgres), chunk_ids)
        hits = {row[0]: ChunkHit(*row) for row in rows}
        if len(hits) < len(chunk_ids):
            self.owners.forget(chunk_id for chunk_id in chunk_ids if chunk_id not in hits)
        return hits

    def chunk_owners(self, chunk_ids: Sequence[int], metadata: bool = False) -> dict[int, ChunkOwner]:
        """The document (the user's id) of each of `chunk_ids` that still exists, with its metadata
        when asked: what ranking needs, without the text and fields that only the shown hits need
        (`chunk_hits`). Owners without metadata come from `owners` where it knows them (a chunk gone
        since may be among them: see search/storage/owners.py); the rest from SQL."""
        if not chunk_ids:
            return {}
        known: dict[int, ChunkOwner] = {}
        if not metadata:
            known, chunk_ids = self.owners.known(chunk_ids)
            if not chunk_ids:
                return known
        rows = self.by_ids(reads.chunk_owners(self.postgres, metadata), chunk_ids)
        if not metadata:
            read = {chunk_id: ChunkOwner(owner, None) for chunk_id, owner in cast(list[tuple[int, str]], rows)}
            self.owners.remember(read.items())
            return known | read
        typed = cast(list[tuple[int, str, dict[str, Any]]], rows)
        return {chunk_id: ChunkOwner(owner, meta) for chunk_id, owner, meta in typed}

    def document_chunks(self, chunk_ids: Sequence[int]) -> dict[int, list[int]]:
        """For each of `chunk_ids` that exists, every chunk id of its document: what a document's own
        score for a query is the best of (search/query/signals.py). Ranking holds a chunk of each
        document already, so no document row is looked up by the user's id."""
        out: dict[int, list[int]] = {}
        for given_id, chunk_id in self.by_ids(reads.document_chunks(self.postgres), chunk_ids):
            out.setdefault(int(given_id), []).append(int(chunk_id))
        return out

    def by_ids(self, stmt: reads.ById, chunk_ids: Sequence[int], **params: Any) -> Sequence[Row[*tuple[Any, ...]]]:
        """The rows of one of search/storage/reads.py's statements for `chunk_ids` (none for none)."""
        if not chunk_ids:
            return []
        with self.engine.connect() as connection:
            return connection.execute(stmt, {"ids": ids_value(chunk_ids, self.postgres), **params}).all()

    def matching_chunk_ids(self, metadata_filter: MetadataFilter) -> np.ndarray:
        """The ids (int64, ascending) of every chunk whose document's metadata passes the filter,
        looked up through the metadata index."""
        stmt = metadata_index.chunks_matching(metadata_filter, self.postgres)
        with self.session() as s:
            return np.fromiter(s.scalars(stmt), dtype=np.int64)

    def matching_estimate(self, metadata_filter: MetadataFilter) -> tuple[int, int]:
        """(at most how many documents pass the filter, how many documents there are): two index
        counts, to choose between filtering inside the search and checking its results."""
        with self.session() as s:
            total = int(s.scalar(select(func.count()).select_from(Document)) or 0)
            bound = metadata_index.estimate(s, metadata_filter, total)
        return bound, total

    def external_ids(self) -> list[str]:
        """Every document's id (the user's), in storage order."""
        with self.session() as s:
            return list(s.scalars(select(Document.external_id).order_by(Document.id)))

    def all_chunk_ids(self) -> list[int]:
        """Every chunk id, ascending."""
        with self.session() as s:
            return list(s.scalars(select(Chunk.id).order_by(Chunk.id)))

    def counts(self) -> dict[str, int]:
        """Numbers of documents and chunks."""
        with self.session() as s:
            return {
                "documents": int(s.scalar(select(func.count()).select_from(Document)) or 0),
                "chunks": int(s.scalar(select(func.count()).select_from(Chunk)) or 0),
            }

    def active_generation(self, session: Session | None = None) -> IndexGeneration | None:
        """The index generation that serves queries, if one exists (read in `session` when given)."""
        stmt = (
            select(IndexGeneration)
            .where(IndexGeneration.state == GenerationState.ACTIVE)
            .order_by(IndexGeneration.id.desc())
        )
        if session is not None:
            return session.scalars(stmt).first()
        with self.session() as s:
            return s.scalars(stmt).first()

    def save_generation(self, generation: IndexGeneration) -> IndexGeneration:
        """Insert or update an index generation row."""
        with self.session() as s:
            return s.merge(generation)
