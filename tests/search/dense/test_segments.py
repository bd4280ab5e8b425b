"""A served view: its count of live vectors (the base's and the deltas', less what was deleted since),
and an exact search of a delta that never returns a deleted or filtered-out chunk."""

from __future__ import annotations

import numpy as np
import pytest

from search.dense.index import VectorIndex
from search.dense.segments import Delta, SegmentView


def _unit(rng: np.random.Generator, n: int, dim: int = 8) -> np.ndarray:
    v = rng.standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.mark.parametrize("sorted_ids", [True, False], ids=["ids given", "ids read from the base"])
def test_ntotal_counts_deletions_in_the_base_and_the_deltas_once(sorted_ids: bool) -> None:
    rng = np.random.default_rng(0)
    base = VectorIndex(8, "IVF4,Flat")  # its ids come back list by list, not in order
    ids = rng.permutation(np.arange(1_000, 1_400, dtype=np.int64))
    vectors = _unit(rng, len(ids))
    base.train(vectors)
    base.add(ids, vectors)
    assert not np.array_equal(base.ids(), np.sort(base.ids()))
    delta = Delta(np.arange(5_000, 5_020, dtype=np.int64), _unit(rng, 20))
    # Deleted: 30 of the base, 5 of the delta, and ids held by neither (below, between and above them).
    removed = np.unique(np.concatenate([ids[:30], delta.ids[:5], [1, 2_000, 9_999]])).astype(np.int64)
    view = SegmentView(base, 7, (delta,), removed, np.sort(base.ids()) if sorted_ids else None)
    assert view.ntotal == 400 + 20 - 35 == len(view.ids())
    empty = SegmentView(VectorIndex(8, "Flat"), 0, (delta,), removed, np.empty(0, np.int64))
    assert empty.ntotal == 15


def _exact(delta: Delta, query: np.ndarray, k: int, allowed: np.ndarray | None, removed: np.ndarray) -> list[int]:
    live = [i for i in range(len(delta.ids)) if delta.ids[i] not in set(removed.tolist())]
    live = [i for i in live if allowed is None or delta.ids[i] in set(allowed.tolist())]
    scores = delta.vectors[live] @ query
    return [int(delta.ids[live[j]]) for j in np.argsort(-scores, kind="stable")[:k]]


@pytest.mark.parametrize(
    ("allowed_n", "removed_n"),
    [(None, 0), (None, 3), (None, 150), (5, 0), (5, 2), (180, 10), (0, 0)],
    ids=["all", "few removed", "most removed", "few allowed", "few allowed, some removed", "most allowed", "none"],
)
def test_a_delta_search_ranks_exactly_among_the_live_and_allowed_chunks(allowed_n: int | None, removed_n: int) -> None:
    rng = np.random.default_rng(3)
    delta = Delta(rng.permutation(np.arange(100, 300, dtype=np.int64)), _unit(rng, 200))
    removed = np.sort(rng.choice(delta.ids, removed_n, replace=False)) if removed_n else np.empty(0, np.int64)
    allowed = None if allowed_n is None else np.sort(rng.choice(delta.ids, allowed_n, replace=False))
    queries = _unit(rng, 2)
    k = 10
    scores, found = delta.search(queries, k, allowed, removed)
    for row, query in enumerate(queries):
        want = _exact(delta, query, k, allowed, removed)
        got = found[row][np.argsort(-scores[row], kind="stable")].tolist()
        assert got == want
        assert np.all(np.isfinite(scores[row]))
