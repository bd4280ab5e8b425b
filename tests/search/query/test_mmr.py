"""Maximal marginal relevance as a pure function: its extremes, near-duplicates, and its bounds."""

from __future__ import annotations

import numpy as np
import pytest

from search.query.mmr import MAX_FETCH_K, MMR, mmr_order


def _unit(rows: list[list[float]]) -> np.ndarray:
    vectors = np.asarray(rows, dtype=np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


# Three near-copies of one direction, then two other directions.
VECTORS = _unit([[1, 0, 0], [1, 0.01, 0], [1, 0, 0.01], [0, 1, 0], [0, 0, 1]])
RELEVANCE = np.array([0.9, 0.89, 0.88, 0.5, 0.4])


def test_lambda_one_keeps_the_plain_order() -> None:
    assert mmr_order(RELEVANCE, VECTORS, 5, 1.0) == [0, 1, 2, 3, 4]
    # Ties keep the order given.
    assert mmr_order(np.array([0.5, 0.5, 0.5]), VECTORS[:3], 3, 1.0) == [0, 1, 2]


def test_lambda_zero_is_the_most_diverse() -> None:
    # The first pick is the most relevant; after it, each pick is the least like those picked.
    assert mmr_order(RELEVANCE, VECTORS, 3, 0.0) == [0, 3, 4]


def test_a_balance_passes_over_near_duplicates() -> None:
    picked = mmr_order(RELEVANCE, VECTORS, 3, 0.5)
    assert picked == [0, 3, 4]
    assert len({tuple(np.round(VECTORS[i], 1)) for i in picked}) == 3


def test_a_candidate_without_a_vector_is_like_nothing() -> None:
    vectors = VECTORS.copy()
    vectors[1] = 0.0
    assert mmr_order(RELEVANCE, vectors, 2, 0.5) == [0, 1]


def test_k_past_the_candidates_and_nothing() -> None:
    assert sorted(mmr_order(RELEVANCE, VECTORS, 50, 0.5)) == [0, 1, 2, 3, 4]
    assert mmr_order(np.empty(0), np.empty((0, 3)), 5, 0.5) == []
    with pytest.raises(ValueError, match="lambda"):
        mmr_order(RELEVANCE, VECTORS, 2, 1.5)
    with pytest.raises(ValueError, match="5 relevances for 4 vectors"):
        mmr_order(RELEVANCE, VECTORS[:4], 2, 0.5)


def test_settings_are_bounded() -> None:
    with pytest.raises(ValueError, match="lambda must be between 0 and 1"):
        MMR(lambda_=-0.1)
    with pytest.raises(ValueError, match="fetch_k must be between 1 and"):
        MMR(fetch_k=MAX_FETCH_K + 1)
    with pytest.raises(ValueError, match=r"fetch_k \(5\) must be at least top_k \(10\)"):
        MMR(fetch_k=5).check_k(10)
    MMR(lambda_=0.0, fetch_k=10).check_k(10)
