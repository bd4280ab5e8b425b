"""Prometheus metrics of one app: requests and latencies per route, the seconds requests spend in
each stage of their work, encoder batch sizes, index size, the indexing queue and the in-process
worker's failures."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.server.schemas import QueueHealth
from search.timing import CURRENT, STAGES, StageTimes
from search.work.state import WorkerSnapshot

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Stages often take well under a millisecond: finer buckets than the request latency's.
_STAGE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)


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
        stages = Histogram(
            "semsearch_stage_seconds",
            "Seconds a request spent in each stage of its work (search.timing.STAGES), once per request "
            "that passed through the stage",
            ["stage"],
            buckets=_STAGE_BUCKETS,
            registry=self.registry,
        )
        # Resolved once: a label lookup per observation would cost as much as the observation.
        self.stages = {stage: stages.labels(stage) for stage in STAGES}
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
            "Requests refused with 429 because the server was full",
            registry=self.registry,
        )

    def render(self, vectors: int, queue: QueueHealth, worker: WorkerSnapshot | None) -> Response:
        """The exposition text, with the index size, queue and worker state read at scrape time."""
        self.vectors.set(vectors)
        self.unindexed.set(queue.unindexed_documents)
        self.oldest.set(queue.oldest_unindexed_seconds or 0.0)
        if worker is not None:
            self.worker_failures.set(worker.consecutive_failures)
            self.worker_failures_total.set(worker.failures_total)
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE)


class MetricsMiddleware:
    """Counts and times every request under its route template (not its raw path: bounded labels).

    A pure ASGI middleware: Starlette's BaseHTTPMiddleware (`app.middleware("http")`) runs each
    request in a task group of its own with memory streams for the body, event-loop time that on a
    2-core machine is taken from the encoder's threads."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The ASGI entry point."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets when the application raises before answering
        # The route's work (on this task, and in the threads it hands work to) adds its stages here.
        times = StageTimes(started)
        token = CURRENT.set(times)

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                if times.serialise_from is not None:
                    times.add("serialise", time.perf_counter() - times.serialise_from)
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            CURRENT.reset(token)
            # The router wrote the matched route into this same scope on the way in.
            route = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.requests.labels(scope["method"], route, str(status)).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - started)
            for stage, seconds in times.seconds.items():
                self.metrics.stages[stage].observe(seconds)
