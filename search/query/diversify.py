"""A fused ranking diversified by maximal marginal relevance (search/query/mmr.py), with the stored
vectors of its chunks: the hybrid searcher's last step when a request asks for MMR."""

from __future__ import annotations

import numpy as np

from search.dense.segments import SegmentView
from search.query.fusion import min_max
from search.query.hits import Fused
from search.query.mmr import mmr_order
from search.storage.store import Store
from search.storage.vectors import VectorRows
from search.timing import timed


def diversify(store: Store, index: SegmentView, ranking: list[Fused], k: int, lambda_: float, mode: str) -> list[Fused]:
    """The `k` documents of `ranking` (its fetch_k best) MMR picks, novelty judged by the stored
    vectors of their chunks shown in `index`'s space (read from SQL, exact whatever the index type;
    a chunk without one, not embedded yet, is like nothing). Relevance is the cosine in dense mode;
    other scores are scaled to [0, 1] to weigh against cosines."""
    if not ranking:
        return ranking
    with timed("sql"):
        found, stored = VectorRows(store, index.space, index.dim).fetch([f.chunk.chunk_id for f in ranking])
    by_chunk = dict(zip(found.tolist(), stored, strict=True))
    none = np.zeros(index.dim, dtype=np.float32)
    vectors = np.stack([by_chunk.get(f.chunk.chunk_id, none) for f in ranking])
    scores = [(i, f.score) for i, f in enumerate(ranking)]
    relevance = np.array([s for _, s in scores] if mode == "dense" else list(min_max(scores).values()))
    return [ranking[i] for i in mmr_order(relevance, vectors, k, lambda_)]
