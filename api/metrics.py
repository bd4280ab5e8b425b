"""Prometheus metrics of one app: requests and latencies per route, encoder batch sizes, index size."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.requests import Request
from starlette.responses import Response

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

    async def middleware(self, request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        """Count and time every request under its route template (not its raw path: bounded labels)."""
        started = time.perf_counter()
        response = await call_next(request)
        route = getattr(request.scope.get("route"), "path", "unmatched")
        self.requests.labels(request.method, route, str(response.status_code)).inc()
        self.latency.labels(route).observe(time.perf_counter() - started)
        return response

    def render(self, vectors: int) -> Response:
        """The exposition text, with the index size read at scrape time."""
        self.vectors.set(vectors)
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE)
