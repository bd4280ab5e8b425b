"""Database errors answered as what they are, on SQLite, in process: a database file that cannot be
opened (its folder moved away) is a 503 with Retry-After on every route that needs it and a
`degraded` /health, and the server serves again once it is back; a `wait=true` write committed
before it went away is a 202 that says so; a fault of the program stays a 500."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.exc import ProgrammingError

from api.server.app import create_app
from search.settings import Settings

# Keyword mode is left to test_database_restart.py: no keyword index is built here, so it needs no SQL.
ROUTES = [
    ("GET", "/search", {"params": {"q": "cat", "mode": "hybrid"}}),
    ("GET", "/search", {"params": {"q": "cat", "mode": "dense"}}),
    ("POST", "/search", {"json": {"query": "cat", "filter": {"kind": "animal"}}}),
    ("POST", "/search/batch", {"json": {"queries": ["cat", "sky"]}}),
    ("PUT", "/documents/new", {"json": {"text": "a new cat"}}),
    ("POST", "/documents", {"json": [{"id": "new2", "text": "a new cat"}]}),
    ("GET", "/documents/pets", {}),
    ("GET", "/documents", {}),
    ("DELETE", "/documents/pets", {}),
    ("GET", "/stats", {}),
    ("GET", "/metrics", {}),
]


class Movable:
    """A served app whose SQLite file lives in a folder of its own, which can be moved away."""

    def __init__(self, app: FastAPI, url: str, folder: Path) -> None:
        self.app, self.url, self.folder = app, url, folder

    def away(self) -> None:
        self.folder.rename(self.folder.with_name("away"))
        self.app.state.searcher.store.engine.dispose()  # pooled connections would still read the old file

    def back(self) -> None:
        self.folder.with_name("away").rename(self.folder)


@pytest.fixture
def movable(
    settings: Settings, tmp_path: Path, start_server: Callable[[FastAPI], str], indexer: Callable[[Settings], None]
) -> Movable:
    folder = tmp_path / "db"
    live = settings.model_copy(update={"database_url": f"sqlite:///{folder / 'store.db'}"})
    indexer(live)
    app = create_app(live)
    return Movable(app, start_server(app), folder)


def test_an_unopenable_database_is_a_503_on_every_route_and_the_server_recovers(movable: Movable) -> None:
    with httpx.Client(base_url=movable.url, timeout=30) as client:
        assert client.get("/search", params={"q": "cat"}).status_code == 200
        movable.away()
        for method, path, kwargs in ROUTES:
            response = client.request(method, path, **kwargs)  # type: ignore[arg-type]
            assert response.status_code == 503, (method, path, response.text)
            assert response.headers["retry-after"] == "5"
            assert "the database is unavailable (the SQLite file cannot be opened)" in response.json()["detail"]
        health = client.get("/health").json()
        assert health["status"] == "degraded", health
        assert "the database did not answer: the database is unavailable" in health["problems"][0]
        movable.back()
        assert client.get("/search", params={"q": "cat"}).status_code == 200  # no restart
        assert client.get("/documents/pets").status_code == 200
        assert client.put("/documents/new", json={"text": "a new cat"}).status_code == 200


def test_a_committed_wait_write_whose_database_went_away_is_a_202_that_says_so(movable: Movable) -> None:
    answers: list[httpx.Response] = []
    with httpx.Client(base_url=movable.url, timeout=30) as client:

        def write() -> None:  # no worker here: it waits for indexing until the database goes away
            wait = {"wait": "true", "timeout": 20}
            answers.append(client.put("/documents/kept", params=wait, json={"text": "a cat"}))

        writer = threading.Thread(target=write)
        writer.start()
        deadline = time.monotonic() + 20
        while client.get("/documents/kept").status_code != 200:  # committed: polling for the worker now
            assert time.monotonic() < deadline
            time.sleep(0.05)
        movable.away()
        writer.join(30)
        movable.back()
        (answer,) = answers
        assert answer.status_code == 202, answer.text
        assert not answer.json()["indexed"] and answer.json()["added"] == ["kept"]
        assert "stored and queued for indexing, but the database is unavailable" in answer.json()["reason"]
        assert client.get("/documents/kept").json()["status"] == "pending"


def test_a_fault_of_the_program_stays_a_500(movable: Movable, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_args: object) -> None:
        raise ProgrammingError("SELECT nonsense", {}, Exception("syntax error"))

    monkeypatch.setattr(movable.app.state.searcher.store, "list_documents", broken)
    with httpx.Client(base_url=movable.url, timeout=30) as client:
        assert client.get("/documents").status_code == 500
