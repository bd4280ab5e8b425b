"""Documents, chunks and index bookkeeping in SQL (SQLite by default, PostgreSQL through psycopg)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, TypeVar, cast

import numpy as np
from alembic import command
from sqlalchemy import Table, bindparam, delete, func, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from search.filters import MetadataFilter
from search.storage import changes, metadata_index
from search.storage.bulk import insert_rows, one_of
from search.storage.db import alembic_config, make_engine
from search.storage.models import Base, Chunk, Document, DocumentStatus, GenerationState, IndexGeneration, utcnow

T = TypeVar("T")


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


class Store:
    """The metadata store. The SQL rows are the source of truth; the vector index follows them."""

    def __init__(self, url: str, upgrade: bool = True) -> None:
        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        self.url = url
        self.engine = make_engine(url)
        self.postgres = self.engine.dialect.name == "postgresql"
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        if upgrade:
            self.upgrade()

    def upgrade(self) -> None:
        """Bring the schema to the newest Alembic revision (idempotent), all in one transaction: a
        process killed midway leaves the schema it found. Python's sqlite3 commits before every DDL
        statement on its own, so on SQLite the transaction is begun by hand (IMMEDIATE: two
        processes starting at once migrate one after the other)."""
        with self.engine.connect() as connection:
            raw = connection.connection.dbapi_connection
            sqlite = not self.postgres and raw is not None
            if sqlite:
                raw.isolation_level = None  # type: ignore[union-attr]  # the driver stops managing transactions
            try:
                with connection.begin():
                    if sqlite:
                        connection.exec_driver_sql("BEGIN IMMEDIATE")
                    config = alembic_config(self.url)
                    config.attributes["connection"] = connection
                    command.upgrade(config, "head")
            finally:
                if sqlite:
                    raw.isolation_level = ""  # type: ignore[union-attr]  # the driver's default, for the pool

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session whose transaction commits on success and rolls back on error."""
        with self._sessions.begin() as session:
            yield session

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
        """Insert or replace documents with their chunks, in one transaction: a few statements for the
        whole batch, not a few per document. Replaced chunks are deleted; the change log records both."""
        result = WriteResult()
        with self.session() as s:
            existing = _lock_documents(s, [d.external_id for d, _ in docs])
            replaced = [existing[d.external_id] for d, _ in docs if d.external_id in existing]
            removed = _delete_chunks_of(s, replaced)
            if replaced:
                table = _table(Document)
                s.execute(
                    table.update().where(table.c.id == bindparam("doc_id")),
                    [{"doc_id": existing[d.external_id], **_columns(d)} for d, _ in docs if d.external_id in existing],
                )
            fresh = [d for d, _ in docs if d.external_id not in existing]
            new_ids = iter(_insert_documents(s, fresh))
            doc_ids = [existing.get(d.external_id) or next(new_ids) for d, _ in docs]
            pairs = list(zip(doc_ids, docs, strict=True))
            chunk_ids = insert_chunks_of(s, [(doc_id, chunks) for doc_id, (_, chunks) in pairs])
            metadata_index.write_values(s, [(doc_id, d.metadata) for doc_id, (d, _) in pairs], bool(replaced))
            for (doc, _), doc_id, ids in zip(docs, doc_ids, chunk_ids, strict=True):
                (result.updated if doc.external_id in existing else result.added).append(doc.external_id)
                result.new_chunk_ids.extend(ids)
                result.written.append((doc_id, ids))
            result.removed_chunk_ids = removed
            changes.append(s, changes.Op.DEL, removed)
            changes.append(s, changes.Op.ADD, result.new_chunk_ids)
        return result

    def update_metadata(self, updates: dict[str, dict[str, Any]]) -> None:
        """Replace the metadata of existing documents (no new vectors needed)."""
        with self.session() as s:
            ids: list[tuple[int, dict[str, Any]]] = []
            for ext, meta in updates.items():
                doc_id = s.scalar(
                    update(Document).where(Document.external_id == ext).values(meta=meta).returning(Document.id)
                )
                if doc_id is not None:
                    ids.append((int(doc_id), meta))
            metadata_index.write_values(s, ids, replace=True)

    def delete_documents(self, external_ids: Sequence[str]) -> tuple[list[str], list[int]]:
        """Delete documents and their chunks in one transaction, however many; returns the ids that
        existed and their chunk ids."""
        with self.session() as s:
            found = _lock_documents(s, external_ids)
            doc_ids = list(found.values())
            chunk_ids = _delete_chunks_of(s, doc_ids)
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
        """The chunks (with their document's fields) for the ids that still exist."""
        if not chunk_ids:
            return {}
        stmt = (
            select(
                Chunk.id,
                Document.external_id,
                Document.title,
                Chunk.text,
                Chunk.start,
                Chunk.end,
                Document.meta,
            )
            .join(Document)
            .where(one_of(Chunk.id, chunk_ids, self.postgres))
        )
        with self.session() as s:
            return {row[0]: ChunkHit(*row) for row in s.execute(stmt)}

    def chunk_owners(self, chunk_ids: Sequence[int], metadata: bool = False) -> dict[int, ChunkOwner]:
        """The document (the user's id) of each of `chunk_ids` that still exists, with its metadata
        when asked: what ranking needs, without the text and fields that only the shown hits need
        (`chunk_hits`). A Core query, since ranking reads a few hundred rows per retriever."""
        if not chunk_ids:
            return {}
        columns = [Chunk.id, Document.external_id, *([Document.meta] if metadata else [])]
        stmt = select(*columns).join(Document).where(one_of(Chunk.id, chunk_ids, self.postgres))
        with self.engine.connect() as connection:
            rows = connection.execute(stmt).all()
        if not metadata:
            return {chunk_id: ChunkOwner(owner, None) for chunk_id, owner in cast(list[tuple[int, str]], rows)}
        typed = cast(list[tuple[int, str, dict[str, Any]]], rows)
        return {chunk_id: ChunkOwner(owner, meta) for chunk_id, owner, meta in typed}

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
            bound = metadata_index.estimate(s, metadata_filter, self.postgres)
            total = int(s.scalar(select(func.count()).select_from(Document)) or 0)
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


def _table(model: type[Base]) -> Table:
    """The Core table of a model, for executemany statements keyed by column name."""
    return cast(Table, model.__table__)


def _columns(doc: DocumentIn) -> dict[str, Any]:
    """A document's row values (a write always queues it for embedding again)."""
    return {
        "title": doc.title,
        "text": doc.text,
        "metadata": doc.metadata,
        "content_hash": doc.content_hash,
        "status": DocumentStatus.PENDING,
        "updated_at": utcnow(),
    }


def _insert_documents(s: Session, docs: Sequence[DocumentIn]) -> list[int]:
    """Insert new document rows in one executemany; returns their keys in the order given."""
    if not docs:
        return []
    now = utcnow()
    insert_rows(s, _table(Document), [{"external_id": d.external_id, **_columns(d), "created_at": now} for d in docs])
    keys: dict[str, int] = {}
    for part in parts([d.external_id for d in docs]):
        stmt = select(Document.external_id, Document.id).where(Document.external_id.in_(part))
        keys.update((ext, doc_id) for ext, doc_id in s.execute(stmt))
    return [keys[d.external_id] for d in docs]


def _lock_documents(s: Session, external_ids: Sequence[str]) -> dict[str, int]:
    """The row ids of the documents that exist among `external_ids`, locked for this transaction
    (its first statement): a writer reads what it then replaces, and another writer's commit in
    between (the worker adding chunks to one of them) must wait, or its chunks would be deleted with
    no entry in the change log. SQLite: the write lock at once (readers carry on, in WAL mode);
    PostgreSQL: the documents' rows."""
    sqlite = s.get_bind().dialect.name == "sqlite"
    if sqlite:
        s.execute(text("BEGIN IMMEDIATE"))
    found: dict[str, int] = {}
    for part in parts(external_ids):
        stmt = select(Document.external_id, Document.id).where(Document.external_id.in_(part))
        found.update((ext, doc_id) for ext, doc_id in s.execute(stmt if sqlite else stmt.with_for_update()))
    return found


def _delete_chunks_of(s: Session, doc_ids: Sequence[int]) -> list[int]:
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
    insert_rows(s, _table(Chunk), rows)
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
