"""The FastAPI application: `create_app(settings)` loads the encoder, index and store once, at start."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import FileResponse, PlainTextResponse, Response
from starlette.concurrency import run_in_threadpool

from api import documents
from api.batcher import MicroBatcher
from api.deps import BatcherDep, HybridDep, SearcherDep, require_api_key
from api.limits import BodySizeLimit
from api.metrics import Metrics
from api.schemas import (
    MAX_QUERY_CHARS,
    BatchSearchRequest,
    BatchSearchResponse,
    Embedding,
    EmbeddingsRequest,
    EmbeddingsResponse,
    ErrorBody,
    Health,
    SearchRequest,
    SearchResponse,
    SearchResult,
    Stats,
    Usage,
)
from search.catalog import Serving
from search.components import make_encoder, open_keyword, open_searcher, open_store
from search.encoder import Encoder
from search.filters import MetadataFilter, parse_filter
from search.hybrid import FusionConfig, HybridHit, HybridSearcher, Mode
from search.searcher import Searcher
from search.settings import Settings

MAX_EMBED_INPUTS = 2048
_STATIC = Path(__file__).with_name("static")


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    encoder = make_encoder(settings)
    store = open_store(settings)
    encoder.on_batch = app.state.metrics.batch_rows.observe
    searcher = app.state.searcher = open_searcher(settings, encoder, store, watch=True)
    app.state.hybrid = HybridSearcher(searcher, open_keyword(settings), FusionConfig.from_settings(settings))
    # Every query vector comes from this batcher, so concurrent requests share forward passes; it
    # asks the searcher for the serving encoder once per batch (a rebuild may bring another model).
    batcher = MicroBatcher(
        encoder,
        max_wait=settings.batch_wait_ms / 1000,
        max_rows=settings.batch_max_rows,
        current=lambda: searcher.refresh().encoder,
    )
    try:
        async with batcher:
            app.state.batcher = batcher
            yield
    finally:
        store.close()


public = APIRouter()
# Every error any protected route can give, declared so that clients (and the schema fuzz test) know
# them: 400 an unreadable body, 401 a missing key, 413 a body over the size limit, 422 a bad request
# (a plain-text detail naming the problem, or the list of pydantic's validation errors).
ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorBody} for code in (400, 401, 413, 422)}
protected = APIRouter(dependencies=[Depends(require_api_key)], responses=ERRORS)


def _filter(raw: dict[str, Any] | None) -> MetadataFilter | None:
    """The request's metadata filter, validated; a bad one is a 422 that names the problem."""
    try:
        return parse_filter(raw)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from exc


def _results(hits: list[HybridHit]) -> list[SearchResult]:
    return [SearchResult(**asdict(hit)) for hit in hits]


@public.get("/health", response_model=Health, summary="Liveness")
def health() -> Health:
    """Answers while the process serves."""
    return Health()


async def _embed(batcher: MicroBatcher, searcher: Searcher, texts: list[str]) -> tuple[np.ndarray, Serving]:
    """Query vectors from the shared batcher, with the encoder-and-index pair they belong to."""
    vectors, encoder = await batcher.embed_with_encoder(texts)
    serving = searcher.serving
    if serving.encoder is not encoder:  # a generation with another model was swapped in meanwhile
        vectors = await run_in_threadpool(serving.encoder.encode, texts)
    return vectors, serving


async def _search(
    hybrid: HybridSearcher,
    batcher: MicroBatcher,
    queries: list[str],
    k: int,
    metadata_filter: MetadataFilter | None,
    mode: Mode,
) -> list[list[HybridHit]]:
    """Ranked hits per query in `mode`; keyword mode spends no model time."""
    vectors, serving = (None, None) if mode == "keyword" else await _embed(batcher, hybrid.dense, queries)
    return await run_in_threadpool(hybrid.search_prepared, queries, vectors, k, metadata_filter, mode, serving)


# The search routes are coroutines that never block the event loop: query vectors come from the
# shared batcher (the model runs in its thread), the index searches and the SQL join in the thread pool.
@protected.post("/search", response_model=SearchResponse, summary="Search documents")
async def search_post(body: SearchRequest, hybrid: HybridDep, batcher: BatcherDep) -> SearchResponse:
    """The `top_k` best documents for the query in `mode`, each with its best chunk."""
    started = time.perf_counter()
    metadata_filter = _filter(body.filter)  # checked before the query costs any model time
    lists = await _search(hybrid, batcher, [body.query], body.top_k, metadata_filter, body.mode)
    return SearchResponse(results=_results(lists[0]), took_ms=(time.perf_counter() - started) * 1000)


@protected.get("/search", response_model=SearchResponse, summary="Search documents (query string)")
async def search_get(
    hybrid: HybridDep,
    batcher: BatcherDep,
    q: Annotated[str, Query(min_length=1, max_length=MAX_QUERY_CHARS)],
    k: Annotated[int, Query(ge=1, le=1000)] = 10,
    filter: Annotated[str | None, Query(description='A metadata filter as JSON, e.g. {"kind": "animal"}.')] = None,
    mode: Annotated[Mode, Query(description="hybrid (default), dense or keyword.")] = "hybrid",
) -> SearchResponse:
    """`GET /search?q=...&k=10&filter={...}`, the same as the POST form."""
    try:
        raw = None if filter is None else json.loads(filter)
    except ValueError as exc:
        raise HTTPException(422, f"filter is not valid JSON: {exc}") from exc
    if raw is not None and not isinstance(raw, dict):
        raise HTTPException(422, f"filter must be a JSON object of field: condition, got {str(filter)[:60]!r}")
    return await search_post(SearchRequest(query=q, top_k=k, filter=raw, mode=mode), hybrid, batcher)


@protected.post("/search/batch", response_model=BatchSearchResponse, summary="Search several queries at once")
async def search_batch(body: BatchSearchRequest, hybrid: HybridDep, batcher: BatcherDep) -> BatchSearchResponse:
    """One result list per query; the queries go through the model in one batch."""
    too_long = [i for i, q in enumerate(body.queries) if not q or len(q) > MAX_QUERY_CHARS]
    if too_long:
        raise HTTPException(422, f"queries {too_long[:10]} are empty or longer than {MAX_QUERY_CHARS} characters")
    started = time.perf_counter()
    metadata_filter = _filter(body.filter)
    lists = await _search(hybrid, batcher, body.queries, body.top_k, metadata_filter, body.mode)
    return BatchSearchResponse(results=[_results(h) for h in lists], took_ms=(time.perf_counter() - started) * 1000)


@protected.post("/v1/embeddings", response_model=EmbeddingsResponse, summary="OpenAI-compatible embeddings")
async def embeddings(body: EmbeddingsRequest, searcher: SearcherDep, batcher: BatcherDep) -> Response:
    """The service's own vectors (same model, pooling and normalisation as the index)."""
    texts = [body.input] if isinstance(body.input, str) else body.input
    if not texts or len(texts) > MAX_EMBED_INPUTS:
        raise HTTPException(422, f"'input' must hold 1 to {MAX_EMBED_INPUTS} texts, got {len(texts)}")
    vectors, serving = await _embed(batcher, searcher, texts)
    return await run_in_threadpool(_embeddings_json, serving.encoder, texts, vectors)


def _embeddings_json(encoder: Encoder, texts: list[str], vectors: np.ndarray) -> Response:
    """The finished response. Counting tokens and validating and writing up to 2048 x 384 floats takes
    some 300 ms, which a coroutine route would spend on the event loop (FastAPI validates its return
    value there): here it is done in the thread pool, and a Response is returned as it is."""
    tokens = encoder.count_tokens(texts)
    body = EmbeddingsResponse(
        data=[Embedding(index=i, embedding=v.tolist()) for i, v in enumerate(vectors)],
        model=encoder.model_name,
        usage=Usage(prompt_tokens=tokens, total_tokens=tokens),
    )
    return Response(body.model_dump_json(), media_type="application/json")


@public.get("/", include_in_schema=False)
def page() -> FileResponse:
    """The search page: plain HTML and JavaScript, no build step."""
    return FileResponse(_STATIC / "index.html", media_type="text/html")


@protected.get("/stats", response_model=Stats, summary="Index and model facts")
def stats(searcher: SearcherDep) -> Stats:
    """Documents, chunks and vectors held; index type and generation; model, pooling, dimension."""
    searcher.refresh()
    counts = searcher.store.counts()
    generation = searcher.store.active_generation()
    encoder = searcher.encoder
    return Stats(
        documents=counts["documents"],
        chunks=counts["chunks"],
        vectors=searcher.index.ntotal,
        index_type=searcher.index.resolved_factory,
        generation=generation.id if generation else None,
        model=encoder.model_name,
        pooling=encoder.pooling,
        dimension=encoder.dim,
        max_length=encoder.max_length,
    )


@protected.get("/metrics", summary="Prometheus metrics", response_class=PlainTextResponse)
def metrics(request: Request, searcher: SearcherDep) -> Response:
    """Request counts and latencies per endpoint, encoder batch sizes, index size (Prometheus text)."""
    searcher.refresh()
    registry: Metrics = request.app.state.metrics
    return registry.render(searcher.index.ntotal)


def create_app(settings: Settings | None = None) -> FastAPI:
    """The application for `settings` (from the environment when not given)."""
    app = FastAPI(
        title="semsearch",
        version="0.1.0",
        description="Semantic search over documents embedded with mean-pooled BERT vectors in FAISS.",
        lifespan=_lifespan,
    )
    app.state.settings = settings or Settings()
    app.state.metrics = Metrics()
    # Added before the metrics middleware, so inside it: refused bodies are counted too.
    app.add_middleware(BodySizeLimit, max_bytes=app.state.settings.max_body_bytes)
    app.middleware("http")(app.state.metrics.middleware)
    app.include_router(public)
    app.include_router(protected)
    app.include_router(documents.router, dependencies=[Depends(require_api_key)], responses=ERRORS)
    return app
