"""The FastAPI application: `create_app(settings)` loads the encoder, index and store once, at start."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query
from fastapi.responses import FileResponse, Response
from pydantic import ValidationError

from api.server import (
    collection_routes,
    docs,
    document_routes,
    errors,
    key_routes,
    pages,
    snapshots,
    status,
    upload_route,
)
from api.server.auth import KeyCheck, require
from api.server.batches import batch_body, search_batch_json
from api.server.bodies import BoundedRoute
from api.server.deps import AdmissionDep, BatcherDep, HybridDep, SearchThreadsDep, SettingsDep
from api.server.embeddings import embedded
from api.server.embeddings import router as embeddings_router
from api.server.flow.admission import Admission
from api.server.flow.batcher import MicroBatcher
from api.server.flow.budget import check_hits
from api.server.flow.limits import BodySizeLimit
from api.server.flow.search_threads import SearchThreads
from api.server.index_lag import IndexLags, KeywordKeeper, observe_forever
from api.server.metrics import Metrics, MetricsMiddleware
from api.server.openai_errors import OPENAI_ERRORS, OpenAIErrors
from api.server.openai_models import router as models_router
from api.server.results import results
from api.server.schemas import (
    MAX_QUERY_CHARS,
    BatchSearchRequest,
    BatchSearchResponse,
    SearchRequest,
    SearchResponse,
)
from api.server.search_options import search_by_vector
from api.server.served import Served, ServedCollection, cancel, every, keep_fresh
from search.access import DEFAULT_COLLECTION, Role
from search.components import EncoderPool, make_encoder, open_keyword, open_searcher, open_store
from search.embedding.batching import cuda_available
from search.embedding.encoder import Encoder
from search.filters import MetadataFilter, parse_filter
from search.json_input import loads
from search.query.hits import FusionConfig, HybridHit, Mode, at_least
from search.query.hybrid import Arrange, HybridSearcher
from search.query.mmr import MMR
from search.query.searcher import Searcher
from search.settings import Settings
from search.timing import current_times
from search.validation import FieldError
from search.work.state import WorkerState

log = logging.getLogger(__name__)
_STATIC = Path(__file__).with_name("static")


def serving_settings(settings: Settings) -> Settings:
    """The settings the API runs with: unless set, one search thread per core the process may use,
    on a CPU an encoder on one core fewer (at least one), and room for as many requests as may wait
    for the encoder plus one per search thread.

    A forward pass is split across its threads, and when the event loop, the index searches and the
    SQL joins take a core from one of them the others wait for it: on the 2-core AVX2 machine, 8
    HTTP clients were served 15-25 % faster with one encoder thread than with two (interleaved runs,
    bench/http_load.py), the shared batches making up for the thread. Searches beyond one per core
    gain nothing (their Python holds one lock) and lose much: every thread waiting on that lock
    delays the encoder's and the event loop's turns. Indexing, which has the machine to itself, keeps
    every core."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    update: dict[str, int] = {}
    if settings.search_threads is None:
        update["search_threads"] = cores
    if settings.search_max_requests is None:
        threads = update.get("search_threads", settings.search_threads or 1)
        update["search_max_requests"] = settings.batch_max_pending + threads
    if settings.torch_threads is None and settings.device in ("auto", "cpu") and not cuda_available():
        update["torch_threads"] = max(1, cores - 1)
    return settings.model_copy(update=update) if update else settings


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings = serving_settings(app.state.settings)
    encoder = make_encoder(settings)
    encoders = EncoderPool()
    encoders.add(settings, encoder)  # shared with every collection of the same model
    store = open_store(settings)
    encoder.on_batch = app.state.metrics.batch_rows.observe
    searcher = app.state.searcher = open_searcher(settings, encoder, store, watch=True)
    hybrid = app.state.hybrid = HybridSearcher(searcher, open_keyword(settings), FusionConfig.from_settings(settings))
    key_check = app.state.key_check = KeyCheck(store, settings.api_key)
    await key_check.is_open()  # known from the start: /health shows its details on an open server during an outage
    keeper: KeywordKeeper | None = app.state.keyword_keeper
    if keeper is not None:
        keeper.start(store, hybrid.keyword)
    app.state.index_lags = IndexLags(hybrid, keeper)
    # Created after the searcher: it finds the BLAS libraries loaded then (FAISS's among them).
    app.state.search_threads = SearchThreads(settings.search_threads or 1)
    admission = app.state.admission = Admission(settings.search_max_requests or settings.batch_max_pending)
    # Every query vector comes from this batcher, so concurrent requests share forward passes; it
    # takes the serving encoder once per batch (a rebuild may bring another model), which the
    # reloader below swaps in: no request ever waits for a reload.
    batcher = MicroBatcher(
        encoder,
        max_wait=settings.batch_wait_ms / 1000,
        max_rows=settings.batch_max_rows,
        current=lambda: searcher.serving.encoder,
        max_pending=settings.batch_max_pending,
    )
    reloader = asyncio.create_task(_reload_forever(searcher, settings.reload_seconds), name="index-reloader")
    observer = asyncio.create_task(observe_forever(app.state.index_lags, settings.reload_seconds), name="index-lags")
    served: Served | None = None
    try:
        async with batcher:
            app.state.batcher = batcher  # the default collection's (and every collection's of its model)
            default = ServedCollection(DEFAULT_COLLECTION, app.state.settings, hybrid, batcher)
            served = app.state.served = Served(
                settings,
                store,
                default,
                encoders,
                lambda own: _batcher_for(own, encoders.get(own)),
                app.state.keyword_keepers,
            )
            refresher = asyncio.create_task(keep_fresh(served, settings.reload_seconds), name="collections")
            try:
                yield
            finally:
                admission.close()  # from here on a new search is a 503, before the batchers stop
                await cancel(refresher)
                await served.stop()
    finally:
        for task in (reloader, observer):
            await cancel(task)
        if keeper is not None:
            await asyncio.to_thread(keeper.stop)
        store.close()


def _batcher_for(settings: Settings, encoder: Encoder) -> MicroBatcher:
    """The batcher of a collection whose model no other served collection shares."""
    return MicroBatcher(
        encoder, settings.batch_wait_ms / 1000, settings.batch_max_rows, max_pending=settings.batch_max_pending
    )


async def _reload_forever(searcher: Searcher, interval: float) -> None:
    """Look for a newly published index every `interval` seconds, in a thread: a reload reads the
    file and may build an encoder, which on the event loop would stall every request meanwhile."""
    failed = "loading the newly published index failed; still serving the previous one"
    await every(interval, lambda: asyncio.to_thread(searcher.refresh), failed)


public = APIRouter(route_class=BoundedRoute)
protected = APIRouter(route_class=BoundedRoute)


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


# The search routes are coroutines that never block the event loop: query vectors come from the
# shared batcher (the model runs in its thread), the index searches and the SQL join in the thread pool.
@protected.post("/search", response_model=SearchResponse, summary="Search documents")
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


@protected.get("/search", response_model=SearchResponse, summary="Search documents (query string)")
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


@protected.post("/search/batch", response_model=BatchSearchResponse, summary="Search several queries at once")
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


@public.get("/", include_in_schema=False)
def page() -> FileResponse:
    """The search page: plain HTML and JavaScript, no build step."""
    return FileResponse(_STATIC / "index.html", media_type="text/html")


async def _collection_path(collection: collection_routes.CollectionName) -> str:
    """Declares (and checks) the collection name in a prefixed route's path."""
    return collection


def create_app(
    settings: Settings | None = None,
    worker_state: WorkerState | None = None,
    keyword_keeper: KeywordKeeper | None = None,
    take_snapshot: snapshots.SnapshotTaker | None = None,
    keyword_keepers: Callable[[], KeywordKeeper] | None = None,
) -> FastAPI:
    """The application for `settings` (from the environment when not given); `worker_state` is the
    error budget of an indexing worker running beside it in this process, for /health and /stats;
    `keyword_keeper` applies the change log to the keyword index of its data directory where no
    worker does (`semsearch serve` hands one over; without it, only a worker keeps that index);
    `take_snapshot` writes the snapshots POST /snapshots asks for (without it, that route answers 404);
    `keyword_keepers` makes a keeper as `keyword_keeper` for each other collection the server opens."""
    app = FastAPI(
        title="semsearch",
        version="0.1.0",
        description="Semantic search over documents embedded with mean-pooled BERT vectors in FAISS.",
        lifespan=_lifespan,
        docs_url=None,  # served by api.server.docs from packaged assets: FastAPI's own loads them from a CDN
        redoc_url=None,
    )
    app.state.settings = settings or Settings()
    app.state.metrics = Metrics()
    app.state.worker_state = worker_state
    app.router.route_class = BoundedRoute  # the routes added to the app itself (the routers' are theirs)
    app.state.keyword_keeper = keyword_keeper
    app.state.keyword_keepers = keyword_keepers
    app.state.take_snapshot = take_snapshot
    # Added before the metrics middleware, so inside it: refused bodies are counted too.
    app.add_middleware(BodySizeLimit, max_bytes=app.state.settings.max_body_bytes)
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    app.add_middleware(OpenAIErrors)  # outermost: every error under /v1, the refused bodies' too
    errors.install(app)
    docs.install(app)
    app.include_router(public)
    app.include_router(status.public)
    # Every protected route and the role it needs, here alone (search.access says what each role may).
    # The routes of a collection are served twice: unprefixed for the collection `default`, as before
    # collections, and under /collections/{collection}/ for each one.
    per_collection = (
        (protected, Role.READ),  # search
        (embeddings_router, Role.READ),
        (models_router, Role.READ),
        (status.protected, Role.READ),  # /stats, /metrics
        (document_routes.reads, Role.READ),
        (document_routes.writes, Role.WRITE),
        (upload_route.router, Role.WRITE),
    )
    for router, role in per_collection:
        # The OpenAI-compatible routes declare their errors in OpenAI's shape (api/server/openai_errors.py).
        declared = OPENAI_ERRORS if router in (embeddings_router, models_router) else errors.ERRORS
        app.include_router(router, dependencies=[require(role)], responses=declared)
        app.include_router(
            router,
            prefix="/collections/{collection}",
            dependencies=[require(role), Depends(_collection_path)],
            responses=declared,
        )
    app.include_router(collection_routes.router, responses=errors.ERRORS)
    app.include_router(key_routes.router, dependencies=[require(Role.ADMIN, "all")], responses=errors.ERRORS)
    # A snapshot holds the deployment's own database: keys, collections and the collection `default`.
    app.include_router(snapshots.router, dependencies=[require(Role.ADMIN, "all")], responses=errors.ERRORS)
    return app
