"""The SQL schema as typed SQLAlchemy models. Alembic (migrations/) creates and changes it; nothing else does."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import UserDefinedType

from search.embedding.space import EmbeddingSpace
from search.validation import INT64

# JSONB on PostgreSQL so that metadata filters can use its operators and indexes.
JSONType = JSON().with_variant(JSONB(), "postgresql")


class DocumentStatus(StrEnum):
    """A document's life: written (pending) -> its chunks' vectors are committed to SQL, where every
    reader applies them from the change log within its reload interval (indexed)."""

    PENDING = "pending"
    INDEXED = "indexed"


class GenerationState(StrEnum):
    """An index generation's life: a rebuild builds one beside the serving one (building), switches
    to it atomically (active), and the one it replaced is retired until its files are removed."""

    BUILDING = "building"
    ACTIVE = "active"
    RETIRED = "retired"


class JobStatus(StrEnum):
    """A job's life: queued by one process, run by the one holding the indexing slot, then done or failed."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


def utcnow() -> datetime:
    """Timezone-aware now, for timestamps."""
    return datetime.now(UTC)


# BIGINT on PostgreSQL; SQLite's AUTOINCREMENT needs exactly INTEGER (which is 64-bit there anyway).
SeqType = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    """Declarative base of every table."""


class Document(Base):
    """A user's document. `external_id` is the user's id; `id` is ours."""

    __tablename__ = "documents"
    # AUTOINCREMENT on SQLite (an identity on PostgreSQL) means a deleted row's key is never handed out
    # again, so a stale vector can never point at a newer row.
    __table_args__ = ({"sqlite_autoincrement": True},)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    external_id: Mapped[str] = mapped_column(String(512), unique=True)
    title: Mapped[str] = mapped_column(Text, default="")
    text: Mapped[str] = mapped_column(Text)
    # "metadata" is reserved on declarative classes, hence the attribute name.
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JSONType, default=dict)
    content_hash: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default=DocumentStatus.PENDING, index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)

    chunks: Mapped[list[Chunk]] = relationship(
        back_populates="document",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="Chunk.ordinal",
    )


class Chunk(Base):
    """A span of a document that has one vector; `id` is that vector's FAISS id."""

    __tablename__ = "chunks"
    __table_args__ = (
        UniqueConstraint("document_id", "ordinal", name="uq_chunks_document_ordinal"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    document_id: Mapped[int] = mapped_column(ForeignKey("documents.id", ondelete="CASCADE"), index=True)
    ordinal: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)
    start: Mapped[int] = mapped_column("start_char", Integer)
    end: Mapped[int] = mapped_column("end_char", Integer)

    document: Mapped[Document] = relationship(back_populates="chunks")


class ExactNumber(UserDefinedType[Any]):
    """A JSON number kept exactly in a NUMERIC column, so that SQL compares numbers as Python does:
    by exact value, ints against floats too (2**53 + 1 > 2.0**53).

    SQLite: a NUMERIC column holds 64-bit integers and doubles as they are and compares them
    exactly, so values are bound untouched (SQLAlchemy's Float and Numeric bind every integer as a
    double). PostgreSQL: a double bound to NUMERIC is cast with 15 significant digits, so each value
    is bound as the Decimal of its exact binary expansion, which unconstrained NUMERIC keeps digit
    for digit. Integers beyond 64 bits (refused at writes, but possible in older documents) are
    exact on PostgreSQL and their nearest double on SQLite, which has no wider integer. Values read
    back are Decimals on PostgreSQL."""

    cache_ok = True

    def get_col_spec(self, **kw: Any) -> str:
        return "NUMERIC"

    def bind_processor(self, dialect: Dialect) -> Callable[[Any], Any] | None:
        return _exact_decimal if dialect.name == "postgresql" else _sqlite_number

    def literal_processor(self, dialect: Dialect) -> Callable[[Any], str]:
        postgres = dialect.name == "postgresql"
        return lambda value: f"{Decimal(value):f}" if postgres else repr(_sqlite_number(value))

    def coerce_compared_value(self, op: Any, value: Any) -> ExactNumber:
        return self  # a compared literal binds as this type, exactly (not as Python's int or float type)


def _exact_decimal(value: Any) -> Any:
    # Decimal(float) is the float's exact value; Decimal(str(float)) would be its shortest repr.
    return None if value is None else Decimal(value)


def _sqlite_number(value: Any) -> Any:
    # The sqlite3 module cannot bind an integer beyond 64 bits at all.
    if isinstance(value, int) and not -INT64 <= value < INT64:
        return float(value)
    return value


NumberType = ExactNumber()


class MetadataValue(Base):
    """A document's top-level scalar metadata value, one row per key, kept in the same transaction as
    the document: metadata filters look their matches up here by index (search/storage/metadata_index.py).
    Strings are kept as a digest (`text_hash`), numbers and booleans (1/0) in `number`."""

    __tablename__ = "metadata_values"
    # `document_id` last in the value indexes: a filter's lookup then reads the index alone.
    __table_args__ = (
        Index("ix_metadata_values_text", "key", "kind", "text_hash", "document_id"),
        Index("ix_metadata_values_number", "key", "kind", "number", "document_id"),
        Index("ix_metadata_values_document", "document_id"),
    )

    id: Mapped[int] = mapped_column(SeqType, primary_key=True)
    document_id: Mapped[int] = mapped_column(ForeignKey("documents.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(1))
    text_hash: Mapped[str | None] = mapped_column(String(32), nullable=True)
    number: Mapped[int | float | Decimal | None] = mapped_column(NumberType, nullable=True)


class IndexGeneration(Base):
    """One index build: the model and pooling that made its vectors, and its base segment: the file
    `path` holds every vector of the space up to change `base_seq`; readers apply later changes from
    the change log. `factory` is what was asked for (`auto` is re-decided as the corpus grows),
    `index_type` what the base file holds."""

    __tablename__ = "index_generations"
    __table_args__ = (Index("ix_index_generations_state", "state"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    path: Mapped[str] = mapped_column(String(1024))
    factory: Mapped[str] = mapped_column(String(256))
    index_type: Mapped[str] = mapped_column(String(256), default="")
    base_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    model: Mapped[str] = mapped_column(String(1024))
    pooling: Mapped[str] = mapped_column(String(16))
    dim: Mapped[int] = mapped_column(Integer)
    max_length: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16), default=GenerationState.BUILDING)
    vectors: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)

    @property
    def space(self) -> EmbeddingSpace:
        """The embedding space of this generation's vectors."""
        return EmbeddingSpace(self.model, self.pooling, self.dim, self.max_length)


class ChunkVector(Base):
    """A chunk's vector in one embedding space, kept in SQL so that the index files are rebuildable
    caches: a crash never loses an embedding that was committed, and a change of index type re-embeds
    nothing. Its arrival is recorded in the change log (`Change`, op "vec")."""

    __tablename__ = "chunk_vectors"

    chunk_id: Mapped[int] = mapped_column(ForeignKey("chunks.id", ondelete="CASCADE"), primary_key=True)
    space: Mapped[str] = mapped_column(String(16), primary_key=True)
    vector: Mapped[bytes] = mapped_column(LargeBinary)


class Change(Base):
    """The change log: every chunk inserted ("add"), deleted ("del") and every vector committed
    ("vec", in `space`), numbered in commit order. Each derived index (the FAISS segments, the keyword
    index) records the `seq` it has applied and catches up from there. See search/storage/changes.py."""

    __tablename__ = "changes"
    __table_args__ = ({"sqlite_autoincrement": True},)

    seq: Mapped[int] = mapped_column(SeqType, primary_key=True)
    op: Mapped[str] = mapped_column(String(3))
    chunk_id: Mapped[int] = mapped_column(BigInteger)
    space: Mapped[str | None] = mapped_column(String(16), nullable=True)


class DerivedState(Base):
    """How far a durable derived index has applied the change log (its name -> the last seq applied)."""

    __tablename__ = "derived_state"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger)


class Job(Base):
    """Work handed to the running indexing process: on SQLite one process indexes at a time, so
    `semsearch rebuild` beside `semsearch serve` queues the rebuild here for its worker and follows
    it (search/work/jobs.py). `state`: queued, running, done or failed; `result` the summary or the error."""

    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_state", "state"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    params: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    state: Mapped[str] = mapped_column(String(16), default=JobStatus.QUEUED)
    result: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)


# SQL NULL, not JSON null, for "every collection": a key's `collections IS NULL` reads as it means.
NullableJSON = JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")


class ApiKey(Base):
    """An API key (search/storage/keys.py): `id` is public and part of the key itself, which is
    `ss_<id>_<secret>`; only a salted scrypt hash of the secret is kept. `role` is a search.access.Role,
    `collections` the names it reaches (NULL: all). A revoked key keeps its row, so that its id is
    never handed out again and a store that ever had keys keeps asking for one."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    role: Mapped[str] = mapped_column(String(8))
    collections: Mapped[list[str] | None] = mapped_column(NullableJSON, nullable=True)
    secret_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class CollectionStatus(StrEnum):
    """A collection's life: ready (served), or deleting (hidden at once; its schema and files are being
    removed, and whoever finds it so finishes the removal)."""

    READY = "ready"
    DELETING = "deleting"


class CollectionRow(Base):
    """A collection of the deployment (search/storage/collections.py): `settings` holds the settings it
    was created with that differ from the server's (model, pooling, chunking, fusion...); the others
    follow the server's SEMSEARCH_* values."""

    __tablename__ = "collections"

    name: Mapped[str] = mapped_column(String(63), primary_key=True)
    settings: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    status: Mapped[str] = mapped_column(String(16), default=CollectionStatus.READY)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
