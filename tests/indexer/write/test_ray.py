"""`rebuild --engine ray`: the embedding stage on Ray Data, on one local Ray instance shared by the file
(starting Ray is the slow part)."""

from __future__ import annotations

import random
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import ray
from dense_path import open_dense

from indexer.cli.main import main
from indexer.ingest.chunking import Chunker
from indexer.write.pipeline import Indexer
from indexer.write.rebuild import rebuild
from search.components import open_searcher
from search.dense.catalog import IndexCatalog
from search.embedding.encoder import Encoder
from search.settings import Settings
from search.storage.records import DocumentIn
from search.storage.store import Store
from search.storage.vectors import VectorRows

WORDS = ["cat", "dog", "gene", "virus", "python", "star", "water", "tree", "fire", "cell", "sun", "moon"]


class KilledError(Exception):
    """Stands for a kill of the rebuild in the middle of the Ray stage."""


@pytest.fixture(scope="module")
def ray_instance() -> Iterator[None]:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    try:
        yield
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def cls_encoder(tiny_model_dir: Path) -> Encoder:
    return Encoder(model=str(tiny_model_dir), pooling="cls", dtype="float32", device="cpu")


def _docs(n: int) -> list[DocumentIn]:
    # Distinct texts long enough for several chunks; some with a title, which the embedded text starts with.
    rng = random.Random(7)
    return [
        DocumentIn(f"d{i}", " ".join(rng.choice(WORDS) for _ in range(40)) + ".", "star title" if i % 3 else "")
        for i in range(n)
    ]


def _indexed(settings: Settings, encoder: Encoder, n: int) -> Store:
    store = Store(settings.resolved_database_url)
    Indexer(encoder, store, IndexCatalog(store, settings.index_dir), Chunker(encoder, 16, 2)).run(_docs(n))
    return store


def _vectors(store: Store, encoder: Encoder) -> tuple[np.ndarray, np.ndarray]:
    ids, vectors = VectorRows(store, encoder.space.key, encoder.dim).fetch(store.all_chunk_ids())
    order = np.argsort(ids)
    return ids[order], vectors[order]


def test_ray_engine_gives_the_local_vectors_and_a_searchable_generation(
    ray_instance: None, settings: Settings, tiny_encoder: Encoder, cls_encoder: Encoder
) -> None:
    fast = settings.model_copy(update={"reload_seconds": 0.05})
    local = fast.model_copy(update={"data_dir": fast.data_dir / "local"})
    remote = fast.model_copy(update={"data_dir": fast.data_dir / "ray"})
    stores = {name: _indexed(s, tiny_encoder, 30) for name, s in (("local", local), ("ray", remote))}
    chunks = sorted(stores["ray"].all_chunk_ids())
    assert len(chunks) >= 60, "several chunks a document"

    rebuild(local.model_copy(update={"pooling": "cls"}), stores["local"], cls_encoder)
    summary = rebuild(remote.model_copy(update={"pooling": "cls"}), stores["ray"], cls_encoder, engine="ray", block=16)

    # Every chunk embedded once (a second vector for a chunk would count here, though SQL keeps one).
    assert (summary.embedded, summary.reused, summary.vectors) == (len(chunks), 0, len(chunks))
    ids, vectors = _vectors(stores["ray"], cls_encoder)
    assert ids.tolist() == chunks
    local_ids, local_vectors = _vectors(stores["local"], cls_encoder)
    assert local_ids.tolist() == chunks
    assert stores["ray"].chunk_inputs(chunks) == stores["local"].chunk_inputs(chunks), "same documents, same chunks"
    assert np.allclose(vectors, local_vectors, atol=1e-5)
    assert not np.allclose(vectors, _vectors(stores["ray"], tiny_encoder)[1], atol=1e-3), "a new space, not a copy"

    generation = stores["ray"].active_generation()
    assert generation is not None and (generation.id, generation.pooling) == (summary.generation, "cls")
    searcher = open_dense(remote.model_copy(update={"pooling": "cls"}), cls_encoder, stores["ray"])
    assert searcher.index.ntotal == len(chunks)
    for n in (0, len(chunks) // 2, len(chunks) - 1):
        assert searcher.search_vector(vectors[n], 1)[0].chunk_id == chunks[n]
    for store in stores.values():
        store.close()


def test_an_interrupted_ray_stage_keeps_its_blocks_and_a_rerun_embeds_the_rest(
    ray_instance: None,
    settings: Settings,
    tiny_encoder: Encoder,
    cls_encoder: Encoder,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fast = settings.model_copy(update={"reload_seconds": 0.05})
    store = _indexed(fast, tiny_encoder, 20)
    chunks = sorted(store.all_chunk_ids())
    serving = store.active_generation()
    assert serving is not None
    cls = fast.model_copy(update={"pooling": "cls"})
    original = VectorRows.write

    def write_then_die(self: VectorRows, ids: list[int], vectors: np.ndarray) -> None:
        original(self, ids, vectors)
        raise KilledError("killed after the first block")

    monkeypatch.setattr(VectorRows, "write", write_then_die)
    with pytest.raises(KilledError):
        rebuild(cls, store, cls_encoder, engine="ray", block=16)
    monkeypatch.undo()

    still = store.active_generation()
    assert still is not None and (still.id, still.pooling) == (serving.id, "mean")
    assert open_searcher(fast, tiny_encoder, store).index.ntotal == len(chunks)
    kept_ids, kept = _vectors(store, cls_encoder)
    assert 0 < len(kept_ids) <= 16, "the first block is committed, nothing after it"

    written: list[int] = []

    def counting(self: VectorRows, ids: list[int], vectors: np.ndarray) -> None:
        written.extend(ids)
        original(self, ids, vectors)

    monkeypatch.setattr(VectorRows, "write", counting)
    summary = rebuild(cls, store, cls_encoder, engine="ray", block=16)
    assert sorted(written) == sorted(set(chunks) - set(kept_ids.tolist())), "only the rest is embedded"
    assert (summary.embedded, summary.vectors) == (len(chunks) - len(kept_ids), len(chunks))
    generation = store.active_generation()
    assert generation is not None and (generation.id, generation.pooling) == (summary.generation, "cls")
    ids, vectors = _vectors(store, cls_encoder)
    assert ids.tolist() == chunks
    assert np.array_equal(vectors[np.isin(ids, kept_ids)], kept), "the first run's vectors are kept"
    assert [p.name.split("-")[1] for p in fast.index_dir.glob("*.faiss")] == [f"{summary.generation:06d}"]
    store.close()


def test_without_ray_the_cli_says_how_to_get_it(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails as if it were not installed
    args = ["rebuild", "--engine", "ray", "--data-dir", str(settings.data_dir), "--model", settings.model]
    assert main([*args, "--dtype", "float32", "--device", "cpu"]) == 2
    assert "--engine ray needs Ray: pip install 'semsearch[ray]'" in capsys.readouterr().err
    assert not settings.data_dir.exists(), "it fails before touching anything"
