"""A LlamaIndex `VectorStoreQuery` as the arguments of a semsearch search: its text or its embedding,
its mode (MMR with `mmr_threshold` as lambda, hybrid, text search) and its filters. A mode the server
has no counterpart for is refused by name rather than searched in another."""

from __future__ import annotations

import math
from typing import Any

from llama_index.core.vector_stores.types import VectorStoreQuery, VectorStoreQueryMode

from api.client.llamaindex_filters import to_semsearch_filter

# Candidates MMR picks among, per document wanted, unless `mmr_prefetch_k` or `mmr_prefetch_factor`
# says otherwise (LlamaIndex's own stores take those keyword arguments).
MMR_PREFETCH_FACTOR = 4.0
_MAX_FETCH_K = 1000  # the server's bound on mmr.fetch_k
_MODES = {
    VectorStoreQueryMode.HYBRID: "hybrid",
    VectorStoreQueryMode.TEXT_SEARCH: "keyword",
}


def search_args(query: VectorStoreQuery, store_mode: str | None, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments of `SemsearchClient.search` for `query`; `store_mode` is the store's own
    mode (for text queries in the default and MMR modes); `kwargs` those of the store's `query`."""
    mode = VectorStoreQueryMode(query.mode)  # a plain string where the query was built with one
    args: dict[str, Any] = {"top_k": query.similarity_top_k, "filter": to_semsearch_filter(query.filters)}
    if kwargs.get("min_score") is not None:
        args["min_score"] = kwargs["min_score"]
    if query.query_str:
        args["query"] = query.query_str
        args["mode"] = _MODES.get(mode, store_mode)
    elif query.query_embedding is not None:
        args["vector"] = list(query.query_embedding)  # dense mode, the server's default for a vector
        if mode in _MODES:
            raise ValueError(f"a {mode.value} query needs its text (query_str), not only an embedding")
    else:
        raise ValueError("the query needs its text (query_str) or its embedding (query_embedding)")
    if mode == VectorStoreQueryMode.MMR:
        args["mmr"] = _mmr(query, kwargs)
    elif mode not in (VectorStoreQueryMode.DEFAULT, *_MODES):
        raise ValueError(f"semsearch has no {mode.value!r} query mode: use default, mmr, hybrid or text_search")
    return args


def _mmr(query: VectorStoreQuery, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The server's `mmr`: `mmr_threshold` (the query's, else the keyword argument's) is its lambda."""
    threshold = query.mmr_threshold if query.mmr_threshold is not None else kwargs.get("mmr_threshold")
    k = query.similarity_top_k
    fetch_k = kwargs.get("mmr_prefetch_k")
    if fetch_k is None:
        fetch_k = min(_MAX_FETCH_K, max(k, math.ceil(k * kwargs.get("mmr_prefetch_factor", MMR_PREFETCH_FACTOR))))
    return {"lambda": 0.5 if threshold is None else threshold, "fetch_k": fetch_k}
