"""Turning pending documents and chunks into stored vectors (shared by `index`, `worker` and `rebuild`)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from indexer.ingest.chunking import Chunker
from search.embedding.encoder import Encoder
from search.embedding.space import chunk_input
from search.storage.records import ChunkIn, DocumentIn
from search.storage.vectors import Embedded, VectorRows
from search.work.queue import PendingDoc, claim


def split_rows(vectors: np.ndarray, counts: Sequence[int]) -> list[np.ndarray]:
    """Cut a stacked (n, dim) array back into one block per document."""
    return np.split(vectors, np.cumsum(counts)[:-1]) if counts else []


def embed_pending(rows: VectorRows, encoder: Encoder, chunker: Chunker, limit: int = 256) -> tuple[int, int]:
    """Claim up to `limit` pending documents, chunk those not chunked yet, embed them and commit their
    vectors. Returns (documents, chunks) embedded; (0, 0) when the queue is empty."""
    with claim(rows.store, limit) as (session, docs):
        if not docs:
            return 0, 0
        chunk_lists = _chunks_of(docs, chunker)
        inputs = [chunk_input(d.title, c.text) for d, cs in zip(docs, chunk_lists, strict=True) for c in cs]
        vectors = encoder.encode(inputs)
        items = [
            Embedded(
                doc_id=d.id,
                content_hash=d.content_hash,
                chunk_ids=None if d.chunks is None else [cid for cid, _ in d.chunks],
                chunks=cs,
                vectors=v,
            )
            for d, cs, v in zip(docs, chunk_lists, split_rows(vectors, [len(c) for c in chunk_lists]), strict=True)
        ]
        rows.commit_embedded(session, items)
        return len(docs), len(inputs)


def _chunks_of(docs: Sequence[PendingDoc], chunker: Chunker) -> list[list[ChunkIn]]:
    """Each document's chunks: the stored ones, or new ones for documents written without chunks."""
    fresh = [d for d in docs if d.chunks is None]
    split = iter(chunker.split([DocumentIn(d.external_id, d.text, d.title) for d in fresh]))
    return [next(split) if d.chunks is None else [c for _, c in d.chunks] for d in docs]


def embed_missing(rows: VectorRows, encoder: Encoder, block: int = 4096) -> int:
    """Embed the chunks of documents past the queue that have no vector in the space (a model change,
    or rows from before vectors were kept in SQL); each block is committed, so a rerun resumes."""
    missing = rows.chunks_without_vectors()
    for start in range(0, len(missing), block):
        ids = missing[start : start + block]
        inputs = rows.store.chunk_inputs(ids)  # a chunk deleted meanwhile is simply absent
        live = [i for i in ids if i in inputs]
        rows.write(live, encoder.encode([chunk_input(*inputs[i]) for i in live]))
    return len(missing)
