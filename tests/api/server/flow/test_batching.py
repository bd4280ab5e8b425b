"""Micro-batching of query embeddings in the real server, over HTTP (tests/api/server/flow/test_micro_batcher.py
has the batcher alone).

No assertion depends on timing: where a test needs requests to pile up, it holds the encoder at a
gate and waits (with a generous deadline against hangs) until the batcher reports them waiting."""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import numpy as np
from fastapi import FastAPI

from api.server.app import create_app, serving_settings
from search.settings import Settings

# The texts of the fixture's documents (conftest.DOCS), each ranking its own document first.
DOC_QUERIES = [
    ("the cat sat on the mat", "pets"),
    ("the sun and the moon and a star in the sky", "space"),
    ("cancer patients study results", "bio"),
]


class GatedEncode:
    """Stands in for the server's `encoder.encode`: records batch sizes and holds the first call at a gate."""

    def __init__(self, encode: Callable[[Sequence[str]], np.ndarray]) -> None:
        self.encode = encode
        self.calls: list[int] = []
        self.entered = threading.Event()
        self.release = threading.Event()

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(len(texts))
        self.entered.set()
        self.release.wait(60)
        return self.encode(texts)


def gate_encoder(app: FastAPI) -> GatedEncode:
    encoder = app.state.batcher.encoder
    gate = GatedEncode(encoder.encode)
    encoder.encode = gate  # the batcher looks the method up on every batch
    return gate


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 60  # a guard against hanging, not a performance bound
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting: {what}"
        time.sleep(0.01)


def metric(text: str, name: str) -> float:
    match = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    assert match, f"{name} missing from /metrics"
    return float(match.group(1))


def test_concurrent_http_searches_share_forward_passes(served_app: tuple[FastAPI, str]) -> None:
    app, url = served_app
    gate = gate_encoder(app)
    queries = [DOC_QUERIES[i % len(DOC_QUERIES)] for i in range(16)]

    def search(query: tuple[str, str]) -> httpx.Response:
        return httpx.post(f"{url}/search", json={"query": query[0], "top_k": 2}, timeout=120)

    with ThreadPoolExecutor(max_workers=16) as pool:
        futures = [pool.submit(search, q) for q in queries]
        # The first batch holds the model; every other request must be waiting in the batcher.
        wait_for(
            lambda: gate.entered.is_set() and gate.calls[0] + app.state.batcher.pending == 16,
            "all 16 requests in the batcher",
        )
        gate.release.set()
        responses = [f.result() for f in futures]
    # Those that waited went through the model together, in one more forward pass.
    assert sum(gate.calls) == 16 and len(gate.calls) <= 2
    text = httpx.get(f"{url}/metrics", timeout=30).text
    assert metric(text, "semsearch_encoder_batch_rows_count") == len(gate.calls)
    assert metric(text, "semsearch_encoder_batch_rows_sum") == 16
    # Each request got the results of its own query: the same as asked alone, afterwards.
    alone = {q: search((q, doc)).json()["results"] for q, doc in DOC_QUERIES}
    for (query, doc), response in zip(queries, responses, strict=True):
        assert response.status_code == 200
        results = response.json()["results"]
        assert results[0]["id"] == doc
        assert [r["id"] for r in results] == [r["id"] for r in alone[query]]
        assert np.allclose([r["score"] for r in results], [r["score"] for r in alone[query]], atol=1e-5)


def test_the_event_loop_answers_while_the_model_runs(served_app: tuple[FastAPI, str]) -> None:
    app, url = served_app
    gate = gate_encoder(app)
    with httpx.Client(base_url=url, timeout=30) as client, ThreadPoolExecutor(max_workers=2) as pool:
        searching = pool.submit(client.post, "/search", json={"query": DOC_QUERIES[0][0], "top_k": 1})
        embedding = pool.submit(client.post, "/v1/embeddings", json={"input": ["the cat", "a dog"]})
        wait_for(gate.entered.is_set, "the encoder to start")
        # The model is busy (held at the gate) for as long as the test wants: if it ran on the event
        # loop, these could not be answered before the gate opens, and they would time out.
        assert client.get("/health").json()["status"] == "ok"
        assert client.get("/stats").json()["documents"] == 3
        gate.release.set()
        assert searching.result().json()["results"][0]["id"] == DOC_QUERIES[0][1]
        assert len(embedding.result().json()["data"]) == 2


def test_a_hybrid_search_ranks_its_keywords_while_its_query_is_embedded(served_app: tuple[FastAPI, str]) -> None:
    app, url = served_app
    gate = gate_encoder(app)
    hybrid = app.state.hybrid
    ranked = threading.Event()
    real = hybrid.rank_keywords

    def rank_keywords(*args: object) -> object:
        result = real(*args)
        ranked.set()
        return result

    hybrid.rank_keywords = rank_keywords
    with ThreadPoolExecutor(max_workers=1) as pool:
        future = pool.submit(httpx.post, f"{url}/search", json={"query": DOC_QUERIES[0][0], "top_k": 2}, timeout=120)
        wait_for(gate.entered.is_set, "the query in the model")
        # The model is held: the keyword side must be done without waiting for it.
        assert ranked.wait(30), "the keyword side waited for the query's vector"
        gate.release.set()
        response = future.result()
    assert response.status_code == 200 and response.json()["results"][0]["id"] == DOC_QUERIES[0][1]


def test_searches_run_at_most_search_threads_at_once(
    settings: Settings, indexer: Callable[[Settings], None], start_server: Callable[[FastAPI], str]
) -> None:
    indexer(settings)
    app = create_app(settings.model_copy(update={"search_threads": 2}))
    url = start_server(app)
    hybrid, lock, release, running, most = app.state.hybrid, threading.Lock(), threading.Event(), [0], [0]

    def held(call: Callable[..., Any]) -> Callable[..., Any]:
        def run(*args: Any) -> Any:
            with lock:
                running[0] += 1
                most[0] = max(most[0], running[0])
            try:
                release.wait(timeout=60)
                return call(*args)
            finally:
                with lock:
                    running[0] -= 1

        return run

    hybrid.search_prepared, hybrid.rank_keywords = held(hybrid.search_prepared), held(hybrid.rank_keywords)

    def search(query: str) -> httpx.Response:
        return httpx.post(f"{url}/search", json={"query": query, "top_k": 2}, timeout=120)

    with ThreadPoolExecutor(max_workers=12) as pool:
        futures = [pool.submit(search, DOC_QUERIES[i % len(DOC_QUERIES)][0]) for i in range(12)]
        limiter = app.state.search_threads.limiter
        # Two searches hold the threads; the other requests' work waits in line for them.
        wait_for(lambda: running[0] == 2 and limiter.statistics().tasks_waiting >= 10, "10 searches waiting")
        release.set()
        responses = [f.result() for f in futures]
    assert [r.status_code for r in responses] == [200] * 12
    assert most[0] == 2


def test_the_server_searches_on_one_thread_per_core_by_default() -> None:
    cores = len(os.sched_getaffinity(0))
    assert serving_settings(Settings()).search_threads == cores
    assert serving_settings(Settings(search_threads=5)).search_threads == 5


def test_a_full_encoder_queue_is_answered_429_with_retry_after(
    settings: Settings, indexer: Callable[[Settings], None], start_server: Callable[[FastAPI], str]
) -> None:
    indexer(settings)
    app = create_app(settings.model_copy(update={"batch_max_pending": 1}))
    url = start_server(app)
    gate = gate_encoder(app)

    def search(query: str) -> httpx.Response:
        return httpx.post(f"{url}/search", json={"query": query, "top_k": 1, "mode": "dense"}, timeout=120)

    with ThreadPoolExecutor(max_workers=2) as pool:
        encoding = pool.submit(search, DOC_QUERIES[0][0])
        wait_for(gate.entered.is_set, "the first query in the model")
        waiting = pool.submit(search, DOC_QUERIES[1][0])
        wait_for(lambda: app.state.batcher.waiting_rows == 1, "a query waiting for the encoder")
        refused = search(DOC_QUERIES[2][0])
        gate.release.set()
        assert encoding.result().status_code == waiting.result().status_code == 200
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
    assert "1 texts are waiting for the encoder" in refused.json()["detail"]
    assert metric(httpx.get(f"{url}/metrics", timeout=30).text, "semsearch_overload_refusals_total") == 1
