"""Maximal marginal relevance: picks, one at a time, the candidate most relevant to the query and least
like those already picked (Carbonell and Goldstein, 1998), so that a page of near-duplicates gives way
to documents that say something else."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# The bounds of a request's MMR settings, checked in one place (the API's schema reads them too).
MAX_FETCH_K = 1000


@dataclass(frozen=True)
class MMR:
    """How a ranking is diversified: `lambda_` weighs relevance against novelty (1: relevance alone,
    the plain order; 0: novelty alone), among the `fetch_k` best candidates."""

    lambda_: float = 0.5
    fetch_k: int = 20

    def __post_init__(self) -> None:
        if not 0.0 <= self.lambda_ <= 1.0:
            raise ValueError(f"mmr lambda must be between 0 and 1, got {self.lambda_}")
        if not 1 <= self.fetch_k <= MAX_FETCH_K:
            raise ValueError(f"mmr fetch_k must be between 1 and {MAX_FETCH_K}, got {self.fetch_k}")

    def check_k(self, k: int) -> None:
        """Refuse (ValueError) a page of `k` documents picked among fewer candidates."""
        if self.fetch_k < k:
            raise ValueError(f"mmr fetch_k ({self.fetch_k}) must be at least top_k ({k}): MMR picks top_k among them")


def mmr_order(relevance: np.ndarray, vectors: np.ndarray, k: int, lambda_: float) -> list[int]:
    """The positions of the `k` candidates MMR picks, in the order picked.

    `relevance[i]` is candidate i's relevance to the query, `vectors[i]` its L2-normalised vector (a
    row of zeros: a candidate without one, like nothing). Each step picks the candidate maximising
    lambda * relevance - (1 - lambda) * (its highest cosine to one already picked); ties go to the
    earlier candidate, so lambda 1 keeps the order of `relevance` (best first, stable)."""
    n = len(relevance)
    if len(vectors) != n:
        raise ValueError(f"{n} relevances for {len(vectors)} vectors")
    if not 0.0 <= lambda_ <= 1.0:
        raise ValueError(f"lambda must be between 0 and 1, got {lambda_}")
    k = min(k, n)
    if k <= 0:
        return []
    rel = np.asarray(relevance, dtype=np.float64)
    vecs = np.asarray(vectors, dtype=np.float64)
    picked: list[int] = []
    # The highest similarity of each candidate to any picked one (none yet: no penalty).
    nearest = np.full(n, -np.inf)
    free = np.ones(n, dtype=bool)
    for _ in range(k):
        penalty = np.where(np.isfinite(nearest), nearest, 0.0)
        gain = lambda_ * rel - (1.0 - lambda_) * penalty
        gain[~free] = -np.inf
        best = int(np.argmax(gain))  # the first of equal gains
        picked.append(best)
        free[best] = False
        nearest = np.maximum(nearest, vecs @ vecs[best])
    return picked
