"""The search routes: `POST`/`GET /search` and `POST /search/batch`, over the collection of the path
(api/server/deps.py). They are coroutines that never block the event loop: query vectors come from
the shared batcher (the model runs in its thread), the index searches and the SQL joins in the
thread pool."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import Response
from pydantic import ValidationError

from api.server import pages
from api.server.batches import batch_body, search_batch_json
from api.server.bodies import BoundedRoute
from api.server.deps import AdmissionDep, BatcherDep, HybridDep, SearchThreadsDep, SettingsDep
from api.server.embeddings import embedded
from api.server.flow.batcher import MicroBatcher
from api.server.flow.budget import check_hits
from api.server.flow.search_threads import SearchThreads
from api.server.results import results
from api.server.schemas import (
    MAX_QUERY_CHARS,
    BatchSearchRequest,
    BatchSearchResponse,
    SearchRequest,
    SearchResponse,
)
from api.server.search_options import search_by_vector
from search.filters import MetadataFilter, parse_filter
from search.json_input import loads
from search.query.hits import HybridHit, Mode, at_least
from search.query.hybrid import Arrange, HybridSearcher
from search.query.mmr import MMR
from search.timing import current_times
from search.validation import FieldError

router = APIRouter(route_class=BoundedRoute)


def _filter(raw: dict[str, Any] | None) -> MetadataFilter | None:
    """The request's metadata filter, validated; a bad one is a 422 that names the problem."""
    try:
        return parse_filter(raw)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from exc


async def _search(
    hybrid: HybridSearcher,
    batcher: MicroBatcher,
    threads: SearchThreads,
    queries: list[str],
    k: int,
    metadata_filter: MetadataFilter | None,
    mode: Mode,
    mmr: MMR | None = None,
    arrange: Arrange | None = None,
) -> list[list[HybridHit]]:
    """Ranked hits per query in `mode` (diversified by `mmr`); keyword mode spends no model time. In
    hybrid mode the keyword side (it needs no vectors) is ranked while the batcher embeds the queries.
    The index and SQL work runs in `threads` (at most search_threads at once; the others wait their
    turn). `arrange` cuts each ranking of `k` to the page shown (api/server/pages.py)."""
    if mode == "keyword":
        return await threads.run(
            hybrid.search_prepared, queries, None, k, metadata_filter, mode, None, None, mmr, arrange
        )
    pending = batcher.submit(queries)  # an overloaded batcher refuses here, before any keyword work
    keyword = None
    if mode == "hybrid":
        depth = k if mmr is None else mmr.fetch_k
        keyword = asyncio.ensure_future(threads.run(hybrid.rank_keywords, queries, depth, metadata_filter))
    try:
        vectors, serving = await embedded(pending, hybrid.dense, queries)
    except BaseException:
        if keyword is not None:  # its outcome no longer matters; retrieved so that it is never logged
            keyword.add_done_callback(lambda done: done.cancelled() or done.exception())
        raise
    ranked = None if keyword is None else await keyword
    return await threads.run(
        hybrid.search_prepared, queries, vectors, k, metadata_filter, mode, serving, ranked, mmr, arrange
    )


@router.post("/search", response_model=SearchResponse, summary="Search documents")
async def search_post(
    body: SearchRequest,
    hybrid: HybridDep,
    batcher: BatcherDep,
    threads: SearchThreadsDep,
    admission: AdmissionDep,
    settings: SettingsDep,
) -> SearchResponse:
    """The `top_k` best documents for the query (or its vector) in `mode` after the first `offset` (in
    relevance order, or in `sort`'s), each with its best chunk, and the value counts of the `facets` fields."""
    started = time.perf_counter()
    metadata_filter = _filter(body.filter)  # checked before the query costs any model time
    page = pages.pager(hybrid.store, pages.request_view(body, settings.search_max_hits))
    mmr = None if body.mmr is None else body.mmr.settings()
    depth = page.shown.depth
    with admission.admit():
        if body.vector is not None:
            hits = await search_by_vector(hybrid, threads, body.vector, depth, metadata_filter, mmr, page)
        else:
            assert body.query is not None  # one of the two, checked by SearchRequest
            lists = await _search(hybrid, batcher, threads, [body.query], depth, metadata_filter, body.mode, mmr, page)
            hits = lists[0]
    times = current_times()
    if times is not None:  # from here on the answer is made: results, response model, JSON
        times.serialise_from = time.perf_counter()
    hits = at_least(hits, body.min_score)
    took_ms = (time.perf_counter() - started) * 1000
    return SearchResponse(results=results(hits), took_ms=took_ms, facets=pages.facets(page))


@router.get("/search", response_model=SearchResponse, summary="Search documents (query string)")
async def search_get(
    hybrid: HybridDep,
    batcher: BatcherDep,
    threads: SearchThreadsDep,
    admission: AdmissionDep,
    settings: SettingsDep,
    q: Annotated[str, Query(min_length=1, max_length=MAX_QUERY_CHARS)],
    k: Annotated[int, Query(ge=1, le=1000)] = 10,
    filter: Annotated[str | None, Query(description='A metadata filter as JSON, e.g. {"kind": "animal"}.')] = None,
    mode: Annotated[Mode, Query(description="hybrid (default), dense or keyword.")] = "hybrid",
    min_score: Annotated[float | None, Query(description="Only hits scoring at least this.")] = None,
    offset: Annotated[int, Query(ge=0, description="Results to skip (see the POST form).")] = 0,
    sort: Annotated[str | None, Query(description='A metadata field, "-field" for descending.')] = None,
    facets: Annotated[list[str] | None, Query(description="A field to count values of; repeat for several.")] = None,
) -> SearchResponse:
    """`GET /search?q=...&k=10&filter={...}&offset=10&sort=-year&facets=team`, the same as the POST form."""
    try:
        raw = None if filter is None else loads(filter, "filter")
    except FieldError as exc:  # nested too deep
        raise HTTPException(422, str(exc)) from exc
    except ValueError as exc:
        raise HTTPException(422, f"filter is not valid JSON: {exc}") from exc
    if raw is not None and not isinstance(raw, dict):
        raise HTTPException(422, f"filter must be a JSON object of field: condition, got {str(filter)[:60]!r}")
    try:
        body = SearchRequest(
            query=q, top_k=k, filter=raw, mode=mode, min_score=min_score, offset=offset, sort=sort, facets=facets or []
        )
    except ValidationError as exc:
        raise HTTPException(
            422, "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        ) from exc
    return await search_post(body, hybrid, batcher, threads, admission, settings)


@router.post("/search/batch", response_model=BatchSearchResponse, summary="Search several queries at once")
async def search_batch(
    body: BatchSearchRequest,
    hybrid: HybridDep,
    batcher: BatcherDep,
    threads: SearchThreadsDep,
    admission: AdmissionDep,
    settings: SettingsDep,
) -> Response:
    """One result list per query, in query order. The queries are embedded and searched a few at a time,
    taking turns with other requests (api/server/batches.py)."""
    too_long = [i for i, q in enumerate(body.queries) if not q or len(q) > MAX_QUERY_CHARS]
    if too_long:
        raise HTTPException(422, f"queries {too_long[:10]} are empty or longer than {MAX_QUERY_CHARS} characters")
    # A single search needs no check: its top_k and fetch_k (at most 1000) are within any budget the
    # settings allow. MMR's candidates are counted as hits: each is ranked and its vector read.
    mmr = None if body.mmr is None else body.mmr.settings()
    check_hits(len(body.queries), body.top_k if mmr is None else mmr.fetch_k, settings.search_max_hits)
    started = time.perf_counter()
    metadata_filter = _filter(body.filter)
    with admission.admit():
        pieces = await search_batch_json(
            hybrid, batcher, threads, body.queries, body.top_k, metadata_filter, body.mode, body.min_score, mmr
        )
    took_ms = (time.perf_counter() - started) * 1000
    return Response(batch_body(pieces, took_ms), media_type="application/json")
