"""Writing documents inside the caller's transaction: each function takes the Session, so that one
caller owns the transaction and everything that must hold together (the content hash read, the
choice it makes, the rows written) commits or rolls back as one."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, update
from sqlalchemy.orm import Session

from search.storage import changes, metadata_index
from search.storage.models import Document
from search.storage.records import ChunkIn, DocumentIn, WriteResult
from search.storage.rows import (
    Locked,
    delete_chunks_of,
    document_columns,
    insert_chunks_of,
    insert_documents,
    lock_documents,
    table_of,
)

# Chunks documents (indexer.ingest.chunking.Chunker.split), one list per document, in order.
Splitter = Callable[[list[DocumentIn]], list[list[ChunkIn]]]


def write_documents(
    s: Session, docs: Sequence[tuple[DocumentIn, Sequence[ChunkIn]]], locked: Mapping[str, Locked] | None = None
) -> WriteResult:
    """Insert or replace documents with their chunks: a few statements for the whole batch, not a few
    per document. Replaced chunks are deleted; the change log records both. `locked`: what
    `lock_documents` gave for these ids when the caller has locked them already in `s`."""
    if locked is None:
        locked = lock_documents(s, [d.external_id for d, _ in docs])
    existing = {ext: row.id for ext, row in locked.items()}
    result = WriteResult()
    replaced = [existing[d.external_id] for d, _ in docs if d.external_id in existing]
    removed = delete_chunks_of(s, replaced)
    if replaced:
        table = table_of(Document)
        s.execute(
            table.update().where(table.c.id == bindparam("doc_id")),
            [{"doc_id": existing[d.external_id], **document_columns(d)} for d, _ in docs if d.external_id in existing],
        )
    fresh = [d for d, _ in docs if d.external_id not in existing]
    new_ids = iter(insert_documents(s, fresh))
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


def update_metadata(s: Session, updates: Mapping[str, dict[str, Any]]) -> None:
    """Replace the metadata of existing documents (no new vectors needed)."""
    ids: list[tuple[int, dict[str, Any]]] = []
    for ext, meta in updates.items():
        doc_id = s.scalar(update(Document).where(Document.external_id == ext).values(meta=meta).returning(Document.id))
        if doc_id is not None:
            ids.append((int(doc_id), meta))
    metadata_index.write_values(s, ids, replace=True)


@dataclass(frozen=True)
class Upserted:
    """What `upsert` did: the rows written (`result`), the ids left as they were (same title and text:
    only their metadata replaced), and the documents written with their chunks, in `result.written`'s
    order."""

    result: WriteResult
    unchanged: list[str]
    written: list[tuple[DocumentIn, list[ChunkIn]]]


def upsert(s: Session, docs: Sequence[DocumentIn], split: Splitter | None = None) -> Upserted:
    """Write documents whose title or text changed (chunked by `split`; without it, left for the
    worker to chunk) and replace the metadata of the others; nothing unchanged is embedded again.

    The hashes are read on the locked rows, and the choice between a metadata update and a new
    version is carried out on them, so concurrent writes of one id end as some serial order leaves
    it: never one write's metadata on another's text."""
    locked = lock_documents(s, [d.external_id for d in docs])

    def unchanged(doc: DocumentIn) -> bool:
        row = locked.get(doc.external_id)
        return row is not None and row.content_hash == doc.content_hash

    same = [d for d in docs if unchanged(d)]
    if same:
        update_metadata(s, {d.external_id: d.metadata for d in same})
    changed = [d for d in docs if not unchanged(d)]
    chunks: list[list[ChunkIn]] = split(changed) if split is not None and changed else [[] for _ in changed]
    written = list(zip(changed, chunks, strict=True))
    result = write_documents(s, written, locked) if changed else WriteResult()
    return Upserted(result, [d.external_id for d in same], written)
