"""A search request's page, sort and facets (search/query/paging.py) as the routes take and answer them."""

from __future__ import annotations

from fastapi import HTTPException

from api.server.schemas import FacetValue, SearchRequest
from search.query.paging import Pager, View, view
from search.storage.store import Store
from search.validation import json_safe


def request_view(body: SearchRequest, max_hits: int) -> View:
    """The part of the ranking `body` asks for; a 422 naming `offset`, `sort` or `facets` when out of bounds."""
    try:
        return view(body.top_k, body.offset, body.sort, body.facets, max_hits)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from exc


def pager(store: Store, shown: View) -> Pager:
    """What cuts the request's ranking down to its page, counting its facets."""
    return Pager.over(store, shown)


def facets(cut: Pager) -> dict[str, list[FacetValue]]:
    """The facet counts of the request's one query, as the response carries them."""
    counted = cut.facets[0] if cut.facets else {}
    # A string stored before writes were validated may hold a lone surrogate: shown as results show it.
    return {
        name: [FacetValue(value=json_safe(f.value), count=f.count) for f in values] for name, values in counted.items()
    }
