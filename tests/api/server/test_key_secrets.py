"""API keys across processes and in the open: a key revoked through one server is refused by another
on the same database within seconds (SQLite and PostgreSQL), and no key, right or wrong, ever shows
in the logs (at debug level, with the access log), /stats, /metrics or an error body."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from key_fixtures import make_key
from pydantic import SecretStr

from api.server.app import create_app
from search.settings import Settings

LEGACY = "legacy-secret-in-no-log"


def test_a_revocation_reaches_a_second_server_within_seconds(
    settings: Settings, database_url: str, start_server: Callable[[FastAPI], str]
) -> None:
    live = settings.model_copy(update={"database_url": database_url})
    _, admin = make_key(live, role="admin")
    reader_id, reader = make_key(live, role="read")
    first, second = start_server(create_app(live)), start_server(create_app(live))
    with httpx.Client(timeout=60) as client:
        for url in (first, second):  # each server has verified the key, and remembers it
            assert client.get(f"{url}/stats", headers={"Authorization": f"Bearer {reader}"}).status_code == 200
        revoked = client.delete(f"{first}/keys/{reader_id}", headers={"Authorization": f"Bearer {admin}"})
        assert revoked.status_code == 200
        started = time.monotonic()
        while client.get(f"{second}/stats", headers={"Authorization": f"Bearer {reader}"}).status_code != 401:
            assert time.monotonic() - started < 5, "the second server still takes the revoked key"
            time.sleep(0.1)
        assert client.get(f"{first}/stats", headers={"Authorization": f"Bearer {reader}"}).status_code == 401


@pytest.fixture
def chatty_server(settings: Settings, indexer: Callable[[Settings], None]) -> Iterator[str]:
    """A keyed server whose uvicorn logs (debug, access log on) go to the root logger, where caplog sees them."""
    live = settings.model_copy(update={"api_key": SecretStr(LEGACY)})
    indexer(live)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = uvicorn.Config(
        create_app(live), host="127.0.0.1", port=port, log_config=None, log_level="debug", access_log=True
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        assert thread.is_alive()
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def test_no_key_is_ever_logged_or_shown(
    chatty_server: str, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    reader_id, reader = make_key(settings, role="read")
    _, elsewhere = make_key(settings, role="admin", collections=["other"])
    wrong = f"ss_{reader_id}_{'7' * 48}"
    secrets = [LEGACY, reader, wrong, elsewhere, "nonsense-key-never-valid"]
    bodies: list[str] = []
    with httpx.Client(base_url=chatty_server, timeout=60) as client:
        for key in secrets:
            auth = {"Authorization": f"Bearer {key}"}
            for method, path, body in [
                ("GET", "/stats", None),
                ("GET", "/metrics", None),
                ("POST", "/search", {"query": "cat"}),
                ("PUT", "/documents/x", {"text": "t"}),
                ("POST", "/documents", [{"id": "bad"}]),  # a 422 (or 401/403/404 before it)
                ("GET", "/keys", None),
                ("GET", "/health", None),
            ]:
                bodies.append(client.request(method, path, json=body, headers=auth).text)
        made = client.post("/keys", json={"role": "read"}, headers={"Authorization": f"Bearer {LEGACY}"})
        assert made.status_code == 201
        secrets.append(made.json()["key"])
        bodies.append(client.get("/keys", headers={"Authorization": f"Bearer {LEGACY}"}).text)
        bodies.append(client.get("/metrics", headers={"Authorization": f"Bearer {LEGACY}"}).text)
    time.sleep(0.2)  # the access log of the last answers
    logged = caplog.text
    assert "GET /stats" in logged  # the access log was on
    for secret in secrets:
        for part in {secret, secret.split("_", 2)[-1]}:
            assert part not in logged
            assert not [body for body in bodies if part in body]
