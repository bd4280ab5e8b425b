"""POST /snapshots: behind the API key, written into SEMSEARCH_SNAPSHOT_DIR off the event loop, one at
a time (409 while one is being written), and restorable."""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
from cli_runner import run_cli
from pydantic import SecretStr

from api.server.app import create_app
from indexer.cli.serve import snapshot_manifest
from search.settings import Settings
from tests.api.conftest import index_docs, serve_app

KEY = {"Authorization": "Bearer s3cret"}


def _env(settings: Settings) -> dict[str, str]:
    return {
        "SEMSEARCH_DATA_DIR": str(settings.data_dir),
        "SEMSEARCH_MODEL": settings.model,
        "SEMSEARCH_DTYPE": "float32",
        "SEMSEARCH_DEVICE": "cpu",
    }


def test_an_admin_takes_a_snapshot_that_restores(settings: Settings, tmp_path: Path) -> None:
    live = settings.model_copy(update={"api_key": SecretStr("s3cret"), "snapshot_dir": tmp_path / "snaps"})
    index_docs(live)
    # The first snapshot waits inside the taker until the test lets it go: meanwhile a second is refused
    # and a search is answered (the snapshot runs in a thread, not on the event loop).
    inside, go = threading.Event(), threading.Event()

    def slow(settings: Settings, out: Path) -> Mapping[str, Any]:
        inside.set()
        go.wait(30)
        return snapshot_manifest(settings, out)

    first: list[httpx.Response] = []
    for url in serve_app(create_app(live, take_snapshot=slow)):
        with httpx.Client(base_url=url, timeout=60) as client:
            assert client.post("/snapshots").status_code == 401
            taking = threading.Thread(target=lambda c=client: first.append(c.post("/snapshots", headers=KEY)))
            taking.start()
            assert inside.wait(30)
            busy = client.post("/snapshots", headers=KEY)
            assert busy.status_code == 409 and "another snapshot" in busy.json()["detail"]
            assert client.get("/search", params={"q": "cat"}, headers=KEY).status_code == 200
            go.set()
            taking.join(60)
            done = first[0]
            assert done.status_code == 201, done.text
            body = done.json()
            assert body["manifest"]["documents"] == 3 and body["manifest"]["database"] == "sqlite"
            again = client.post("/snapshots", headers=KEY)  # the lock went with the first
            assert again.status_code == 201 and again.json()["name"] != body["name"]
    folder = tmp_path / "snaps" / body["name"]
    assert json.loads((folder / "manifest.json").read_text())["seq"] == body["manifest"]["seq"]
    restored = settings.model_copy(update={"data_dir": tmp_path / "restored"})
    assert run_cli(["restore", str(folder)], _env(restored)).returncode == 0
    assert run_cli(["check"], _env(restored)).returncode == 0
    found = run_cli(["search", "cat", "--json", "-k", "1"], _env(restored))
    assert json.loads(found.stdout)[0]["id"] == "pets"


def test_without_a_snapshot_dir_the_route_says_how_to_turn_it_on(settings: Settings) -> None:
    for url in serve_app(create_app(settings, take_snapshot=snapshot_manifest)):
        answer = httpx.post(f"{url}/snapshots", timeout=30)
        assert answer.status_code == 404 and "SEMSEARCH_SNAPSHOT_DIR" in answer.json()["detail"]
