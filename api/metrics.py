"""Prometheus metrics of one app: requests and latencies per route, encoder batch sizes, index size,
the indexing queue and the in-process worker's failures."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.requests import Request
from starlette.responses import Response

from api.schemas import QueueHealth
from search.worker_state import WorkerSnapshot

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    """A registry per app, so that several apps (tests, workers) never share counters."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "semsearch_requests",
            "HTTP requests by route and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "semsearch_request_seconds", "HTTP request latency by route", ["route"], registry=self.registry
        )
        self.batch_rows = Histogram(
            "semsearch_encoder_batch_rows",
            "Texts per encoder forward pass",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
            registry=self.registry,
        )
        self.vectors = Gauge("semsearch_index_vectors", "Vectors in the serving index", registry=self.registry)
        self.unindexed = Gauge(
            "semsearch_unindexed_documents", "Documents written but not searchable yet", registry=self.registry
        )
        self.oldest = Gauge(
            "semsearch_oldest_unindexed_seconds",
            "How long the oldest unindexed document has waited (0 when none)",
            registry=self.registry,
        )
        self.worker_failures = Gauge(
            "semsearch_worker_consecutive_failures",
            "Consecutive failures of the indexing worker in this process",
            registry=self.registry,
        )
        self.worker_failures_total = Gauge(
            "semsearch_worker_failures",
            "Failures of the indexing worker in this process so far",
            registry=self.registry,
        )
        self.overloaded = Counter(
            "semsearch_overload_refusals",
            "Requests refused with 503 because the encoder queue was full",
            registry=self.registry,
        )

    async def middleware(self, request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        """Count and time every request under its route template (not its raw path: bounded labels)."""
        started = time.perf_counter()
        response = await call_next(request)
        route = getattr(request.scope.get("route"), "path", "unmatched")
        self.requests.labels(request.method, route, str(response.status_code)).inc()
        self.latency.labels(route).observe(time.perf_counter() - started)
        return response

    def render(self, vectors: int, queue: QueueHealth, worker: WorkerSnapshot | None) -> Response:
        """The exposition text, with the index size, queue and worker state read at scrape time."""
        self.vectors.set(vectors)
        self.unindexed.set(queue.unindexed_documents)
        self.oldest.set(queue.oldest_unindexed_seconds or 0.0)
        if worker is not None:
            self.worker_failures.set(worker.consecutive_failures)
            self.worker_failures_total.set(worker.failures_total)
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE)
