"""The indexing pipeline: upserts keyed by document id, store and index in step, crash recovery."""

from __future__ import annotations

import numpy as np
import pytest

from indexer.ingest.chunking import Chunker
from indexer.ingest.sources import Rejected
from indexer.write.pipeline import Indexer
from search.dense.catalog import IndexCatalog, IndexMismatchError
from search.embedding.encoder import Encoder
from search.settings import Settings
from search.storage.records import DocumentIn
from search.storage.store import Store

LONG = " ".join(["The cat sat on the mat. A dog ran in the park with a big red ball."] * 12)


def _indexer(settings: Settings, encoder: Encoder, factory: str = "Flat", size: int = 32) -> Indexer:
    store = Store(settings.resolved_database_url)
    return Indexer(encoder, store, IndexCatalog(store, settings.index_dir), Chunker(encoder, size, 4), factory)


def _docs(n: int, prefix: str = "doc") -> list[DocumentIn]:
    words = ["cat", "dog", "gene", "virus", "python", "star", "water", "tree"]
    return [DocumentIn(f"{prefix}{i}", f"{words[i % 8]} {words[(i * 3) % 8]} text {i}", f"T{i}") for i in range(n)]


def _consistent(indexer: Indexer) -> None:
    stored = sorted(indexer.store.all_chunk_ids())
    assert sorted(indexer.index.ids().tolist()) == stored


def test_first_run_then_unchanged_then_updated(settings: Settings, tiny_encoder: Encoder) -> None:
    indexer = _indexer(settings, tiny_encoder)
    docs = [*_docs(10), DocumentIn("long", LONG, "Long")]
    first = indexer.run(docs)
    assert (first.added, first.updated, first.unchanged, first.rejected) == (11, 0, 0, 0)
    assert first.chunks == indexer.index.ntotal > 11  # the long document is several chunks
    _consistent(indexer)
    long_chunks = set(indexer.store.all_chunk_ids()) - set(range(1, 11))

    again = _indexer(settings, tiny_encoder).run(docs)
    assert (again.added, again.updated, again.unchanged, again.chunks) == (0, 0, 11, 0)

    reopened = _indexer(settings, tiny_encoder)
    changed = [
        DocumentIn("long", "now a short text", "Long"),
        DocumentIn("doc3", docs[3].text, "T3", {"v": 2}),
    ]
    third = reopened.run(changed)
    assert (third.added, third.updated, third.unchanged, third.chunks) == (0, 1, 1, 1)
    assert not long_chunks & set(reopened.index.ids().tolist()), "replaced chunks left the index"
    _consistent(reopened)
    hits = reopened.store.chunk_hits(reopened.store.all_chunk_ids())
    assert {h.document_id: h.metadata for h in hits.values()}["doc3"] == {"v": 2}


def test_rejections_are_counted_and_reported(settings: Settings, tiny_encoder: Encoder) -> None:
    from pathlib import Path

    seen: list[str] = []
    records = [_docs(1)[0], Rejected(Path("in.jsonl"), 2, "malformed JSON"), _docs(2)[1]]
    summary = _indexer(settings, tiny_encoder).run(records, on_reject=lambda r: seen.append(str(r)))
    assert summary.rejected == 1 and summary.added == 2 and seen == ["in.jsonl:2: malformed JSON"]
    assert summary.as_dict()["documents"] == 2


def test_delete_missing_mirrors_the_input_unless_a_record_was_rejected(
    settings: Settings, tiny_encoder: Encoder
) -> None:
    from pathlib import Path

    indexer = _indexer(settings, tiny_encoder)
    indexer.run(_docs(10))
    bad = Rejected(Path("in.jsonl"), 3, "malformed JSON")
    kept = indexer.run([*_docs(4), bad], delete_missing=True)
    assert kept.deleted == 0 and indexer.store.counts()["documents"] == 10, "a rejected record's document may be lost"

    mirrored = indexer.run([*_docs(4), DocumentIn("new", "a new text about stars", "N")], delete_missing=True)
    assert (mirrored.deleted, mirrored.added, mirrored.unchanged) == (6, 1, 4)
    assert sorted(indexer.store.external_ids()) == ["doc0", "doc1", "doc2", "doc3", "new"]
    _consistent(indexer)
    assert indexer.run(_docs(4)).deleted == 0 and indexer.store.counts()["documents"] == 5  # off unless asked


def test_a_lost_or_corrupt_base_file_is_rebuilt_from_sql(settings: Settings, tiny_encoder: Encoder) -> None:
    from indexer.write.maintenance import DenseIndex

    def check(indexer: Indexer):  # type: ignore[no-untyped-def]
        return DenseIndex(indexer.publisher).check(indexer.store)

    def repair(indexer: Indexer):  # type: ignore[no-untyped-def]
        return DenseIndex(indexer.publisher).repair(indexer.store)

    indexer = _indexer(settings, tiny_encoder)
    indexer.run(_docs(20))
    merged = indexer.publisher.sync(force=True)
    assert merged is not None and merged.vectors == 20
    path = indexer.catalog.path_of(indexer.store.active_generation())
    before = indexer.index.search(tiny_encoder.encode(["cat dog"]), 5)
    # A truncated file: check reports it, without a traceback; readers serve from SQL meanwhile.
    path.write_bytes(path.read_bytes()[:100])
    assert check(indexer).base_file == "unreadable" and not check(indexer).ok
    assert np.array_equal(indexer.index.search(tiny_encoder.encode(["cat dog"]), 5)[1], before[1])
    assert repair(indexer).ok and check(indexer).base_file == "ok"
    # A lost file: the next run rebuilds it from the vectors in SQL, embedding nothing again.
    path = indexer.catalog.path_of(indexer.store.active_generation())
    path.unlink()
    recovered = _indexer(settings, tiny_encoder)
    batches: list[int] = []
    tiny_encoder.on_batch = batches.append
    try:
        summary = recovered.run([])
    finally:
        tiny_encoder.on_batch = None
    assert summary.chunks == 0 and recovered.index.ntotal == 20 and batches == []
    assert check(recovered).base_file == "ok"
    _consistent(recovered)
    after = recovered.index.search(tiny_encoder.encode(["cat dog"]), 5)
    assert np.array_equal(before[1], after[1])
    # Documents deleted in the store while the base file still holds their vectors: readers drop them.
    recovered.store.delete_documents(["doc0", "doc1"])
    again = _indexer(settings, tiny_encoder)
    assert again.index.ntotal == 18
    _consistent(again)


def test_merges_fold_the_log_into_the_base_and_auto_grows(settings: Settings, tiny_encoder: Encoder) -> None:
    indexer = _indexer(settings, tiny_encoder, factory="auto")
    indexer.publisher.merge_min = 25  # merge after 25 changes instead of 20,000
    indexer.run(_docs(20))
    generation = indexer.store.active_generation()
    assert generation.base_seq == 0 and indexer.index.ntotal == 20  # below the threshold: the log serves
    indexer.run(_docs(30, prefix="more"))
    generation = indexer.store.active_generation()
    assert generation.base_seq > 0 and generation.vectors == 50 and generation.index_type == "Flat"
    assert indexer.catalog.path_of(generation).exists()
    assert len(list(settings.index_dir.glob("gen-*.faiss"))) == 1  # the replaced base file is gone
    indexer.store.delete_documents([f"more{i}" for i in range(25)])
    indexer.run([])
    generation = indexer.store.active_generation()
    assert generation.vectors == 25 and indexer.index.ntotal == 25
    _consistent(indexer)
    # `auto` past the exact limit: the next merge re-trains an IVF base.
    import indexer.write.publisher as publisher_module

    publisher_module_limit = publisher_module.auto_factory
    try:
        publisher_module.auto_factory = lambda n: "IVF4,Flat"  # type: ignore[assignment]
        merged = indexer.publisher.sync(force=True)
    finally:
        publisher_module.auto_factory = publisher_module_limit  # type: ignore[assignment]
    assert merged is not None and merged.retrained and merged.index_type == "IVF4,Flat"
    _consistent(indexer)


def test_trained_index_types_wait_for_all_vectors(settings: Settings, tiny_encoder: Encoder) -> None:
    indexer = _indexer(settings, tiny_encoder, factory="IVF4,Flat")
    indexer.batch_docs = 3  # several batches, each too small to train four lists on its own
    indexer.run(_docs(30))
    indexer.publisher.sync(force=True)
    generation = indexer.store.active_generation()
    assert indexer.index.ntotal == 30 and generation.factory == "IVF4,Flat" and generation.index_type == "IVF4,Flat"
    _consistent(indexer)


def test_index_built_with_another_model_is_refused(settings: Settings, tiny_encoder: Encoder, tiny_model_dir) -> None:
    _indexer(settings, tiny_encoder).run(_docs(3))
    other = Encoder(model=str(tiny_model_dir), pooling="cls", dtype="float32", device="cpu")
    with pytest.raises(IndexMismatchError, match="cls pooling"):
        _indexer(settings, other)
