"""The FAISS wrapper: ids are chunk keys, saves are atomic, training happens on a sample."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from search.dense.index import AUTO_FLAT_LIMIT, VectorIndex, auto_factory


def _unit(n: int, dim: int = 16, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.mark.parametrize("factory", ["Flat", "HNSW16,Flat", "IVF4,Flat", "IVF4,SQ8"])
def test_ids_are_the_given_keys(factory: str) -> None:
    vectors = _unit(200)
    ids = np.arange(200, dtype=np.int64) * 1000 + 7  # sparse, large: not positions
    index = VectorIndex(16, factory)
    index.add(ids, vectors)
    assert index.ntotal == 200
    if factory.startswith("IVF"):
        index._index.nprobe = 4  # every list: exact for the check below
    scores, found = index.search(vectors[:10], 1)
    assert found[:, 0].tolist() == ids[:10].tolist()
    assert np.allclose(scores[:, 0], 1.0, atol=0.02)
    assert sorted(index.ids().tolist()) == ids.tolist()


def test_remove_and_missing_neighbours() -> None:
    index = VectorIndex(16)
    vectors = _unit(5)
    index.add(np.array([10, 20, 30, 40, 50]), vectors)
    assert index.remove(np.array([20, 99])) == 1
    scores, ids = index.search(vectors[1], 10)
    assert 20 not in ids[0]
    assert (ids[0] == -1).sum() == 6 and np.isinf(scores[0][ids[0] == -1]).all()


def test_save_is_atomic_and_load_round_trips(tmp_path: Path) -> None:
    index = VectorIndex(16)
    vectors = _unit(50)
    index.add(np.arange(50) + 100, vectors)
    path = tmp_path / "nested" / "gen.faiss"
    index.save(path)
    assert [p.name for p in path.parent.iterdir()] == ["gen.faiss"]  # no temporary file left behind
    for mmap in (False, True):
        loaded = VectorIndex.load(path, mmap=mmap)
        assert loaded.ntotal == 50 and loaded.dim == 16
        assert np.array_equal(loaded.search(vectors[:3], 2)[1], index.search(vectors[:3], 2)[1])
    with pytest.raises(FileNotFoundError, match="no index file"):
        VectorIndex.load(tmp_path / "absent.faiss")


def test_bad_input_is_refused_with_a_reason() -> None:
    index = VectorIndex(16)
    with pytest.raises(ValueError, match=r"shape \(n, 16\)"):
        index.add(np.arange(3), _unit(3, dim=8))
    with pytest.raises(ValueError, match="3 ids for 2 vectors"):
        index.add(np.arange(3), _unit(2))
    with pytest.raises(ValueError, match="unique"):
        index.add(np.array([1, 1]), _unit(2))
    with pytest.raises(ValueError, match="invalid FAISS index factory"):
        VectorIndex(16, "NoSuchIndex42")
    with pytest.raises(ValueError, match="dimension 8"):
        index.search(_unit(1, dim=8), 1)
    with pytest.raises(ValueError, match="needs at least"):
        VectorIndex(16, "IVF64,Flat").add(np.arange(10), _unit(10))
    assert index.ntotal == 0


def test_training_uses_a_sample_and_auto_resolves_by_size() -> None:
    assert auto_factory(1000) == "Flat"
    assert auto_factory(AUTO_FLAT_LIMIT).startswith("IVF") and auto_factory(1_000_000).endswith(",SQ8")
    index = VectorIndex(16, "auto")
    assert index.needs_training
    index.add(np.arange(300), _unit(300))
    assert index.resolved_factory == "Flat" and not index.needs_training
    empty = VectorIndex(16)
    assert empty.search(_unit(1), 3)[1].tolist() == [[-1, -1, -1]]


def test_nprobe_is_settable_on_ivf_only_and_saved(tmp_path: Path) -> None:
    ivf = VectorIndex(16, "IVF8,Flat")
    ivf.add(np.arange(400), _unit(400))
    ivf.set_nprobe(5)
    ivf.save(tmp_path / "ivf.faiss")
    assert VectorIndex.load(tmp_path / "ivf.faiss").nprobe == 5
    flat = VectorIndex(16)
    assert flat.nprobe is None
    with pytest.raises(ValueError, match="not an IVF index"):
        flat.set_nprobe(4)


@pytest.mark.parametrize("factory", ["Flat", "HNSW16,Flat", "IVF16,Flat", "IVF16,SQ8", "PCA8,IVF8,Flat"])
def test_search_among_ids_is_exact_over_the_allowed_vectors(factory: str) -> None:
    vectors = _unit(2000, seed=1)
    ids = np.arange(2000, dtype=np.int64) * 3 + 11
    index = VectorIndex(16, factory)
    index.add(ids, vectors)
    if index.nprobe is not None:
        index.set_nprobe(1)  # unfiltered, one list of 8-16: a rare filter would find almost nothing
    query = vectors[0]
    # The allowed vectors are those least like the query: an unfiltered top-k never reaches them.
    far = np.argsort(vectors @ query)[:12]
    scores, found = index.search(query, 5, ids=ids[far])
    expected = ids[far][np.argsort(-(vectors[far] @ query))[:5]]
    assert set(found[0].tolist()) <= set(ids[far].tolist()) and (found[0] >= 0).all()
    if factory.startswith("PCA"):
        assert len(set(found[0].tolist()) & set(expected.tolist())) >= 3  # PCA approximates the scores
    elif factory.endswith("SQ8"):
        assert set(found[0].tolist()) == set(expected.tolist())  # 8-bit codes may swap near ties
    else:
        assert found[0].tolist() == expected.tolist()
        assert np.allclose(scores[0], vectors[(found[0] - 11) // 3] @ query, atol=0.05)
    assert index.search(query, 5)[1][0].tolist() != found[0].tolist()


def test_search_among_ids_copes_with_few_empty_and_unknown_ids() -> None:
    index = VectorIndex(16, "IVF8,Flat")
    vectors = _unit(400)
    index.add(np.arange(400), vectors)
    scores, found = index.search(vectors[:2], 4, ids=np.array([7, 9, 100_000]))
    assert [sorted(row[row >= 0].tolist()) for row in found] == [[7, 9], [7, 9]]
    assert np.isinf(scores[found < 0]).all()
    assert index.search(vectors[0], 3, ids=np.empty(0, dtype=np.int64))[1].tolist() == [[-1, -1, -1]]


def test_filtered_nprobe_widens_for_rare_filters() -> None:
    from search.dense.index import _filtered_nprobe

    assert _filtered_nprobe(nprobe=4, nlist=1024, matching=1_000_000, k=10) == 4  # common: as configured
    assert _filtered_nprobe(nprobe=4, nlist=1024, matching=10_000, k=10) == 5
    assert _filtered_nprobe(nprobe=4, nlist=1024, matching=30, k=10) == 1024  # rare: every list
