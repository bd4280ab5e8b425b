"""What the service says about itself: /health (public), /stats and /metrics (behind the API key).

Each reads the indexing queue from SQL (documents not searchable yet, and the oldest one's age), so
a worker in another process is covered, and the error budget of a worker running in this process.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from api.server.bodies import BoundedRoute
from api.server.deps import HybridDep, IndexLagsDep, KeyedDep, SearcherDep, SettingsDep, WorkerStateDep
from api.server.metrics import Metrics
from api.server.schemas import Health, QueueHealth, Stats, WorkerHealth
from search.keyword.index import KeywordIndex
from search.settings import Settings
from search.storage.outage import describe, outage_of, unavailable
from search.storage.store import Store
from search.work.state import WorkerState, queue_state

log = logging.getLogger(__name__)
public = APIRouter(route_class=BoundedRoute)
protected = APIRouter(route_class=BoundedRoute)


def read_queue(store: Store) -> QueueHealth:
    """The indexing queue as SQL has it now."""
    with store.session() as s:
        queue = queue_state(s)
    return QueueHealth(unindexed_documents=queue.unindexed, oldest_unindexed_seconds=queue.oldest_seconds)


def read_worker(state: WorkerState | None, keyed: bool = True) -> WorkerHealth | None:
    """The in-process worker's error budget, when a worker runs in this process; its errors as they
    were for a `keyed` request, else in words safe to show anyone (a driver's message names the
    database's host, port and user)."""
    if state is None:
        return None
    snapshot = state.snapshot()
    shown = {} if keyed else {"last_error": snapshot.last_error_public, "stale_indexes": snapshot.stale_public}
    return WorkerHealth(
        consecutive_failures=snapshot.consecutive_failures,
        failures_total=snapshot.failures_total,
        last_error=snapshot.last_error,
        seconds_since_last_error=snapshot.seconds_since_last_error,
        backoff_seconds=snapshot.backoff_seconds,
        failing=snapshot.failing,
        stale_indexes=snapshot.stale_indexes,
    ).model_copy(update=shown)


@public.get("/health", response_model=Health, summary="Liveness and indexing health")
def health(
    searcher: SearcherDep,
    hybrid: HybridDep,
    settings: SettingsDep,
    worker_state: WorkerStateDep,
    keyed: KeyedDep,
    lags: IndexLagsDep,
) -> Health:
    """Answers while the process serves: `ok`, or `degraded` with the problems found. The errors
    behind them are shown to a request with the API key; others get their kind alone."""
    worker = read_worker(worker_state, keyed)
    local = _keyword_unopened(hybrid.keyword) + _full_disk(searcher.store)
    try:
        queue: QueueHealth | None = read_queue(searcher.store)
        indexes = lags.read()
    except Exception as exc:  # /health must answer whatever the database does
        problems = [_database_problem(exc, keyed), *_problems(None, worker, settings), *local]
        return Health(status="degraded", problems=problems, worker=worker)
    problems = _problems(queue, worker, settings) + local + lags.problems(indexes, settings)
    return Health(
        status="degraded" if problems else "ok", problems=problems, queue=queue, worker=worker, indexes=indexes
    )


def _database_problem(exc: Exception, keyed: bool) -> str:
    """The database's failure to answer /health, the error itself only for a keyed request."""
    if not unavailable(exc):  # an outage is logged once by the store; anything else at every look
        log.warning("health: the database did not answer: %s", exc)
    problem = f"the database did not answer: {describe(exc)}"
    return f"{problem}; error: {type(exc).__name__}: {exc}"[:1000] if keyed else problem


def _full_disk(store: Store) -> list[str]:
    """The database's disk, while this process's last write met it full (a write stored ends it)."""
    full = outage_of(store.engine).disk.state
    if full is None:
        return []
    what, seconds = full
    return [
        f"{what}, for {seconds:.0f} s now: writes are refused with 507 and no document is indexed until "
        "space is freed on it"
    ]


def stale_index_problems(stale: dict[str, str]) -> list[str]:
    """What each derived index that failed to catch up means, with its error."""
    return [
        f"the {name} index failed to catch up with SQL, so its results miss recent writes until it "
        f"does (retried at every publish); last error: {error}"
        for name, error in stale.items()
    ]


def _keyword_unopened(keyword: KeywordIndex) -> list[str]:
    """The keyword index this process serves, when it is built but cannot be opened."""
    keyword.reload()  # what a search does: a look at most once per interval
    if keyword.open_error is None:
        return []
    return [
        f"the keyword index {keyword.path} cannot be opened, so keyword search finds nothing and hybrid "
        f"search serves dense results alone (`semsearch check --repair` builds it afresh): {keyword.open_error}"
    ]


def _problems(queue: QueueHealth | None, worker: WorkerHealth | None, settings: Settings) -> list[str]:
    problems = []
    if worker is not None and worker.failing:
        problems.append(
            f"the indexing worker failed {worker.consecutive_failures} times in a row "
            f"(budget {settings.worker_failure_budget}); last error: {worker.last_error}"
        )
    if worker is not None:
        problems += stale_index_problems(worker.stale_indexes)
    age = None if queue is None else queue.oldest_unindexed_seconds
    if age is not None and age > settings.degraded_pending_seconds:
        problems.append(
            f"the oldest unindexed document has waited {age:.0f} s (limit {settings.degraded_pending_seconds:.0f} s, "
            "SEMSEARCH_DEGRADED_PENDING_SECONDS): is an indexing worker running and keeping up?"
        )
    return problems


@protected.get("/stats", response_model=Stats, summary="Index and model facts")
def stats(searcher: SearcherDep, worker_state: WorkerStateDep, lags: IndexLagsDep) -> Stats:
    """Documents, chunks and vectors held; index type and generation; model, pooling, dimension; the
    indexing queue and worker."""
    serving = searcher.serving
    counts = searcher.store.counts()
    generation = searcher.store.active_generation()
    encoder = serving.encoder
    return Stats(
        documents=counts["documents"],
        chunks=counts["chunks"],
        vectors=serving.index.ntotal,
        index_type=serving.index.resolved_factory,
        generation=generation.id if generation else None,
        model=encoder.model_name,
        pooling=encoder.pooling,
        dimension=encoder.dim,
        max_length=encoder.max_length,
        queue=read_queue(searcher.store),
        worker=read_worker(worker_state),
        indexes=lags.read(),
    )


# The page is text, its errors JSON like every other route's: both declared (a text/plain response
# class would have declared the 401 as text too).
_METRICS_PAGE: dict[int | str, dict[str, Any]] = {
    200: {"description": "Prometheus text format", "content": {"text/plain": {"schema": {"type": "string"}}}}
}


@protected.get("/metrics", summary="Prometheus metrics", response_class=Response, responses=_METRICS_PAGE)
def metrics(request: Request, searcher: SearcherDep, worker_state: WorkerStateDep) -> Response:
    """Request counts and latencies per endpoint, encoder batch sizes, index size, indexing queue and
    worker failures (Prometheus text)."""
    registry: Metrics = request.app.state.metrics
    snapshot = None if worker_state is None else worker_state.snapshot()
    return registry.render(searcher.serving.index.ntotal, read_queue(searcher.store), snapshot)
