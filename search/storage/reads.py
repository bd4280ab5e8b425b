"""The reads every search makes, as statements built once per dialect.

A search reads a few hundred rows by id, four times over (owners of each retriever's chunks, the
other chunks of candidate documents, their vectors, the hits shown). Building and compiling a
SQLAlchemy statement for each call cost 3 ms against SQLite's own 0.3 ms (its cache key is
generated anew for a new statement object, an aliased table and a subquery); the same statement
object, executed with its ids bound as one value (search/storage/bulk.py `in_ids`), costs 0.5 ms."""

from __future__ import annotations

from functools import cache
from typing import Any, TypeAlias

from sqlalchemy import and_, bindparam, select
from sqlalchemy.orm import aliased
from sqlalchemy.sql import Select

from search.storage.bulk import in_ids
from search.storage.models import Chunk, ChunkVector, Document

# A statement of any columns (SQLAlchemy types a Select by its columns' types).
ById: TypeAlias = Select[*tuple[Any, ...]]


@cache
def chunk_owners(postgres: bool, metadata: bool) -> ById:
    """(chunk id, its document's user id[, its metadata]) of each chunk in `ids` that exists."""
    columns = [Chunk.id, Document.external_id, *([Document.meta] if metadata else [])]
    return select(*columns).join(Document).where(in_ids(Chunk.id, postgres))


@cache
def chunk_hits(postgres: bool) -> ById:
    """A shown hit's fields (search/storage/records.py ChunkHit) of each chunk in `ids` that exists."""
    columns = (Chunk.id, Document.external_id, Document.title, Chunk.text, Chunk.start, Chunk.end, Document.meta)
    return select(*columns).join(Document).where(in_ids(Chunk.id, postgres))


@cache
def document_chunks(postgres: bool) -> ById:
    """(a chunk in `ids`, a chunk of the same document), for every chunk of their documents."""
    given = aliased(Chunk)
    return (
        select(given.id, Chunk.id).join(Chunk, Chunk.document_id == given.document_id).where(in_ids(given.id, postgres))
    )


@cache
def document_vectors(postgres: bool) -> ById:
    """(a chunk in `ids`, a vector) for every chunk of their documents embedded in space `space`."""
    given = aliased(Chunk)
    embedded = and_(ChunkVector.chunk_id == Chunk.id, ChunkVector.space == bindparam("space"))
    return (
        select(given.id, ChunkVector.vector)
        .join(Chunk, Chunk.document_id == given.document_id)
        .join(ChunkVector, embedded)
        .where(in_ids(given.id, postgres))
    )
