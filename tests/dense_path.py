"""Dense searches in tests through the path production takes: `HybridSearcher` in `dense` mode.

Test modules import this as `dense_path` (tests/ is on sys.path, as for cli_runner). `Dense` keeps the
short calls the tests make (`search`, `search_many`, `search_vector`) and forwards everything else
(`index`, `store`, `refresh`, ...) to the hybrid searcher, then to its dense retriever.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from search.components import open_hybrid
from search.embedding.encoder import Encoder
from search.keyword.index import KeywordIndex
from search.query.hits import HybridHit
from search.query.hybrid import HybridSearcher
from search.query.searcher import FilterSpec, Searcher
from search.settings import Settings
from search.storage.store import Store


class Dense:
    """A hybrid searcher asked in dense mode only."""

    def __init__(self, hybrid: HybridSearcher) -> None:
        self.hybrid = hybrid

    def search(self, query: str, k: int = 10, filter: FilterSpec = None) -> list[HybridHit]:
        return self.hybrid.search(query, k, filter, mode="dense")

    def search_many(self, queries: Sequence[str], k: int = 10, filter: FilterSpec = None) -> list[list[HybridHit]]:
        return self.hybrid.search_many(queries, k, filter, mode="dense")

    def search_vector(self, vector: np.ndarray, k: int, filter: FilterSpec = None) -> list[HybridHit]:
        return self.hybrid.search_by_vector(vector, k, filter)

    def __getattr__(self, name: str) -> Any:
        if hasattr(self.hybrid, name):
            return getattr(self.hybrid, name)
        return getattr(self.hybrid.dense, name)


def dense(searcher: Searcher, keyword_dir: Path) -> Dense:
    """Dense searches over `searcher` (a keyword index that may not exist: dense mode never reads it)."""
    return Dense(HybridSearcher(searcher, KeywordIndex(keyword_dir)))


def open_dense(
    settings: Settings, encoder: Encoder | None = None, store: Store | None = None, watch: bool = False
) -> Dense:
    """`search.components.open_hybrid`, asked in dense mode."""
    return Dense(open_hybrid(settings, encoder, store, watch))
