"""Fixtures of the API tests: an indexed data directory and a real uvicorn server on a loopback port."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn
from fastapi import FastAPI
from pydantic import SecretStr

from api.app import create_app
from indexer.chunking import Chunker
from indexer.pipeline import Indexer
from search.catalog import IndexCatalog
from search.components import make_encoder, open_store
from search.settings import Settings
from search.store import DocumentIn

DOCS = [
    DocumentIn("pets", "the cat sat on the mat", "Pets", {"kind": "animal"}),
    DocumentIn("space", "the sun and the moon and a star in the sky", "Space", {"kind": "sky"}),
    DocumentIn("bio", "cancer patients study results", "Bio", {"kind": "science"}),
]


def index_docs(settings: Settings) -> None:
    encoder = make_encoder(settings)
    store = open_store(settings)
    Indexer(encoder, store, IndexCatalog(store, settings.index_dir), Chunker(encoder)).run(DOCS)
    store.close()


def serve(settings: Settings) -> Iterator[str]:
    yield from serve_app(create_app(settings))


def serve_app(app: FastAPI) -> Iterator[str]:
    """Run `app` in uvicorn on a free loopback port in a thread; yields its base URL until the test ends."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the API server did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def base_url(settings: Settings) -> Iterator[str]:
    index_docs(settings)
    yield from serve(settings)


@pytest.fixture
def keyed_url(settings: Settings) -> Iterator[str]:
    yield from serve(settings.model_copy(update={"api_key": SecretStr("s3cret")}))


@pytest.fixture
def live_url(settings: Settings) -> Iterator[str]:
    """A server that looks for newly published indexes every 0.1 s."""
    live = settings.model_copy(update={"reload_seconds": 0.1})
    index_docs(live)
    yield from serve(live)


@pytest.fixture
def small_body_url(settings: Settings) -> Iterator[str]:
    """A server (with nothing indexed) that accepts request bodies of at most 4 KiB."""
    yield from serve(settings.model_copy(update={"max_body_bytes": 4096}))


@pytest.fixture
def worker_url(settings: Settings) -> Iterator[str]:
    """A server with the indexing worker beside it, as `semsearch serve` runs by default."""
    from indexer.worker import BackgroundWorker, open_worker

    live = settings.model_copy(update={"reload_seconds": 0.1, "publish_seconds": 0.1})
    index_docs(live)
    background = BackgroundWorker(open_worker(live))
    background.start()
    try:
        yield from serve(live)
    finally:
        background.stop()


FILLER = ["cat", "dog", "bird", "fish", "tree", "sun", "moon", "star", "water", "fire", "earth", "wind"]
HYBRID_DOCS = [
    # 30 "loud" documents say "gene" many times; 12 "quiet" ones once, among other words.
    *(DocumentIn(f"loud{i}", "gene " * 12 + FILLER[i % 12], f"Loud {i}", {"kind": "loud"}) for i in range(30)),
    *(DocumentIn(f"quiet{i}", f"gene {' '.join(FILLER)} {i}", f"Quiet {i}", {"kind": "quiet"}) for i in range(12)),
    DocumentIn("part", "the part number ZQX-4471 fits the cat door", "Parts", {"kind": "part"}),
    DocumentIn("zh", "我爱北京大学的图书馆", "中文文档", {"kind": "zh"}),
]


@pytest.fixture
def hybrid_url(settings: Settings) -> Iterator[str]:
    """A server over HYBRID_DOCS, indexed as `semsearch index` does (its publish fills the keyword index)."""
    from indexer.pipeline import open_indexer

    indexer = open_indexer(settings)
    indexer.run(HYBRID_DOCS)
    indexer.store.close()
    yield from serve(settings)


LOAD_WORDS = ["cat", "dog", "gene", "virus", "python", "star", "water", "tree", "fire", "cell"]


@pytest.fixture
def loaded(settings: Settings) -> Iterator[tuple[str, Settings]]:
    """A server over 203 documents that reloads every 0.05 s, and its settings."""
    live = settings.model_copy(update={"reload_seconds": 0.05})
    index_docs(live)
    encoder, store = make_encoder(live), open_store(live)
    docs = [DocumentIn(f"d{i}", " ".join(LOAD_WORDS[(i * k + i) % 10] for k in range(7)), "") for i in range(200)]
    Indexer(encoder, store, IndexCatalog(store, live.index_dir), Chunker(encoder)).run(docs)
    store.close()
    for url in serve(live):
        yield url, live


@pytest.fixture
def served_app(settings: Settings) -> Iterator[tuple[FastAPI, str]]:
    """An indexed server together with its app object, so a test can reach its encoder and batcher."""
    index_docs(settings)
    app = create_app(settings)
    for url in serve_app(app):
        yield app, url
