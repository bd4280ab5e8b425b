"""The server under faults, over real HTTP: reloads that never hold the event loop, a failing worker
made visible (/health, /stats, /metrics, `?wait=true`), /docs with no internet, the `openai` client."""

from __future__ import annotations

import logging
import re
import shutil
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest
from fastapi import FastAPI

from api.server.app import create_app
from indexer.ingest.chunking import Chunker
from indexer.write.pipeline import Indexer
from search.components import make_encoder, open_keyword, open_store
from search.dense.catalog import IndexCatalog
from search.settings import Settings
from search.storage.records import DocumentIn
from search.work.state import WorkerState

Start = Callable[[FastAPI], str]
Indexing = Callable[[Settings], None]


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 60  # a guard against hanging, not a performance bound
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting: {what}"
        time.sleep(0.05)


@pytest.fixture
def live_app(
    settings: Settings, start_server: Start, indexer: Callable[[Settings], None]
) -> tuple[FastAPI, str, Settings]:
    """An indexed server that looks for new indexes every 0.1 s, with its app object."""
    live = settings.model_copy(update={"reload_seconds": 0.1})
    indexer(live)
    app = create_app(live)
    return app, start_server(app), live


def test_a_reload_never_holds_the_event_loop(live_app: tuple[FastAPI, str, Settings]) -> None:
    app, url, live = live_app
    watcher = app.state.searcher.watcher
    entered, release = threading.Event(), threading.Event()
    look = watcher._look  # applying the change log (or loading a new base file) happens in here

    def held_look(serving):  # type: ignore[no-untyped-def]
        entered.set()  # reading the changes (or a new file, an encoder) takes as long as the test wants
        release.wait(60)
        return look(serving)

    watcher._look = held_look
    store, encoder = open_store(live), make_encoder(live)
    Indexer(encoder, store, IndexCatalog(store, live.index_dir), Chunker(encoder)).run(
        [DocumentIn("fresh", "virus vaccine dose water", "Fresh")]
    )
    store.close()
    try:
        with httpx.Client(base_url=url, timeout=10) as client:
            client.get("/search", params={"q": "cat"})  # a search may be what notices the new index
            assert entered.wait(30), "the server never started loading the new index"
            # The reload is held: had it run on the event loop, nothing could answer until it ends.
            assert client.get("/health").json()["status"] == "ok"
            assert client.get("/search", params={"q": "the cat sat on the mat", "k": 1}).json()["results"][0]["id"]
            assert client.get("/stats").json()["vectors"] == 3  # the old index serves meanwhile
    finally:
        release.set()
    with httpx.Client(base_url=url, timeout=30) as client:
        wait_for(lambda: client.get("/stats").json()["vectors"] == 4, "the new index to be served")


@pytest.fixture
def failing_worker(
    settings: Settings, start_server: Start, indexer: Callable[[Settings], None]
) -> tuple[str, WorkerState]:
    """A server whose in-process worker (here only its state) has failed past its budget; nothing
    indexes what is written."""
    state = WorkerState(failure_budget=3)
    for _ in range(4):
        state.failed(ConnectionError("the database went away"))
    indexer(settings)
    return start_server(create_app(settings, state)), state


def test_a_failing_worker_is_reported_everywhere(failing_worker: tuple[str, WorkerState]) -> None:
    url, state = failing_worker
    with httpx.Client(base_url=url, timeout=30) as client:
        health = client.get("/health").json()
        assert health["status"] == "degraded" and "failed 4 times in a row" in health["problems"][0]
        assert health["worker"]["backoff_seconds"] == 4.0 and health["worker"]["failing"]
        stats = client.get("/stats").json()
        assert stats["worker"]["last_error"] == "ConnectionError: the database went away"
        written = client.put("/documents/w1", params={"wait": "true", "timeout": 0.3}, json={"text": "a cat"})
        assert written.status_code == 202 and not written.json()["indexed"]
        assert "the indexing worker is failing (4 errors in a row" in written.json()["reason"]
        metrics = client.get("/metrics").text
        assert _metric(metrics, "semsearch_worker_consecutive_failures") == 4
        assert _metric(metrics, "semsearch_unindexed_documents") == 1
        assert _metric(metrics, "semsearch_oldest_unindexed_seconds") > 0
        state.succeeded()
        assert client.get("/health").json()["status"] == "ok"


def test_a_stalled_queue_is_degraded_even_without_a_worker_here(settings: Settings, start_server: Start) -> None:
    stalled = settings.model_copy(update={"degraded_pending_seconds": 0.05})
    url = start_server(create_app(stalled))  # no worker in this process: the queue is read from SQL
    with httpx.Client(base_url=url, timeout=30) as client:
        assert client.put("/documents/q1", json={"text": "a cat"}).status_code == 200
        wait_for(lambda: client.get("/health").json()["status"] == "degraded", "the queue to count as stalled")
        health = client.get("/health").json()
        assert health["worker"] is None and health["queue"]["unindexed_documents"] == 1
        assert "is an indexing worker running" in health["problems"][0]


def _within(seconds: float, condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"not within {seconds} s: {what}"
        time.sleep(0.05)


def test_a_failing_keyword_index_is_reported_and_mends_itself(
    settings: Settings, database_url: str, start_server: Start
) -> None:
    from indexer.write.worker import BackgroundWorker, open_worker

    live = settings.model_copy(update={"database_url": database_url, "reload_seconds": 0.1, "publish_seconds": 0.1})
    live.data_dir.mkdir(parents=True)
    live.keyword_dir.write_text("not a folder")  # the keyword writer cannot make its folder: every catch-up fails
    background = BackgroundWorker(open_worker(live))
    background.start()
    try:
        url = start_server(create_app(live, background.worker.state))
        with httpx.Client(base_url=url, timeout=30) as client:
            # The worker's start-up catch-up fails at once: /health says so within seconds, naming it.
            _within(10, lambda: client.get("/health").json()["status"] == "degraded", "/health degraded")
            health = client.get("/health").json()
            assert any(p.startswith("the keyword index failed to catch up") for p in health["problems"]), health
            assert "FileExistsError" in health["worker"]["stale_indexes"]["keyword"]
            written = client.put("/documents/k1", params={"wait": "true", "timeout": 2}, json={"text": "a zebra"})
            assert written.status_code == 202 and not written.json()["indexed"]
            assert "the keyword index failed to catch up" in written.json()["reason"]
            # The vectors went on meanwhile: only the keyword side is stale.
            assert client.get("/stats").json()["vectors"] == 1
            live.keyword_dir.unlink()  # the fault gone: the next catch-up builds the index from SQL
            _within(10, lambda: client.get("/health").json()["status"] == "ok", "/health ok again")
            assert client.get("/health").json()["worker"]["stale_indexes"] == {}

            def found() -> list[str]:
                hits = client.get("/search", params={"q": "zebra", "mode": "keyword"}).json()["results"]
                return [h["id"] for h in hits]

            _within(5, lambda: found() == ["k1"], "found by keyword search (the server reloads within 0.1 s)")
    finally:
        background.stop()


def test_a_keyword_index_that_cannot_be_opened_is_logged_once_and_reported(
    settings: Settings, start_server: Start, indexer: Indexing, caplog: pytest.LogCaptureFixture
) -> None:
    indexer(settings)
    path = open_keyword(settings).path
    path.mkdir(parents=True)
    (path / "meta.json").write_text("garbage")  # a corrupt index: tantivy refuses to open it
    url = start_server(create_app(settings))  # no worker here: nothing rewrites it
    with httpx.Client(base_url=url, timeout=30) as client, caplog.at_level(logging.WARNING):
        for _ in range(3):  # hybrid search serves the dense side alone meanwhile
            assert client.get("/search", params={"q": "the cat sat on the mat"}).json()["results"][0]["id"] == "pets"
        health = client.get("/health").json()
        assert health["status"] == "degraded", health
        assert any(
            "keyword index" in p and "cannot be opened" in p and "Data corrupted" in p for p in health["problems"]
        )
        # Logged once, not once a request.
        assert len([r for r in caplog.records if "cannot be opened" in r.getMessage()]) == 1
        shutil.rmtree(path)
        from indexer.write.keyword_writer import KeywordWriter  # the index rebuilt from SQL

        KeywordWriter(open_keyword(settings)).rebuild(open_store(settings))
        _within(10, lambda: client.get("/health").json()["status"] == "ok", "/health ok once it opens")
        hits = client.get("/search", params={"q": "cat", "mode": "keyword"}).json()["results"]
        assert [h["id"] for h in hits] == ["pets"]


def test_docs_work_with_no_internet(keyed_url: str) -> None:
    with httpx.Client(base_url=keyed_url, timeout=30) as client:
        page = client.get("/docs")
        assert page.status_code == 200
        assets = re.findall(r"""(?:src|href)=["']([^"']+)["']""", page.text)
        assert len(assets) >= 3 and all(a.startswith("/docs-assets/") for a in assets), assets
        for asset in assets:
            fetched = client.get(asset)
            assert fetched.status_code == 200 and len(fetched.content) > 1000, asset
        assert client.get("/redoc").status_code == 404  # ReDoc loads from a CDN: not offered


def test_the_official_openai_client(keyed_url: str, settings: Settings) -> None:
    client = openai.OpenAI(base_url=f"{keyed_url}/v1", api_key="s3cret", max_retries=0, timeout=60)
    texts = ["the cat sat on the mat", "a dog"]
    model = Path(settings.model).name  # the served model's folder: a name it answers to
    packed = client.embeddings.create(input=texts, model=model)  # base64, its default
    floats = client.embeddings.create(input=texts, model=settings.model, encoding_format="float")
    expected = make_encoder(settings).encode(texts)
    assert np.allclose([d.embedding for d in packed.data], expected, atol=1e-5)
    assert [d.embedding for d in packed.data] == [d.embedding for d in floats.data]
    assert packed.usage.total_tokens > 4 and [d.index for d in packed.data] == [0, 1]
    # The client's exception says the server's reason (it read only OpenAI's error shape: "Error code: 422").
    with pytest.raises(openai.UnprocessableEntityError) as wrong_size:
        client.embeddings.create(input=texts, model=model, dimensions=16)
    assert "32-dimensional" in str(wrong_size.value) and wrong_size.value.param == "dimensions"
    with pytest.raises(openai.UnprocessableEntityError) as token_ids:
        client.embeddings.create(input=[[101, 102]], model=model)
    assert "token-id inputs are not supported" in str(token_ids.value) and token_ids.value.param == "input"
    with ThreadPoolExecutor(max_workers=4) as pool:  # concurrent calls share forward passes
        many = list(pool.map(lambda t: client.embeddings.create(input=t, model=model), ["cat", "dog", "sun", "sky"]))
    assert all(len(m.data[0].embedding) == 32 for m in many)


def _metric(text: str, name: str) -> float:
    match = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    assert match, f"{name} missing from /metrics"
    return float(match.group(1))
