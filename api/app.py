"""The FastAPI application: `create_app(settings)` loads the encoder, index and store once, at start."""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated

import numpy as np
from fastapi import APIRouter, Depends, FastAPI, Header, HTTPException, Query, Request, status
from fastapi.responses import FileResponse, PlainTextResponse, Response
from starlette.concurrency import run_in_threadpool

from api.batcher import MicroBatcher
from api.metrics import Metrics
from api.schemas import (
    MAX_QUERY_CHARS,
    BatchSearchRequest,
    BatchSearchResponse,
    DocumentOut,
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
from search.components import make_encoder, open_searcher, open_store
from search.encoder import Encoder
from search.searcher import Searcher, SearchHit
from search.settings import Settings

MAX_EMBED_INPUTS = 2048
_STATIC = Path(__file__).with_name("static")


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    encoder = make_encoder(settings)
    store = open_store(settings)
    encoder.on_batch = app.state.metrics.batch_rows.observe
    app.state.searcher = open_searcher(settings, encoder, store, watch=True)
    # Every query vector comes from this batcher, so concurrent requests share forward passes.
    batcher = MicroBatcher(encoder, max_wait=settings.batch_wait_ms / 1000, max_rows=settings.batch_max_rows)
    try:
        async with batcher:
            app.state.batcher = batcher
            yield
    finally:
        store.close()


# The dependencies only read app state: as coroutines they run on the loop, where plain functions would
# each cost a trip through the thread pool on every request (about 4% of the rate under load).
async def _searcher(request: Request) -> Searcher:
    searcher: Searcher = request.app.state.searcher
    return searcher


async def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def _batcher(request: Request) -> MicroBatcher:
    batcher: MicroBatcher = request.app.state.batcher
    return batcher


SearcherDep = Annotated[Searcher, Depends(_searcher)]
SettingsDep = Annotated[Settings, Depends(_settings)]
BatcherDep = Annotated[MicroBatcher, Depends(_batcher)]


async def require_api_key(settings: SettingsDep, authorization: Annotated[str | None, Header()] = None) -> None:
    """With SEMSEARCH_API_KEY set, demand `Authorization: Bearer <key>` (compared in constant time)."""
    if settings.api_key is None:
        return
    expected = f"Bearer {settings.api_key.get_secret_value()}".encode()
    if authorization is None or not secrets.compare_digest(authorization.encode(), expected):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "missing or wrong API key: send the header 'Authorization: Bearer <SEMSEARCH_API_KEY>'",
            headers={"WWW-Authenticate": "Bearer"},
        )


public = APIRouter()
protected = APIRouter(dependencies=[Depends(require_api_key)], responses={401: {"model": ErrorBody}})


def _results(hits: list[SearchHit]) -> list[SearchResult]:
    return [SearchResult(**hit.__dict__) for hit in hits]


def _search_all(searcher: Searcher, vectors: np.ndarray, k: int) -> list[list[SearchHit]]:
    return [searcher.search_vector(vector, k) for vector in vectors]


@public.get("/health", response_model=Health, summary="Liveness")
def health() -> Health:
    """Answers while the process serves."""
    return Health()


# The search routes are coroutines that never block the event loop: query vectors come from the
# shared batcher (the model runs in its thread), the index search and the SQL join in the thread pool.
@protected.post("/search", response_model=SearchResponse, summary="Search documents")
async def search_post(body: SearchRequest, searcher: SearcherDep, batcher: BatcherDep) -> SearchResponse:
    """The `top_k` documents closest to the query, each with its best chunk."""
    started = time.perf_counter()
    vectors = await batcher.embed([body.query])
    hits = await run_in_threadpool(searcher.search_vector, vectors[0], body.top_k)
    return SearchResponse(results=_results(hits), took_ms=(time.perf_counter() - started) * 1000)


@protected.get("/search", response_model=SearchResponse, summary="Search documents (query string)")
async def search_get(
    searcher: SearcherDep,
    batcher: BatcherDep,
    q: Annotated[str, Query(min_length=1, max_length=MAX_QUERY_CHARS)],
    k: Annotated[int, Query(ge=1, le=1000)] = 10,
) -> SearchResponse:
    """`GET /search?q=...&k=10`, the same as the POST form."""
    return await search_post(SearchRequest(query=q, top_k=k), searcher, batcher)


@protected.post("/search/batch", response_model=BatchSearchResponse, summary="Search several queries at once")
async def search_batch(body: BatchSearchRequest, searcher: SearcherDep, batcher: BatcherDep) -> BatchSearchResponse:
    """One result list per query; the queries go through the model in one batch."""
    too_long = [i for i, q in enumerate(body.queries) if not q or len(q) > MAX_QUERY_CHARS]
    if too_long:
        raise HTTPException(422, f"queries {too_long[:10]} are empty or longer than {MAX_QUERY_CHARS} characters")
    started = time.perf_counter()
    vectors = await batcher.embed(body.queries)
    lists = await run_in_threadpool(_search_all, searcher, vectors, body.top_k)
    return BatchSearchResponse(results=[_results(h) for h in lists], took_ms=(time.perf_counter() - started) * 1000)


@protected.post("/v1/embeddings", response_model=EmbeddingsResponse, summary="OpenAI-compatible embeddings")
async def embeddings(body: EmbeddingsRequest, searcher: SearcherDep, batcher: BatcherDep) -> Response:
    """The service's own vectors (same model, pooling and normalisation as the index)."""
    texts = [body.input] if isinstance(body.input, str) else body.input
    if not texts or len(texts) > MAX_EMBED_INPUTS:
        raise HTTPException(422, f"'input' must hold 1 to {MAX_EMBED_INPUTS} texts, got {len(texts)}")
    vectors = await batcher.embed(texts)
    return await run_in_threadpool(_embeddings_json, searcher.encoder, texts, vectors)


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


@protected.get(
    "/documents/{doc_id:path}",
    response_model=DocumentOut,
    summary="One document",
    responses={404: {"model": ErrorBody}},
)
def get_document(doc_id: str, searcher: SearcherDep) -> DocumentOut:
    """A document by its id, with its status (pending until its vectors are in the index)."""
    doc = searcher.store.get_document(doc_id)
    if doc is None:
        raise HTTPException(404, f"no document with id {doc_id!r}")
    return DocumentOut(id=doc.external_id, title=doc.title, text=doc.text, metadata=doc.meta, status=doc.status)  # type: ignore[arg-type]


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
    app.middleware("http")(app.state.metrics.middleware)
    app.include_router(public)
    app.include_router(protected)
    return app
