"""Offline rebuilds: a new generation beside the serving one, stored vectors reused, atomic switch."""

from __future__ import annotations

import time

import numpy as np
import pytest
from dense_path import open_dense

from indexer.ingest.chunking import Chunker
from indexer.write import rebuild as rebuild_module
from indexer.write.pipeline import Indexer
from indexer.write.rebuild import rebuild
from search.components import open_searcher
from search.dense.catalog import IndexCatalog
from search.embedding.encoder import Encoder
from search.settings import Settings
from search.storage.records import DocumentIn
from search.storage.store import Store
from search.work.queue import enqueue

WORDS = ["cat", "dog", "gene", "virus", "python", "star", "water", "tree", "fire", "cell"]


def _docs(n: int) -> list[DocumentIn]:
    return [DocumentIn(f"d{i}", " ".join(WORDS[(i * k + i) % 10] for k in range(6)) + f" {i}.", "") for i in range(n)]


def _indexed(settings: Settings, encoder: Encoder, n: int = 300) -> Store:
    store = Store(settings.resolved_database_url)
    indexer = Indexer(encoder, store, IndexCatalog(store, settings.index_dir), Chunker(encoder, 32, 4))
    indexer.run(_docs(n))
    indexer.publisher.sync(force=True)  # a base file, as a corpus past the merge threshold would have
    return store


def _counting(encoder: Encoder) -> list[int]:
    calls: list[int] = []
    encoder.on_batch = calls.append
    return calls


def test_a_new_index_type_reuses_the_stored_vectors(settings: Settings, tiny_encoder: Encoder) -> None:
    fast = settings.model_copy(update={"reload_seconds": 0.05})
    store = _indexed(fast, tiny_encoder)
    searcher = open_dense(fast, tiny_encoder, store, watch=True)
    query = tiny_encoder.encode(["cat dog gene"])[0]
    before = [h.id for h in searcher.search_vector(query, 10)]
    (old_file,) = fast.index_dir.glob("gen-000001*.faiss")
    calls = _counting(tiny_encoder)
    try:
        summary = rebuild(fast.model_copy(update={"index_factory": "IVF16,Flat"}), store, tiny_encoder)
    finally:
        tiny_encoder.on_batch = None
    assert calls == [], "a change of index type must not re-embed anything"
    assert (summary.factory, summary.vectors, summary.embedded, summary.reused) == ("IVF16,Flat", 300, 0, 300)
    generation = store.active_generation()
    assert generation is not None and generation.id == summary.generation == 2
    assert not old_file.exists(), "the retired generation's file is removed"
    searcher.refresh()
    assert searcher.index.resolved_factory == "IVF16,Flat" and searcher.index.ntotal == 300
    searcher.index.base.set_nprobe(16)  # every list: exact, so the ranking must not change
    assert [h.id for h in searcher.search_vector(query, 10)] == before
    # Without --factory, the next rebuild keeps the serving index type.
    assert rebuild(fast, store, tiny_encoder).factory == "IVF16,Flat"
    store.close()


def test_a_pooling_change_re_embeds_everything(settings: Settings, tiny_encoder: Encoder, tiny_model_dir) -> None:
    store = _indexed(settings, tiny_encoder, 50)
    cls = settings.model_copy(update={"pooling": "cls"})
    other = Encoder(model=str(tiny_model_dir), pooling="cls", dtype="float32", device="cpu")
    summary = rebuild(cls, store, other)
    assert (summary.embedded, summary.reused, summary.vectors) == (50, 0, 50)
    generation = store.active_generation()
    assert generation is not None and generation.pooling == "cls"
    hit = open_dense(cls, other, store).search(_docs(8)[7].text, k=1)[0]
    assert hit.id == "d7"
    store.close()


def test_an_interrupted_rebuild_leaves_the_serving_index_and_can_run_again(
    settings: Settings, tiny_encoder: Encoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = _indexed(settings, tiny_encoder, 100)
    serving = store.active_generation()
    assert serving is not None
    ivf = settings.model_copy(update={"index_factory": "IVF8,Flat"})

    def crash(*_args: object) -> int:
        raise KeyboardInterrupt("killed during the switch")

    monkeypatch.setattr(rebuild_module, "_switch", crash)
    with pytest.raises(KeyboardInterrupt):
        rebuild(ivf, store, tiny_encoder)
    still = store.active_generation()
    assert still is not None and (still.id, still.factory) == (serving.id, "Flat")
    assert open_searcher(settings, tiny_encoder, store).index.ntotal == 100
    monkeypatch.undo()
    # Changes made meanwhile are caught up at the switch: a new document, a deleted one.
    enqueue(store, [DocumentIn("late", "water tree fire.", "")])
    from indexer.write.worker import Worker

    Worker(tiny_encoder, store, IndexCatalog(store, settings.index_dir), Chunker(tiny_encoder)).drain()
    store.delete_documents(["d0"])
    summary = rebuild(ivf, store, tiny_encoder)
    assert summary.factory == "IVF8,Flat" and summary.vectors == 100
    files = sorted(p.name for p in settings.index_dir.glob("*.faiss"))
    assert len(files) == 1 and files[0].startswith(f"gen-{summary.generation:06d}-"), "the others are gone"
    held = open_searcher(settings, tiny_encoder, store).index.ids()
    assert np.array_equal(np.sort(held), np.asarray(sorted(store.all_chunk_ids())))
    store.close()


def test_readers_and_the_worker_follow_a_model_change(settings: Settings, tiny_encoder: Encoder) -> None:
    from indexer.write.worker import BackgroundWorker, open_worker

    live = settings.model_copy(update={"reload_seconds": 0.05, "publish_seconds": 0.05})
    store = _indexed(live, tiny_encoder, 30)
    searcher = open_dense(live, store=store, watch=True)
    background = BackgroundWorker(open_worker(live))
    background.start()
    try:
        assert searcher.refresh().encoder.pooling == "mean"
        summary = rebuild(live.model_copy(update={"pooling": "cls"}), store)
        # No restart: the next look brings the new generation with an encoder of its pooling.
        serving = searcher.refresh(force=True)
        assert (serving.encoder.pooling, serving.index.ntotal) == ("cls", 30)
        assert store.active_generation().id == summary.generation  # type: ignore[union-attr]
        assert searcher.search(_docs(8)[7].text, k=1)[0].id == "d7"
        # The worker embeds new documents with the new pooling too.
        enqueue(store, [DocumentIn("late", "water tree fire.", "")])
        deadline = time.monotonic() + 30
        while store.get_document("late").status != "indexed":  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "the worker did not follow the new model"
            time.sleep(0.05)
        assert searcher.refresh(force=True).index.ntotal == 31
        assert searcher.search("water tree fire.", k=1)[0].id == "late"
    finally:
        background.stop()
        store.close()


def test_a_worker_started_after_a_model_change_follows_it_at_once(settings: Settings, tiny_encoder: Encoder) -> None:
    from indexer.write.worker import BackgroundWorker, open_worker

    live = settings.model_copy(update={"reload_seconds": 0.05, "publish_seconds": 0.05})
    store = _indexed(live, tiny_encoder, 30)
    rebuild(live.model_copy(update={"pooling": "cls"}), store)
    # Its settings still say mean pooling: start-up meets the cls generation and must follow it, not back off.
    worker = open_worker(live, tiny_encoder)
    background = BackgroundWorker(worker)
    background.start()
    try:
        enqueue(store, [DocumentIn("late", "water tree fire.", "")])
        deadline = time.monotonic() + 10
        while store.get_document("late").status != "indexed":  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "the worker did not follow the new model"
            time.sleep(0.05)
        assert worker.encoder.pooling == "cls"
        assert worker.state.snapshot().failures_total == 0
    finally:
        background.stop()
        store.close()
