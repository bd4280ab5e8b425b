"""Turning pending documents and chunks into stored vectors (shared by `index`, `worker` and `rebuild`)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from sqlalchemy import select

from indexer.ingest.chunking import Chunker
from search.embedding.encoder import Encoder
from search.embedding.space import chunk_input
from search.storage.models import Document, DocumentStatus
from search.storage.records import ChunkIn, DocumentIn
from search.storage.vectors import Embedded, VectorRows
from search.work.queue import PendingDoc, claim

# One step of the worker embeds about SLICE_SECONDS of work (at most SLICE_CHUNKS chunks, at least
# MIN_SLICE_CHUNKS), so a document written behind a large one waits about that long, not for the whole
# of it. A bound in chunks alone is seconds on a quiet host with BF16 and ten times that on a loaded
# or float32 one (a 256-chunk slice took 40 s on a 2-core host at load 13): the step is sized from
# the encoder's measured rate instead.
SLICE_SECONDS = 2.0
SLICE_CHUNKS = 1024
MIN_SLICE_CHUNKS = 16


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
        rows.commit_embedded(session, _embedded(docs, chunk_lists, encoder))
        return len(docs), sum(map(len, chunk_lists))


def _embedded(docs: Sequence[PendingDoc], chunk_lists: Sequence[list[ChunkIn]], encoder: Encoder) -> list[Embedded]:
    inputs = [chunk_input(d.title, c.text) for d, cs in zip(docs, chunk_lists, strict=True) for c in cs]
    vectors = encoder.encode(inputs)
    blocks = split_rows(vectors, [len(c) for c in chunk_lists])
    return [_item(d, cs, v) for d, cs, v in zip(docs, chunk_lists, blocks, strict=True)]


def _item(doc: PendingDoc, chunks: list[ChunkIn], vectors: np.ndarray) -> Embedded:
    """A document's vectors as `commit_embedded` takes them: for its stored chunks, or new ones."""
    chunk_ids = None if doc.chunks is None else [cid for cid, _ in doc.chunks]
    return Embedded(doc.id, doc.content_hash, chunk_ids, chunks, vectors)


def _chunks_of(docs: Sequence[PendingDoc], chunker: Chunker) -> list[list[ChunkIn]]:
    """Each document's chunks: the stored ones, or new ones for documents written without chunks."""
    fresh = [d for d in docs if d.chunks is None]
    split = iter(chunker.split([DocumentIn(d.external_id, d.text, d.title) for d in fresh]))
    return [next(split) if d.chunks is None else [c for _, c in d.chunks] for d in docs]


@dataclass
class _Sliced:
    """A document too large for one step, embedded a slice at a time; its vectors are committed whole."""

    doc: PendingDoc
    chunks: list[ChunkIn]
    vectors: list[np.ndarray] = field(default_factory=list)

    @property
    def embedded(self) -> int:
        return sum(len(v) for v in self.vectors)


class FairEmbedder:
    """The worker's embedding step, bounded to about `slice_chunks` chunks of work: documents are taken
    in the order written while they fit; one larger than a step is embedded in slices, one per step,
    after whatever smaller documents were written meanwhile. Its vectors are held here until its last
    slice, then committed like any other document's (a crash loses only this process's work: the
    document is still pending). Without it a 1,000,000-character document held every write behind it
    for the minutes its 2,253 chunks took."""

    def __init__(
        self, limit: int = 256, slice_chunks: int = SLICE_CHUNKS, slice_seconds: float = SLICE_SECONDS
    ) -> None:
        self.limit, self.max_slice, self.slice_seconds = limit, slice_chunks, slice_seconds
        self._sliced: _Sliced | None = None
        self._deferred: set[int] = set()  # large documents waiting for the slicer
        self._slice_turn = False  # the next step advances the sliced document, not the small ones
        self._chunk_seconds: float | None = None  # the encoder's recent cost of one chunk

    @property
    def slice_chunks(self) -> int:
        """Chunks one step may embed: about `slice_seconds` at the encoder's measured rate."""
        if self._chunk_seconds is None:
            return min(self.max_slice, MIN_SLICE_CHUNKS)
        fitting = int(self.slice_seconds / max(self._chunk_seconds, 1e-9))
        return max(min(self.max_slice, fitting), min(self.max_slice, MIN_SLICE_CHUNKS))

    def step(self, rows: VectorRows, encoder: Encoder, chunker: Chunker) -> int:
        """Embed one step's work: the small documents waiting, or the next slice of a large one, in
        turns while both wait (a step that did both held the small ones behind a whole slice). Returns
        the documents committed or the slices embedded (0: idle)."""
        if self._sliced is not None and self._slice_turn:
            self._slice_turn = False
            return self._advance(rows, encoder)
        done = self._small(rows, encoder, chunker)
        self._slice_turn = self._sliced is not None
        if done == 0 and self._sliced is not None:
            self._slice_turn = False
            return self._advance(rows, encoder)
        return done

    def _measured(self, seconds: float, chunks: int) -> None:
        """The encoder took `seconds` for `chunks` chunks: the cost per chunk sizes the next steps."""
        if chunks:
            last, cost = self._chunk_seconds, seconds / chunks
            self._chunk_seconds = cost if last is None else 0.5 * last + 0.5 * cost

    def _small(self, rows: VectorRows, encoder: Encoder, chunker: Chunker) -> int:
        skip = self._deferred | ({self._sliced.doc.id} if self._sliced else set())
        size = self.slice_chunks
        with claim(rows.store, self.limit, skip) as (session, docs):
            taken, lists, budget = [], [], size
            for doc, chunks in zip(docs, _chunks_of(docs, chunker), strict=True):
                if len(chunks) > size:
                    if self._sliced is None:
                        self._sliced = _Sliced(doc, chunks)
                    else:
                        self._deferred.add(doc.id)
                elif len(chunks) <= budget:
                    taken.append(doc)
                    lists.append(chunks)
                    budget -= len(chunks)
            if taken:
                started = time.perf_counter()
                items = _embedded(taken, lists, encoder)
                self._measured(time.perf_counter() - started, sum(map(len, lists)))
                rows.commit_embedded(session, items)
        return len(taken)

    def _advance(self, rows: VectorRows, encoder: Encoder) -> int:
        sliced = self._sliced
        assert sliced is not None
        if not _still_pending(rows, sliced.doc):  # replaced or deleted meanwhile: its new version is queued
            self._sliced, self._deferred = None, set()
            return 1
        start = sliced.embedded
        part = sliced.chunks[start : start + self.slice_chunks]
        started = time.perf_counter()
        sliced.vectors.append(encoder.encode([chunk_input(sliced.doc.title, c.text) for c in part]))
        self._measured(time.perf_counter() - started, len(part))
        if sliced.embedded < len(sliced.chunks):
            return 1
        self._sliced, self._deferred = None, set()  # the deferred ones are taken in order again
        item = _item(sliced.doc, sliced.chunks, np.concatenate(sliced.vectors))
        with rows.store.session() as session:
            # Committed only if the document is still pending with the content embedded (the same
            # check as for any claimed batch); else its new version is pending and embedded later.
            rows.commit_embedded(session, [item])
        return 1


def _still_pending(rows: VectorRows, doc: PendingDoc) -> bool:
    with rows.store.session() as s:
        found = s.scalar(
            select(Document.id).where(
                Document.id == doc.id,
                Document.content_hash == doc.content_hash,
                Document.status == DocumentStatus.PENDING,
            )
        )
    return found is not None


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
