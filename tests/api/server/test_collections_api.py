"""Collections over real HTTP, on SQLite and PostgreSQL, with the worker of every collection beside
the server (as `semsearch serve` runs): two collections with different pooling hold the same id with
different texts and each search sees only its own, the unprefixed routes act on `default`, PUT is
idempotent and conflicts on other settings, and deleting one collection under concurrent searches of
another fails none of them."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import httpx
import pytest
from fastapi import FastAPI

from api.server.app import create_app
from indexer.write.fleet import Fleet
from indexer.write.worker import BackgroundWorker
from search.settings import Settings


@pytest.fixture
def served(settings: Settings, database_url: str, start_server: Callable[[FastAPI], str]) -> Iterator[str]:
    """A server and the fleet of workers, on the parametrised database."""
    url = None if database_url.startswith("sqlite") else database_url
    live = settings.model_copy(update={"database_url": url, "reload_seconds": 0.1, "publish_seconds": 0.1})
    from search.components import migrate

    migrate(live)
    fleet = Fleet(live, refresh_seconds=0.1)
    fleet.refresh()
    background = BackgroundWorker(fleet)
    background.start()
    try:
        yield start_server(create_app(live, fleet.state))
    finally:
        background.stop()
        fleet.close()


def _put(client: httpx.Client, prefix: str, doc_id: str, text: str) -> None:
    answer = client.put(f"{prefix}/documents/{doc_id}?wait=true", json={"text": text})
    assert answer.status_code == 200, answer.text


def _found(client: httpx.Client, prefix: str, query: str) -> list[tuple[str, str]]:
    answer = client.post(f"{prefix}/search", json={"query": query, "top_k": 5})
    assert answer.status_code == 200, answer.text
    return [(hit["id"], hit["text"]) for hit in answer.json()["results"]]


def test_each_collection_holds_and_finds_its_own(served: str) -> None:
    with httpx.Client(base_url=served, timeout=60) as client:
        made = client.put("/collections/mean-docs", json={})
        assert made.status_code == 201, made.text
        assert client.put("/collections/cls_docs", json={"pooling": "cls"}).status_code == 201
        assert client.put("/collections/cls_docs", json={"pooling": "cls"}).status_code == 200
        conflict = client.put("/collections/cls_docs", json={"pooling": "mean"})
        assert conflict.status_code == 409 and "pooling" in conflict.json()["detail"]
        assert client.put("/collections/Bad%20Name", json={}).status_code == 422
        assert client.put("/collections/x", json={"chunk_size": 3}).status_code == 422
        assert client.put("/collections/x", json={"nonsense": 1}).status_code == 422

        _put(client, "/collections/mean-docs", "same", "volcanoes erupt molten lava")
        _put(client, "/collections/cls_docs", "same", "penguins swim in cold water")
        _put(client, "", "same", "violins have four strings")
        assert _found(client, "/collections/mean-docs", "lava") == [("same", "volcanoes erupt molten lava")]
        assert _found(client, "/collections/cls_docs", "penguins") == [("same", "penguins swim in cold water")]
        assert _found(client, "", "violins") == [("same", "violins have four strings")]
        assert _found(client, "/collections/default", "violins") == [("same", "violins have four strings")]
        got = client.get("/collections/cls_docs/documents/same").json()
        assert got["text"] == "penguins swim in cold water"

        listed = {c["name"]: c for c in client.get("/collections").json()["collections"]}
        assert set(listed) == {"default", "mean-docs", "cls_docs"}
        assert (
            listed["cls_docs"]["settings"] == {"pooling": "cls"} and listed["cls_docs"]["effective"]["pooling"] == "cls"
        )
        assert listed["mean-docs"]["effective"]["pooling"] == "mean" and listed["mean-docs"]["documents"] == 1
        assert client.get("/collections/nowhere/search?q=x").status_code == 404
        assert client.get("/collections/nowhere").status_code == 404
        assert client.delete("/collections/default").status_code == 409


def test_deleting_one_collection_fails_no_search_of_another(served: str) -> None:
    with httpx.Client(base_url=served, timeout=60) as client:
        for name in ("keep", "drop"):
            assert client.put(f"/collections/{name}", json={}).status_code == 201
            _put(client, f"/collections/{name}", "d1", f"the {name} collection talks about rivers")
        failures: list[str] = []
        stop = threading.Event()

        def search_keep() -> None:
            with httpx.Client(base_url=served, timeout=60) as own:
                while not stop.is_set():
                    answer = own.post("/collections/keep/search", json={"query": "rivers"})
                    if answer.status_code != 200 or not answer.json()["results"]:
                        failures.append(f"{answer.status_code} {answer.text[:200]}")

        threads = [threading.Thread(target=search_keep) for _ in range(3)]
        for thread in threads:
            thread.start()
        try:
            deleted = client.delete("/collections/drop")
            assert deleted.status_code == 200, deleted.text
            assert client.get("/collections/drop/search?q=rivers").status_code == 404
            assert client.delete("/collections/drop").status_code == 404
        finally:
            stop.set()
            for thread in threads:
                thread.join()
        assert failures == []
        assert _found(client, "/collections/keep", "rivers")[0][0] == "d1"
        # The name made again is a new, empty collection.
        assert client.put("/collections/drop", json={}).status_code == 201
        assert _found(client, "/collections/drop", "rivers") == []


# Each group of a collection's routes: a call standing for it (under the collection's prefix), the role it needs.
GROUPS = {
    "search": ("read", "POST", "/search", {"query": "rivers"}),
    "documents read": ("read", "GET", "/documents", None),
    "documents write": ("write", "PUT", "/documents/new", {"text": "a new text"}),
    "embeddings": ("read", "POST", "/v1/embeddings", {"input": "rivers"}),
    "stats": ("read", "GET", "/stats", None),
    "collection admin": ("admin", "PUT", "", {}),
}
ROLES = ["read", "write", "admin"]


def test_key_matrix_over_own_and_other_collections(
    settings: Settings, database_url: str, start_server: Callable[[FastAPI], str]
) -> None:
    """Every role x every route group x a key's own collection and another: 200, 401, 403 or 404."""
    from key_fixtures import make_key
    from pydantic import SecretStr

    from search.collections import catalog
    from search.collections.spec import CollectionSettings
    from search.components import migrate, open_store

    url = None if database_url.startswith("sqlite") else database_url
    live = settings.model_copy(update={"database_url": url, "api_key": SecretStr("legacy")})
    migrate(live)
    deployment = open_store(live)
    for name in ("own", "other"):
        catalog.create(live, deployment, name, CollectionSettings())
    deployment.close()
    keys = {role: make_key(live, role=role, collections=["own"])[1] for role in ROLES}
    base = start_server(create_app(live))
    seen: dict[tuple[str, str, str], int] = {}
    with httpx.Client(base_url=base, timeout=60) as client:
        for group, (_needed, method, path, body) in GROUPS.items():
            for where in ("own", "other"):
                target = f"/collections/{where}{path}"
                seen[("none", group, where)] = client.request(method, target, json=body).status_code
                for role, key in keys.items():
                    answer = client.request(method, target, json=body, headers={"Authorization": f"Bearer {key}"})
                    seen[(role, group, where)] = answer.status_code
        listed = client.get("/collections", headers={"Authorization": f"Bearer {keys['read']}"}).json()
    expected = {}
    for role, group, where in seen:
        needed = GROUPS[group][0]
        if role == "none":
            expected[(role, group, where)] = 401
        elif where == "other":
            expected[(role, group, where)] = 404  # its existence is not revealed
        elif ROLES.index(role) < ROLES.index(needed):
            expected[(role, group, where)] = 403
        else:
            expected[(role, group, where)] = 200
    assert seen == expected
    assert [c["name"] for c in listed["collections"]] == ["own"]


def test_an_idle_collection_is_caught_up_by_its_next_request(
    served: str, settings: Settings, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Collections not searched lately are not refreshed in the background (a hundred idle ones would
    cost the busy one its time: bench/collections.py measures that), yet their next search sees every
    write committed before it (the dense view polls the log as it searches; a replica's keyword
    keeper is ticked by that request, `Served.get`)."""
    import time

    from api.server import served as served_module
    from search.collections import catalog
    from search.components import open_store
    from search.storage.records import DocumentIn
    from search.work.queue import enqueue

    monkeypatch.setattr(served_module, "ACTIVE_SECONDS", 0.2)
    with httpx.Client(base_url=served, timeout=60) as client:
        assert client.put("/collections/quiet", json={}).status_code == 201
        _put(client, "/collections/quiet", "first", "lighthouses guide ships at night")
        assert _found(client, "/collections/quiet", "lighthouses")[0][0] == "first"
        time.sleep(1.0)  # idle now: no longer refreshed in the background
        url = None if database_url.startswith("sqlite") else database_url
        live = settings.model_copy(update={"database_url": url})
        deployment = open_store(live)
        own = catalog.collection_settings(live, deployment, "quiet")
        deployment.close()
        store = open_store(own)
        enqueue(store, [DocumentIn("second", "lighthouses have lamps and lenses")])  # not through this server
        deadline = time.monotonic() + 60
        while store.statuses(["second"]).get("second") != "indexed":  # the worker embeds it
            assert time.monotonic() < deadline, "the worker did not embed the document"
            time.sleep(0.1)
        store.close()
        time.sleep(0.5)  # past the background's last look, had there been one
        assert {doc_id for doc_id, _ in _found(client, "/collections/quiet", "lighthouses")} == {"first", "second"}
