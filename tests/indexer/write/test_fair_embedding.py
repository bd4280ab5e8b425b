"""A large document is embedded a slice per step: documents written after it are searchable long
before it is, and it ends up whole (or its replacement does)."""

from __future__ import annotations

import time
from typing import cast

import numpy as np
from dense_path import open_dense
from sqlalchemy import func, select

from indexer.ingest.chunking import Chunker
from indexer.write.embedding import FairEmbedder
from search.embedding.encoder import Encoder
from search.settings import Settings
from search.storage.models import Chunk, Document, DocumentStatus
from search.storage.records import DocumentIn
from search.storage.store import Store
from search.storage.vectors import VectorRows
from search.work.queue import enqueue

WORDS = ["cat", "dog", "gene", "virus", "python", "star", "water", "tree", "fire", "cell"]


def _text(words: int, seed: int) -> str:
    rng = np.random.default_rng(seed)
    return " ".join(WORDS[i] for i in rng.integers(0, len(WORDS), words)) + "."


def _chunks(store: Store, doc_id: str) -> int:
    with store.session() as s:
        query = select(func.count()).select_from(Chunk).join(Document).where(Document.external_id == doc_id)
        return int(s.scalar(query) or 0)


def _status(store: Store, doc_id: str) -> str | None:
    doc = store.get_document(doc_id)
    return None if doc is None else doc.status


def test_a_small_write_behind_a_large_one_is_embedded_first(settings: Settings, tiny_encoder: Encoder) -> None:
    store = Store(settings.resolved_database_url)
    rows = VectorRows(store, tiny_encoder.space.key, tiny_encoder.dim)
    chunker = Chunker(tiny_encoder, 16, 2)
    embedder = FairEmbedder(limit=8, slice_chunks=10)
    enqueue(store, [DocumentIn("large", _text(2000, 1), "L")])
    assert embedder.step(rows, tiny_encoder, chunker) == 1  # its first slice
    enqueue(store, [DocumentIn("small", _text(12, 2), "S"), DocumentIn("large2", _text(600, 3), "L2")])
    sliced = embedder._sliced
    assert sliced is not None and sliced.embedded == 10
    # The small document, whole, and no slice in the same step: the step ends (and the worker
    # publishes) without waiting for another slice.
    assert embedder.step(rows, tiny_encoder, chunker) == 1
    assert _status(store, "small") == DocumentStatus.INDEXED
    assert sliced.embedded == 10
    assert _status(store, "large") == _status(store, "large2") == DocumentStatus.PENDING
    enqueue(store, [DocumentIn("small2", _text(12, 5), "S")])
    assert embedder.step(rows, tiny_encoder, chunker) == 1  # the slice's turn: a small one does not starve it
    assert sliced.embedded == 20 and _status(store, "small2") == DocumentStatus.PENDING
    assert embedder.step(rows, tiny_encoder, chunker) == 1
    assert _status(store, "small2") == DocumentStatus.INDEXED
    steps = 4
    while embedder.step(rows, tiny_encoder, chunker):
        steps += 1
    assert _status(store, "large") == _status(store, "large2") == DocumentStatus.INDEXED
    chunks = {doc_id: _chunks(store, doc_id) for doc_id in ("large", "large2")}
    assert steps >= (chunks["large"] + chunks["large2"]) // 10  # a slice at a time, never all at once
    searcher = open_dense(settings, tiny_encoder, store)
    assert searcher.index.ntotal == sum(chunks.values()) + 2
    assert searcher.search(_text(600, 3), k=1)[0].id == "large2"


def test_a_large_document_replaced_while_sliced_keeps_only_its_new_version(
    settings: Settings, tiny_encoder: Encoder
) -> None:
    store = Store(settings.resolved_database_url)
    rows = VectorRows(store, tiny_encoder.space.key, tiny_encoder.dim)
    chunker = Chunker(tiny_encoder, 16, 2)
    embedder = FairEmbedder(limit=8, slice_chunks=10)
    enqueue(store, [DocumentIn("large", _text(2000, 1), "L")])
    embedder.step(rows, tiny_encoder, chunker)
    enqueue(store, [DocumentIn("large", _text(300, 4), "L")])  # a new version while the old one is sliced
    while embedder.step(rows, tiny_encoder, chunker):
        pass
    doc = store.get_document("large")
    assert doc is not None and doc.status == DocumentStatus.INDEXED and doc.text == _text(300, 4)
    searcher = open_dense(settings, tiny_encoder, store)
    assert searcher.index.ntotal == _chunks(store, "large") > 0


class _SlowEncoder:
    """The tiny encoder at a known cost per text, as a loaded or float32 host would run the model."""

    def __init__(self, encoder: Encoder, seconds_per_text: float) -> None:
        self.encoder, self.seconds_per_text = encoder, seconds_per_text

    def encode(self, texts: list[str]) -> np.ndarray:
        time.sleep(self.seconds_per_text * len(texts))
        return self.encoder.encode(texts)


def test_a_step_is_sized_in_seconds_of_the_encoder_measured_rate(settings: Settings, tiny_encoder: Encoder) -> None:
    store = Store(settings.resolved_database_url)
    rows = VectorRows(store, tiny_encoder.space.key, tiny_encoder.dim)
    chunker = Chunker(tiny_encoder, 16, 2)
    embedder = FairEmbedder(limit=8, slice_chunks=1000, slice_seconds=0.25)
    slow = cast(Encoder, _SlowEncoder(tiny_encoder, 0.01))  # 25 chunks fit in a step's 0.25 s
    enqueue(store, [DocumentIn("large", _text(3000, 1), "L")])
    seen = []
    while embedder.step(rows, slow, chunker):
        seen.append(embedder.slice_chunks)
    assert 12 <= seen[-1] <= 26  # slowed further by the host, never larger than the seconds allow
    assert _status(store, "large") == DocumentStatus.INDEXED
