"""Fixtures of the API tests: an indexed data directory and a real uvicorn server on a loopback port."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest
import uvicorn
from fastapi import FastAPI
from pydantic import SecretStr
from starlette.types import Receive, Scope, Send

from api.server.app import create_app
from indexer.ingest.chunking import Chunker
from indexer.write.pipeline import Indexer
from search.components import make_encoder, open_store
from search.dense.catalog import IndexCatalog
from search.settings import Settings
from search.storage.records import DocumentIn

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
    from indexer.write.worker import BackgroundWorker, open_worker

    live = settings.model_copy(update={"reload_seconds": 0.1, "publish_seconds": 0.1})
    index_docs(live)
    background = BackgroundWorker(open_worker(live))
    background.start()
    try:
        yield from serve_app(create_app(live, background.worker.state))
    finally:
        background.stop()


@pytest.fixture
def keyed_worker_url(settings: Settings) -> Iterator[str]:
    """As `worker_url`, behind the API key "s3cret": `semsearch serve` as the attack met it."""
    from indexer.write.worker import BackgroundWorker, open_worker

    live = settings.model_copy(update={"reload_seconds": 0.1, "publish_seconds": 0.1, "api_key": SecretStr("s3cret")})
    index_docs(live)
    background = BackgroundWorker(open_worker(live))
    background.start()
    try:
        yield from serve_app(create_app(live, background.worker.state))
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
    from indexer.write.pipeline import open_indexer

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


@pytest.fixture
def start_server() -> Iterator[Callable[[FastAPI], str]]:
    """Starts any app in a real server (as `serve_app`); each is stopped when the test ends."""
    running: list[Iterator[str]] = []

    def start(app: FastAPI) -> str:
        server = serve_app(app)
        running.append(server)
        return next(server)

    yield start
    for server in running:
        next(server, None)


@pytest.fixture
def indexer() -> Callable[[Settings], None]:
    """Indexes the three fixture documents (DOCS) into the data directory of the given settings."""
    return index_docs


@pytest.fixture(scope="session")
def serve_process(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir) -> Iterator[str]:
    """A real `semsearch serve` process (tiny model, worker beside it, fast publishing), for the whole
    session: the client and the framework integrations talk to it as applications would."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    import httpx

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {
        **os.environ,
        "SEMSEARCH_DATA_DIR": str(tmp_path_factory.mktemp("serve-data")),
        "SEMSEARCH_MODEL": str(tiny_model_dir),
        "SEMSEARCH_DTYPE": "float32",
        "SEMSEARCH_DEVICE": "cpu",
        # torch: no OpenVINO conversion of the session's fresh tiny model at every start.
        "SEMSEARCH_BACKEND": "torch",
        "SEMSEARCH_RELOAD_SECONDS": "0.1",
        "SEMSEARCH_PUBLISH_SECONDS": "0.05",
    }
    cli = Path(sys.executable).with_name("semsearch")
    # A file, not a pipe: the access log of a whole session would fill a pipe and stall the server.
    log = Path(env["SEMSEARCH_DATA_DIR"]) / "serve.log"
    with log.open("w") as log_file:
        server = subprocess.Popen([str(cli), "serve", "--port", str(port)], env=env, stdout=log_file, stderr=log_file)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{base}/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"semsearch serve did not come up:\n{log.read_text()}")
            time.sleep(0.1)
        yield base
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.fixture
def empty_server(serve_process: str) -> str:
    """The session's `semsearch serve`, with every document deleted first."""
    from api.client import SemsearchClient

    with SemsearchClient(serve_process) as client:
        client.delete_documents([d.id for d in client.iter_documents()])
    return serve_process


class _Overloaded:
    """The real app behind a front that answers the first `failures` requests with 503 (or 429)."""

    def __init__(self, app: FastAPI, failures: int, status: int = 503, retry_after: str | None = "0") -> None:
        self.app, self.failures, self.status, self.retry_after = app, failures, status, retry_after
        self.refused = 0
        self.plain: str | None = None  # set: the refusal is this plain text, as a proxy in front would send
        self.path: str | None = None  # set: only requests to this path are refused (not a browser's favicon)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.refused >= self.failures or self.path not in (None, scope["path"]):
            await self.app(scope, receive, send)
            return
        self.refused += 1
        body = json.dumps({"detail": "overloaded: try again shortly"}).encode()
        headers = [(b"content-type", b"application/json")]
        if self.plain is not None:
            body, headers = self.plain.encode(), [(b"content-type", b"text/plain")]
        if self.retry_after is not None:
            headers.append((b"retry-after", self.retry_after.encode()))
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


@pytest.fixture
def overloaded(settings: Settings) -> Iterator[tuple[_Overloaded, str]]:
    """An indexed server that refuses as many requests as the test sets `failures` to."""
    index_docs(settings)
    front = _Overloaded(create_app(settings), failures=0)
    for url in serve_app(front):  # type: ignore[arg-type]
        yield front, url
