"""The FastAPI application: `create_app(settings)` loads the encoder, index and store once, at start."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import APIRouter, Depends, FastAPI
from fastapi.responses import FileResponse

from api.server import (
    collection_routes,
    docs,
    document_routes,
    errors,
    key_routes,
    search_routes,
    snapshots,
    status,
    upload_route,
)
from api.server.auth import KeyCheck, require
from api.server.bodies import BoundedRoute
from api.server.embeddings import router as embeddings_router
from api.server.flow.admission import Admission
from api.server.flow.batcher import MicroBatcher
from api.server.flow.limits import BodySizeLimit
from api.server.flow.search_threads import SearchThreads
from api.server.index_lag import IndexLags, KeywordKeeper, observe_forever
from api.server.metrics import Metrics, MetricsMiddleware
from api.server.openai_errors import OPENAI_ERRORS, OpenAIErrors
from api.server.openai_models import router as models_router
from api.server.served import Served, ServedCollection, cancel, every, keep_fresh
from search.access import DEFAULT_COLLECTION, Role
from search.components import EncoderPool, make_encoder, open_keyword, open_searcher, open_store
from search.embedding.batching import cuda_available
from search.embedding.encoder import Encoder
from search.query.hits import FusionConfig
from search.query.hybrid import HybridSearcher
from search.query.searcher import Searcher
from search.settings import Settings
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
            if app.state.freeze_heap:
                # What was loaded (the model, its runtime, the libraries) lives as long as the server:
                # out of the collector's reach, its full collections no longer walk it amid requests
                # (p99 of 8 hybrid clients 256-341 -> 139-180 ms in alternating runs).
                gc.collect()
                gc.freeze()
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
    # Set by the server process (`semsearch serve`), not by apps in a process that outlives them.
    app.state.freeze_heap = False
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
        (search_routes.router, Role.READ),
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
