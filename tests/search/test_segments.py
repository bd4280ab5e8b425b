"""A served view's count of live vectors: the base's and the deltas', less what was deleted since."""

from __future__ import annotations

import numpy as np
import pytest

from search.index import VectorIndex
from search.segments import Delta, SegmentView


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
