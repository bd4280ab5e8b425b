"""A full disk of the database, on a real SQLite file (SQLITE_FULL) and a real PostgreSQL server
(SQLSTATE 53100): every write is a 507 that names the database's disk, never a conflict or a 503 that
leaves the client wondering; reads go on; the episode is logged once however many requests meet it
and whatever reads come between; /health is degraded with the reason until a write is stored again."""

from __future__ import annotations

import logging
from collections.abc import Callable

import httpx
import pytest
from fastapi import FastAPI
from full_disk import FullDisk

from api.client import SemsearchClient, ServerError
from api.server.app import create_app
from search.settings import Settings


def _full_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "disk is full" in r.getMessage()]


def test_a_full_database_disk_is_a_507_logged_once_and_on_health(
    settings: Settings,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    indexer: Callable[[Settings], None],
    start_server: Callable[[FastAPI], str],
) -> None:
    live = settings.model_copy(update={"database_url": database_url})
    indexer(live)
    disk = FullDisk(database_url, monkeypatch)
    app = create_app(live)
    url = start_server(app)
    which = "the SQLite file cannot grow" if disk.sqlite else "the PostgreSQL server has no space left"
    caplog.set_level(logging.WARNING)
    with httpx.Client(base_url=url, timeout=30) as client:
        assert client.get("/health").json()["status"] == "ok"
        disk.fill()
        app.state.searcher.store.engine.dispose()  # SQLite: connections opened from now on are held
        for i in range(6):
            text = " ".join(f"word{i}x{j}" for j in range(3000))  # pages more than the file has
            for response in (
                client.put(f"/documents/new{i}", json={"text": text}),
                client.post("/documents", json=[{"id": f"batch{i}", "text": text}]),
            ):
                assert response.status_code == 507, response.text
                detail = response.json()["detail"]
                assert detail.startswith(f"the database's disk is full ({which}), so this request was not carried out")
                assert "retry-after" not in response.headers
            assert client.get("/documents/pets").status_code == 200  # reads go on, and end nothing
        # The client door: raised at once (no retries: it stays full), with the server's words.
        with SemsearchClient(url, retries=3) as typed, pytest.raises(ServerError) as raised:
            typed.put_document("typed", " ".join(f"typed{j}" for j in range(3000)))
        assert raised.value.status_code == 507 and "the database's disk is full" in raised.value.message
        health = client.get("/health").json()
        assert health["status"] == "degraded", health
        assert any(p.startswith(f"the database's disk is full ({which})") for p in health["problems"]), health
        (line,) = _full_lines(caplog)  # once, for 12 failed writes and the reads between them
        assert f"the database's disk is full ({which}); writes get 507" in line
        assert not [r for r in caplog.records if "conflict" in r.getMessage() or "error ignored" in r.getMessage()]

        disk.free()
        app.state.searcher.store.engine.dispose()
        assert client.put("/documents/new0", json={"text": "a small cat"}).status_code == 200
        assert client.get("/health").json()["status"] == "ok"
    assert any("writes are stored again" in r.getMessage() for r in caplog.records)
    assert len(_full_lines(caplog)) == 1


def test_index_files_on_a_full_disk_are_named_on_health_and_logged_once_each(
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    indexer: Callable[[Settings], None],
    start_server: Callable[[FastAPI], str],
) -> None:
    """The keyword index's tantivy commit and the dense index's FAISS file both meet a full disk (their
    own messages: FAISS's names another temporary file each time) at every catch-up: each is logged
    once, in one line, and /health names the data directory's disk until space returns."""
    import faiss

    from indexer.write.worker import open_worker
    from search.keyword.segments import Segments
    from search.storage.records import DocumentIn
    from search.work.queue import enqueue

    indexer(settings)
    worker = open_worker(settings)
    worker.publisher.merge_min = 1  # a merge (a new FAISS file) at every catch-up
    url = start_server(create_app(settings, worker.state))
    calls = iter(range(1000))

    def tantivy_full(*_args: object) -> None:
        raise ValueError("An IO error occurred: 'No space left on device (os error 28)'")

    def faiss_full(_index: object, path: str) -> None:
        raise RuntimeError(f"write error in {path}.{next(calls)}: 0 != 4096 (No space left on device)")

    monkeypatch.setattr(Segments, "commit", tantivy_full)
    monkeypatch.setattr(faiss, "write_index", faiss_full)
    caplog.set_level(logging.WARNING)
    for i in range(4):
        enqueue(worker.store, [DocumentIn(f"late{i}", f"a late cat {i}")])
        worker.drain()
    with httpx.Client(base_url=url, timeout=30) as client:
        health = client.get("/health").json()
        assert health["status"] == "degraded", health
        for name in ("keyword", "dense"):
            error = health["worker"]["stale_indexes"][name]
            assert error.startswith("the data directory's disk is full (no space left for the index files)"), error
            assert any(p.startswith(f"the {name} index failed to catch up") and error in p for p in health["problems"])
        failed = [r for r in caplog.records if "failed to catch up" in r.getMessage()]
        assert sorted(r.getMessage().split(" failed")[0] for r in failed) == ["the dense index", "the keyword index"]
        assert all(r.exc_info is None and "\n" not in r.getMessage() for r in failed)  # one line, no traceback

        monkeypatch.undo()  # space is freed
        worker.drain()
        health = client.get("/health").json()
    assert health["status"] == "ok", health
    assert len([r for r in caplog.records if "caught up with SQL again" in r.getMessage()]) == 2
