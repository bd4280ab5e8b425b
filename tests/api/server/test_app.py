"""The query API over real HTTP: a uvicorn server on a loopback port, an httpx client."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi import FastAPI
from threadpoolctl import threadpool_info

from api.server.app import create_app
from indexer.ingest.chunking import Chunker
from indexer.write.pipeline import Indexer
from search.components import make_encoder, open_store
from search.dense.catalog import IndexCatalog
from search.settings import Settings
from search.storage.records import DocumentIn


def test_search_post_get_and_batch(base_url: str) -> None:
    with httpx.Client(base_url=base_url, timeout=30) as client:
        assert client.get("/health").json()["status"] == "ok"
        posted = client.post("/search", json={"query": "the cat sat on the mat", "top_k": 2})
        assert posted.status_code == 200
        body = posted.json()
        assert body["results"][0]["id"] == "pets" and len(body["results"]) == 2
        first = body["results"][0]
        assert first["metadata"] == {"kind": "animal"} and (first["start"], first["end"]) == (0, 22)
        assert body["took_ms"] >= 0
        got = client.get("/search", params={"q": "the cat sat on the mat", "k": 2}).json()
        assert [r["id"] for r in got["results"]] == [r["id"] for r in body["results"]]
        batch = client.post("/search/batch", json={"queries": ["the cat sat on the mat", "cancer"], "top_k": 1})
        lists = batch.json()["results"]
        assert len(lists) == 2 and [r["id"] for r in lists[0]] == ["pets"] and len(lists[1]) == 1


def blas_threads(library: str = "") -> list[int]:
    """The thread count of each loaded BLAS library (numpy's, scipy's, FAISS's) whose path holds
    `library`, for a call made now."""
    return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas" and library in lib["filepath"]]


def record_blas_in_searches(app: FastAPI) -> list[list[int]]:
    """From now on, each dense ranking of the app appends the thread count of numpy's BLAS (which
    does a search's products: the delta segments' and the exact re-ranking's) to the list returned."""
    searcher, seen = app.state.searcher, []
    rank = searcher.rank

    def recording(*args: Any, **kwargs: Any) -> Any:
        seen.append(blas_threads("numpy"))
        return rank(*args, **kwargs)

    searcher.rank = recording
    return seen


def test_the_server_runs_blas_on_one_thread_a_call(
    settings: Settings, indexer: Callable[[Settings], None], start_server: Callable[[FastAPI], str]
) -> None:
    # Several BLAS threads per call, under requests already running side by side, oversubscribe the cores.
    indexer(settings)
    app = create_app(settings)
    url = start_server(app)
    seen = record_blas_in_searches(app)
    assert httpx.post(f"{url}/search", json={"query": "cat", "top_k": 1}, timeout=30).status_code == 200
    assert seen and all(numpy == [1] for numpy in seen)


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="on one core every BLAS library has one thread anyway")
def test_the_indexing_worker_beside_the_server_keeps_its_blas_threads(
    settings: Settings, indexer: Callable[[Settings], None], start_server: Callable[[FastAPI], str]
) -> None:
    # As `semsearch serve` runs them: the worker on a thread of the server's process.
    from indexer.write.worker import BackgroundWorker, open_worker

    live = settings.model_copy(update={"publish_seconds": 0.1})
    indexer(live)
    background = BackgroundWorker(open_worker(live))
    asked, answered, answers = threading.Event(), threading.Event(), []
    step = background.worker.step

    def step_and_answer() -> int:  # the worker's loop calls this every 0.1 s at most
        if asked.is_set():
            square = np.ones((256, 256), dtype=np.float32)
            answers.append((threading.current_thread().name, blas_threads(), float((square @ square)[0, 0])))
            asked.clear()
            answered.set()
        return step()

    def ask_worker() -> tuple[str, list[int], float]:
        answered.clear()
        asked.set()
        assert answered.wait(30), "the worker never ran its BLAS call"
        return answers[-1]

    background.worker.step = step_and_answer
    background.start()
    try:
        app = create_app(live, background.worker.state)
        url = start_server(app)
        seen = record_blas_in_searches(app)
        name, counts, product = ask_worker()
        assert name == "indexing-worker" and product == 256.0
        assert counts and min(counts) > 1, f"the worker's BLAS calls are held to {counts} threads"
        assert httpx.post(f"{url}/search", json={"query": "cat", "top_k": 1}, timeout=30).status_code == 200
        assert seen and all(numpy == [1] for numpy in seen)  # the search's own numpy work: one thread a call
        _name, after, _product = ask_worker()
        assert min(after) > 1, f"a search left the worker's BLAS calls on {after} threads"
    finally:
        background.stop()


def test_embeddings_are_the_index_vectors(base_url: str, settings: Settings) -> None:
    with httpx.Client(base_url=base_url, timeout=30) as client:
        one = client.post("/v1/embeddings", json={"input": "the cat", "model": settings.model}).json()
        many = client.post("/v1/embeddings", json={"input": ["the cat", "a dog"]}).json()
    assert one["object"] == "list" and one["data"][0]["index"] == 0
    expected = make_encoder(settings).encode(["the cat", "a dog"])
    assert np.allclose(one["data"][0]["embedding"], expected[0], atol=1e-5)
    assert np.allclose([d["embedding"] for d in many["data"]], expected, atol=1e-5)
    assert many["usage"]["prompt_tokens"] == many["usage"]["total_tokens"] > 4


def test_stats(base_url: str, settings: Settings) -> None:
    stats = httpx.get(f"{base_url}/stats", timeout=30).json()
    assert stats["documents"] == 3 and stats["chunks"] == 3 and stats["vectors"] == 3
    assert stats["index_type"] == "Flat" and stats["generation"] == 1
    assert (stats["model"], stats["pooling"], stats["dimension"]) == (str(Path(settings.model)), "mean", 32)


@pytest.mark.parametrize(
    ("method", "path", "payload", "fragment"),
    [
        ("post", "/search", {"query": "", "top_k": 3}, "at least 1 character"),
        ("post", "/search", {"query": "cat", "top_k": 0}, "greater than or equal to 1"),
        ("post", "/search", {"query": "cat", "top_k": 1001}, "less than or equal to 1000"),
        ("post", "/search", {"top_k": 3}, "either 'query' (text) or 'vector'"),
        ("post", "/search/batch", {"queries": []}, "at least 1 item"),
        ("post", "/v1/embeddings", {"input": []}, "1 to 2048 texts"),
    ],
)
def test_bad_requests_get_a_clear_4xx(base_url: str, method: str, path: str, payload: dict, fragment: str) -> None:
    response = httpx.request(method, f"{base_url}{path}", json=payload, timeout=30)
    assert response.status_code == 422
    body = response.json()  # the OpenAI-compatible routes answer in OpenAI's shape
    assert fragment in str(body["error"]["message"] if path.startswith("/v1/") else body["detail"])


def test_api_key(keyed_url: str) -> None:
    assert httpx.get(f"{keyed_url}/health").status_code == 200
    refused = httpx.post(f"{keyed_url}/search", json={"query": "cat"})
    assert refused.status_code == 401 and "Authorization: Bearer" in refused.json()["detail"]
    wrong = httpx.get(f"{keyed_url}/stats", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    ok = httpx.get(f"{keyed_url}/stats", headers={"Authorization": "Bearer s3cret"}, timeout=30)
    assert ok.status_code == 200 and ok.json()["vectors"] == 0


def test_server_picks_up_a_newly_published_index(live_url: str, settings: Settings) -> None:
    live = settings.model_copy(update={"reload_seconds": 0.1})
    with httpx.Client(base_url=live_url, timeout=30) as client:
        assert client.get("/stats").json()["vectors"] == 3
        # Another process (here: an indexer in this one) publishes a new index file.
        store = open_store(live)
        encoder = make_encoder(live)
        Indexer(encoder, store, IndexCatalog(store, live.index_dir), Chunker(encoder)).run(
            [DocumentIn("fresh", "virus vaccine dose water", "Fresh")]
        )
        store.close()
        deadline = time.monotonic() + 10
        while client.get("/stats").json()["vectors"] != 4:
            assert time.monotonic() < deadline, "the server never loaded the new index"
            client.get("/search", params={"q": "anything"})  # searches trigger the check
            time.sleep(0.1)
        hits = client.get("/search", params={"q": "virus vaccine dose water", "k": 1}).json()["results"]
        assert hits[0]["id"] == "fresh"


def test_metrics(base_url: str) -> None:
    with httpx.Client(base_url=base_url, timeout=30) as client:
        client.post("/search", json={"query": "the cat", "top_k": 1})
        client.post("/search", json={"query": "", "top_k": 1})
        client.get("/search", params={"q": "a dog"})
        text = client.get("/metrics").text
    assert 'semsearch_requests_total{method="POST",route="/search",status="200"} 1.0' in text
    assert 'semsearch_requests_total{method="POST",route="/search",status="422"} 1.0' in text
    assert 'semsearch_requests_total{method="GET",route="/search",status="200"} 1.0' in text
    assert 'semsearch_request_seconds_count{route="/search"} 3.0' in text
    assert "semsearch_encoder_batch_rows_count 2.0" in text  # two queries reached the model
    assert "semsearch_index_vectors 3.0" in text
