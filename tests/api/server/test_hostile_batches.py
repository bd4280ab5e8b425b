"""One legal request must not starve the rest (issue 21): a search request's cost is bounded (queries x
top_k, SEMSEARCH_SEARCH_MAX_HITS), the largest legal batch answers as single searches do, and while it
runs other clients' single searches are answered, between its slices, at both shared queues (the
encoder's batcher and the search threads).

Real HTTP against the app in uvicorn, with the tiny BERT, over 203 documents."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi import FastAPI

from api.client import InvalidRequestError, SemsearchClient
from api.server.app import create_app
from api.server.flow.slicing import SLICE_TEXTS
from indexer.write.pipeline import open_indexer
from search.settings import Settings
from search.storage.records import DocumentIn
from tests.api.conftest import DOCS, LOAD_WORDS, serve_app

LIMIT = 10_000  # the default budget of hits a request
# 256 distinct queries, the most a batch may hold, of the corpus's words.
QUERIES = [f"{LOAD_WORDS[i % 10]} {LOAD_WORDS[(i // 10) % 10]} {LOAD_WORDS[(i // 100) % 10]}" for i in range(256)]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Settings:
    """Settings over 203 documents, indexed as `semsearch index` does (the keyword index too)."""
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("batches") / "data", model=str(tiny_model_dir), dtype="float32", device="cpu"
    )
    docs = [DocumentIn(f"d{i}", " ".join(LOAD_WORDS[(i * k + i) % 10] for k in range(7)), "") for i in range(200)]
    indexer = open_indexer(settings)
    indexer.run([*DOCS, *docs])
    indexer.store.close()
    return settings


@contextmanager
def _served(settings: Settings) -> Iterator[tuple[FastAPI, str]]:
    app = create_app(settings)
    for url in serve_app(app):
        yield app, url


@pytest.fixture(scope="module")
def served(data: Settings) -> Iterator[tuple[FastAPI, str]]:
    """The server with its default budget, and its app (to reach the encoder and the searcher)."""
    with _served(data) as served:
        yield served


def _batch(url: str, queries: list[str], top_k: int, mode: str = "hybrid") -> httpx.Response:
    return httpx.post(f"{url}/search/batch", json={"queries": queries, "top_k": top_k, "mode": mode}, timeout=300)


def _single(url: str, query: str, top_k: int, mode: str = "hybrid") -> list[dict[str, Any]]:
    response = httpx.post(f"{url}/search", json={"query": query, "top_k": top_k, "mode": mode}, timeout=300)
    assert response.status_code == 200, response.text
    results: list[dict[str, Any]] = response.json()["results"]
    return results


def _same_hits(got: list[dict[str, Any]], want: list[dict[str, Any]]) -> None:
    """The same documents with the same scores, in the same order but among equal scores (a query's
    vector may differ in its last bits when it is embedded among other texts, and ties may swap)."""
    assert np.allclose([h["score"] for h in got], [h["score"] for h in want], atol=1e-5)
    assert sorted(h["id"] for h in got) == sorted(h["id"] for h in want)
    for g, w in zip(got, want, strict=True):
        tied = sum(abs(h["score"] - w["score"]) <= 1e-5 for h in want) > 1
        assert tied or g["id"] == w["id"]


@pytest.mark.parametrize(("queries", "top_k"), [(256, 1000), (11, 1000), (256, 40)])
def test_a_batch_past_the_budget_is_a_422_naming_the_limit_and_its_cost(
    served: tuple[FastAPI, str], queries: int, top_k: int
) -> None:
    _, url = served
    response = _batch(url, QUERIES[:queries], top_k)
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert f"{queries * top_k} hits" in detail and f"limit of {LIMIT} hits" in detail
    assert "SEMSEARCH_SEARCH_MAX_HITS" in detail and f"at most {LIMIT // top_k} queries" in detail


def test_the_budget_is_a_setting(data: Settings) -> None:
    with _served(data.model_copy(update={"search_max_hits": 2000})) as (_app, url):
        assert _batch(url, QUERIES[:2], 1000).status_code == 200
        refused = _batch(url, QUERIES[:3], 1000)
        assert refused.status_code == 422 and "3000 hits" in refused.json()["detail"]
        assert "limit of 2000 hits" in refused.json()["detail"]
    with pytest.raises(ValueError, match="search_max_hits"):
        Settings(search_max_hits=999)  # a single search at the largest top_k always fits


@pytest.mark.parametrize(("queries", "top_k", "mode"), [(256, LIMIT // 256, "hybrid"), (10, 1000, "hybrid")])
def test_the_largest_legal_batches_answer_as_single_searches(
    served: tuple[FastAPI, str], queries: int, top_k: int, mode: str
) -> None:
    _, url = served
    response = _batch(url, QUERIES[:queries], top_k, mode)
    assert response.status_code == 200, response.text
    lists = response.json()["results"]
    assert len(lists) == queries
    for query, hits in zip(QUERIES[:queries], lists, strict=True):
        _same_hits(hits, _single(url, query, top_k, mode))


@pytest.mark.parametrize("mode", ["dense", "keyword"])
def test_batches_in_one_retrievers_mode_answer_as_single_searches(served: tuple[FastAPI, str], mode: str) -> None:
    _, url = served
    response = _batch(url, QUERIES[:40], 50, mode)
    assert response.status_code == 200, response.text
    for query, hits in zip(QUERIES[:40], response.json()["results"], strict=True):
        _same_hits(hits, _single(url, query, 50, mode))


def test_the_client_sends_a_batch_past_the_budget_in_requests_within_it(served: tuple[FastAPI, str]) -> None:
    _, url = served
    assert _batch(url, QUERIES[:20], 1000).status_code == 422  # 20,000 hits in one request
    with SemsearchClient(url) as client:
        batch = client.search_batch(QUERIES[:20], top_k=1000)  # sent as two requests of 10 queries
        assert len(batch.results) == 20
        for query, hits in zip(QUERIES[:20], batch.results, strict=True):
            _same_hits([h.model_dump() for h in hits], _single(url, query, 1000))
        # What no split can bring within the budget is the server's 422, named.
        with pytest.raises(InvalidRequestError, match="top_k"):
            client.search_batch(["cat"], top_k=1001)


class Recorder:
    """Wraps the served app's encoder and search calls: records each forward pass's texts and how many
    search calls of the batch run at once, and slows both (per text, sleeping, so without holding a
    core) so that the batch lasts long enough for others to arrive while it runs."""

    def __init__(self, app: FastAPI, batch: list[str]) -> None:
        self.batch = set(batch)
        self.passes: list[list[str]] = []
        self.batch_encoding = threading.Event()  # set once a pass holds some of the batch's texts
        self.batch_searching = threading.Event()  # set once the batch's first search call starts
        self.running = 0
        self.most = 0
        self._lock = threading.Lock()
        encoder, hybrid = app.state.batcher.encoder, app.state.hybrid
        encode, search = encoder.encode, hybrid.search_prepared

        def slow_encode(texts: Sequence[str]) -> Any:
            self.passes.append(list(texts))
            if self.batch & set(texts):
                self.batch_encoding.set()
            time.sleep(0.003 * len(texts))
            return encode(texts)

        def slow_search(queries: Sequence[str], *args: Any) -> Any:
            mine = bool(self.batch & set(queries))
            with self._lock:
                self.running += mine
                self.most = max(self.most, self.running)
            if mine:
                self.batch_searching.set()
            try:
                time.sleep(0.005 * len(queries))
                return search(queries, *args)
            finally:
                with self._lock:
                    self.running -= mine

        encoder.encode, hybrid.search_prepared = slow_encode, slow_search

    def pass_of(self, text: str) -> int:
        """The index of the (first) forward pass that embedded `text`."""
        return next(i for i, texts in enumerate(self.passes) if text in texts)


# Queries of the fixture's own documents, none of them in the batch.
SINGLES = ["the cat sat on the mat", "the sun and the moon and a star in the sky", "cancer patients study results"]


@pytest.mark.parametrize("search_threads", [1, 2])
def test_single_searches_take_turns_with_the_largest_legal_batch(data: Settings, search_threads: int) -> None:
    batch = QUERIES
    finished: dict[str, float] = {}
    with _served(data.model_copy(update={"search_threads": search_threads})) as (app, url):
        recorder = Recorder(app, batch)

        def send_batch() -> httpx.Response:
            response = _batch(url, batch, LIMIT // len(batch))
            finished["batch"] = time.monotonic()
            return response

        with ThreadPoolExecutor(max_workers=1) as pool:
            sent = pool.submit(send_batch)
            assert recorder.batch_searching.wait(120), "the batch never reached the search threads"
            for query in SINGLES:  # one client's searches, one after another, while the batch runs
                assert len(_single(url, query, 10)) == 10
                finished[query] = time.monotonic()
            assert sent.result().status_code == 200
        # Each single search was answered before the batch was: it never waited for the whole batch.
        assert all(finished[query] < finished["batch"] for query in SINGLES), finished
        # At the encoder: each single went through a forward pass before the batch's last query did,
        # and no pass held more than a slice of the batch.
        last = max(recorder.pass_of(query) for query in batch)
        assert all(recorder.pass_of(query) < last for query in SINGLES), "a single waited for the whole batch"
        assert max(len(recorder.batch & set(texts)) for texts in recorder.passes) <= SLICE_TEXTS
        # In the search threads: the batch never held more than one, whatever their number.
        assert recorder.most == 1


def test_single_searches_take_turns_with_a_large_embedding_request(data: Settings) -> None:
    inputs = [f"{query} {i}" for i, query in enumerate(QUERIES * 2)]  # 512 texts, all different
    finished: dict[str, float] = {}
    with _served(data) as (app, url):
        recorder = Recorder(app, inputs)

        def send_inputs() -> httpx.Response:
            response = httpx.post(
                f"{url}/v1/embeddings", json={"input": inputs, "encoding_format": "float"}, timeout=300
            )
            finished["embeddings"] = time.monotonic()
            return response

        with ThreadPoolExecutor(max_workers=1) as pool:
            sent = pool.submit(send_inputs)
            assert recorder.batch_encoding.wait(120), "the embedding request never reached the encoder"
            for query in SINGLES:
                assert len(_single(url, query, 10)) == 10
                finished[query] = time.monotonic()
            response = sent.result()
        # Its vectors are each input's own, in order, as when embedded alone.
        assert response.status_code == 200, response.text
        vectors = [item["embedding"] for item in response.json()["data"]]
        for i in (0, 1, 2, 255, 511):
            alone = httpx.post(
                f"{url}/v1/embeddings", json={"input": inputs[i], "encoding_format": "float"}, timeout=60
            )
            assert np.allclose(vectors[i], alone.json()["data"][0]["embedding"], atol=1e-5)
    assert all(finished[query] < finished["embeddings"] for query in SINGLES), finished
    last = max(recorder.pass_of(text) for text in inputs)
    assert all(recorder.pass_of(query) < last for query in SINGLES), "a single waited for all the inputs"
    assert max(len(recorder.batch & set(texts)) for texts in recorder.passes) <= SLICE_TEXTS
