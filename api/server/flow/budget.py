"""The cost budget of one search request: the hits it asks for (queries x top_k), at most
`search_max_hits` (SEMSEARCH_SEARCH_MAX_HITS), counted before the request costs anything.

Each hit carries its chunk's text, title and metadata, some 1.3 KB of JSON on SciFact: a batch of 256
queries at top_k 1,000, each within its own limit, asked for 256,000 hits, and took the server 160 s
and a 318 MiB answer while other clients waited. 10,000 hits by default (Elasticsearch's
`index.max_result_window`, kept for the same reason) is an answer of about 13 MB, and lets any single
search (top_k is at most 1,000) and any batch of 256 queries at top_k 39 through. Clients with more
queries send them in several requests (the Python clients do so themselves).
"""

from __future__ import annotations


class SearchBudgetError(ValueError):
    """A search request asks for more hits than one request may (the API answers 422)."""

    def __init__(self, queries: int, top_k: int, limit: int) -> None:
        fits = limit // top_k
        advice = f"at most {fits} queries a request at top_k {top_k}, or a smaller top_k" if fits else "a smaller top_k"
        super().__init__(
            f"the request asks for {queries} queries x top_k {top_k} = {queries * top_k} hits, over the limit of "
            f"{limit} hits a request (SEMSEARCH_SEARCH_MAX_HITS): send {advice}"
        )
        self.cost = queries * top_k
        self.limit = limit


def check_hits(queries: int, top_k: int, limit: int) -> None:
    """Refuse (SearchBudgetError) a request of `queries` queries at `top_k` past `limit` hits."""
    if queries * top_k > limit:
        raise SearchBudgetError(queries, top_k, limit)
