"""Search hits as the API answers them: each retriever's hit made into a `SearchResult`."""

from __future__ import annotations

from dataclasses import fields

from api.server.schemas import SearchResult
from search.query.hits import HybridHit
from search.validation import json_safe

_HIT_FIELDS = tuple(f.name for f in fields(HybridHit))


def results(hits: list[HybridHit]) -> list[SearchResult]:
    """The hits of one query, in their order, as response items."""
    # Metadata stored before writes were validated may hold what JSON cannot (NaN, lone surrogates,
    # nesting past pydantic's limit): shown in a form it can, so one document never fails a search.
    # Fields are read off the hit, not through `asdict`, whose deep copy of every value cost more
    # than the rest of the response.
    return [
        SearchResult.model_validate(
            {**{name: getattr(hit, name) for name in _HIT_FIELDS}, "metadata": json_safe(hit.metadata)},
            from_attributes=True,  # the retrievers' signals are dataclasses
        )
        for hit in hits
    ]
