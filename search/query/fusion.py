"""Fusing ranked lists: reciprocal rank fusion, a convex combination of min-max normalised scores, and
`bounded`, a convex combination of each document's own signals on their theoretical ranges.

For `rrf` and `convex` each input is one retriever's ranking, best first, as (key, score): every key
found by any retriever gets one fused score, and a key a retriever did not return gets nothing from
it, so a score depends on what else was returned. `bounded` takes one document's own signals."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import TypeVar

K = TypeVar("K", bound=Hashable)


def rrf(rankings: Sequence[Sequence[tuple[K, float]]], k: int = 60) -> dict[K, float]:
    """Reciprocal rank fusion (Cormack et al., 2009): sum over retrievers of 1 / (k + rank), ranks
    from 1. Scores are ignored, so retrievers on different scales need no calibration."""
    if k < 1:
        raise ValueError(f"rrf k must be at least 1, got {k}")
    fused: dict[K, float] = {}
    for ranking in rankings:
        for rank, (key, _score) in enumerate(ranking, start=1):
            fused[key] = fused.get(key, 0.0) + 1.0 / (k + rank)
    return fused


def min_max(ranking: Sequence[tuple[K, float]]) -> dict[K, float]:
    """Scores scaled to [0, 1] over this list (all 1.0 when they are equal)."""
    if not ranking:
        return {}
    scores = [score for _, score in ranking]
    low, high = min(scores), max(scores)
    span = high - low
    return {key: (score - low) / span if span > 0 else 1.0 for key, score in ranking}


def convex(rankings: Sequence[Sequence[tuple[K, float]]], weights: Sequence[float]) -> dict[K, float]:
    """Sum over retrievers of weight x min-max normalised score (a key missing from a list adds 0)."""
    if len(weights) != len(rankings):
        raise ValueError(f"{len(weights)} weights for {len(rankings)} rankings")
    fused: dict[K, float] = {}
    for ranking, weight in zip(rankings, weights, strict=True):
        for key, score in min_max(ranking).items():
            fused[key] = fused.get(key, 0.0) + weight * score
    return fused


def bounded(cosine: float, bm25: float, bm25_bound: float, weight: float) -> float:
    """A document's fused score from its own signals alone: weight x its cosine (below 0 counted as
    0) plus (1 - weight) x its BM25 over the query's bound (KeywordIndex.bound: 1 would be every
    query term saturated). In [0, 1], whatever else the query returned; the theoretical-range
    normalisation of Bruch et al. 2023 ("TMM"), with BM25's range bounded per query."""
    keyword = min(bm25 / bm25_bound, 1.0) if bm25_bound > 0 else 0.0
    return weight * max(cosine, 0.0) + (1.0 - weight) * max(keyword, 0.0)
