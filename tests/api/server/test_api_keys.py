"""Scoped API keys on a real server, on SQLite and PostgreSQL: every role against every group of
routes, with no key, a wrong, expired or revoked one, the right role, a role too low, and a key that
reaches only another collection; SEMSEARCH_API_KEY beside them as an admin key."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from key_fixtures import make_key
from pydantic import SecretStr
from sqlalchemy import text

from api.server.app import create_app
from search.components import open_store
from search.settings import Settings
from search.storage import keys

LEGACY = "legacy-admin-secret"


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    body: Any = None


# Each group of routes: the calls that stand for it, and the role it needs.
GROUPS: dict[str, tuple[str, list[Call]]] = {
    "search": ("read", [Call("POST", "/search", {"query": "cat"}), Call("GET", "/search?q=cat")]),
    "documents read": ("read", [Call("GET", "/documents"), Call("GET", "/documents/pets")]),
    "documents write": ("write", [Call("PUT", "/documents/new", {"text": "a new cat"})]),
    "embeddings": ("read", [Call("POST", "/v1/embeddings", {"input": "cat"})]),
    "stats": ("read", [Call("GET", "/stats"), Call("GET", "/metrics")]),
    "keys admin": ("admin", [Call("GET", "/keys"), Call("POST", "/keys", {"role": "read", "name": "made"})]),
}
ROLES = ["read", "write", "admin"]


def _expected(credential: str, group: str, call: Call) -> set[int]:
    """What `call` (of `group`) must answer with `credential`."""
    needed, _ = GROUPS[group]
    ok = {201} if call.method == "POST" and call.path == "/keys" else {200, 202}
    if credential in ("none", "wrong", "malformed", "expired", "revoked"):
        return {401}
    if credential == "legacy":
        return ok
    if group == "keys admin" and credential != "admin":  # only an admin key for every collection
        return {403}
    if credential.startswith("elsewhere"):  # reaches only another collection: nothing to see here
        return {404}
    role = credential.split()[0]
    return ok if ROLES.index(role) >= ROLES.index(needed) else {403}


@pytest.fixture
def keyed_server(
    settings: Settings, database_url: str, indexer: Callable[[Settings], None], start_server: Callable[[FastAPI], str]
) -> tuple[str, dict[str, str]]:
    """A server with SEMSEARCH_API_KEY set and keys of every kind in its database; (URL, credential -> header)."""
    live = settings.model_copy(update={"database_url": database_url, "api_key": SecretStr(LEGACY)})
    indexer(live)
    headers: dict[str, str] = {"none": "", "legacy": f"Bearer {LEGACY}"}
    for role in ROLES:
        headers[role] = f"Bearer {make_key(live, role=role)[1]}"
        headers[f"{role} with default"] = f"Bearer {make_key(live, role=role, collections=['default', 'x'])[1]}"
        headers[f"elsewhere {role}"] = f"Bearer {make_key(live, role=role, collections=['other'])[1]}"
    expired_id, expired = make_key(live, role="admin", expires_at="1h")
    revoked_id, revoked = make_key(live, role="admin")
    store = open_store(live)
    with store.session(write=True) as s:
        s.execute(text("UPDATE api_keys SET expires_at = created_at WHERE id = :id"), {"id": expired_id})
        keys.revoke_key(s, revoked_id)
    store.close()
    headers["expired"], headers["revoked"] = f"Bearer {expired}", f"Bearer {revoked}"
    headers["wrong"] = f"Bearer ss_{revoked_id}_{'0' * 48}"
    headers["malformed"] = "Bearer nonsense"
    return start_server(create_app(live)), headers


def test_every_role_against_every_route_group(keyed_server: tuple[str, dict[str, str]]) -> None:
    url, headers = keyed_server
    wrong: list[str] = []
    with httpx.Client(base_url=url, timeout=60) as client:
        for credential, header in headers.items():
            sent = {"Authorization": header} if header else {}
            for group, (_, calls) in GROUPS.items():
                for call in calls:
                    got = client.request(call.method, call.path, json=call.body, headers=sent)
                    if got.status_code not in _expected(credential, group, call):
                        wrong.append(f"{credential} {call.method} {call.path}: {got.status_code} {got.text[:120]}")
                    if got.status_code == 404:  # the collection's existence is not revealed
                        body = got.json()
                        # Under /v1 in OpenAI's error shape (api/server/openai_errors.py), else FastAPI's.
                        assert body.get("error", {}).get("message", body.get("detail")) == "Not Found", body
        assert client.get("/health").status_code == 200  # public routes stay public
        assert client.get("/openapi.json").status_code == 200
    assert not wrong, "\n".join(wrong)


def test_the_answers_say_what_is_missing(keyed_server: tuple[str, dict[str, str]]) -> None:
    url, headers = keyed_server
    with httpx.Client(base_url=url, timeout=60) as client:
        missing = client.get("/stats")
        assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
        assert "Authorization: Bearer <key>" in missing.json()["detail"]
        low = client.put("/documents/x", json={"text": "t"}, headers={"Authorization": headers["read"]})
        assert low.json()["detail"] == "this needs a key with the role write or above; this key's is read"
        scoped = client.get("/keys", headers={"Authorization": headers["elsewhere admin"]})
        assert scoped.status_code == 403 and "every collection" in scoped.json()["detail"]


def test_keys_are_managed_through_the_api(keyed_server: tuple[str, dict[str, str]]) -> None:
    url, headers = keyed_server
    admin = {"Authorization": headers["admin"]}
    with httpx.Client(base_url=url, timeout=60) as client:
        spec = {"role": "write", "collections": ["default"], "expires_at": "30d"}
        made = client.post("/keys", json=spec, headers=admin)
        assert made.status_code == 201, made.text
        new = made.json()
        assert new["role"] == "write" and new["collections"] == ["default"] and new["expires_at"]
        assert new["key"].startswith(f"ss_{new['id']}_")
        mine = {"Authorization": f"Bearer {new['key']}"}
        assert client.put("/documents/api-made", json={"text": "t"}, headers=mine).status_code in (200, 202)
        listed = client.get("/keys", headers=admin)
        assert new["id"] in {k["id"] for k in listed.json()["keys"]}
        assert new["key"] not in listed.text and new["key"].split("_", 2)[2] not in listed.text
        bad = client.post("/keys", json={"role": "root", "collections": ["Bad Name"]}, headers=admin)
        assert bad.status_code == 422 and "collections" in bad.text and "role" in bad.text
        gone = client.delete(f"/keys/{new['id']}", headers=admin)
        assert gone.status_code == 200 and gone.json()["revoked_at"] is not None
        assert client.delete("/keys/ffffffffffff", headers=admin).status_code == 404


def test_a_server_without_keys_is_open_until_the_first_key_is_made(
    settings: Settings, indexer: Callable[[Settings], None], start_server: Callable[[FastAPI], str]
) -> None:
    indexer(settings)
    url = start_server(create_app(settings))
    with httpx.Client(base_url=url, timeout=60) as client:
        assert client.get("/stats").status_code == 200
        assert client.get("/stats", headers={"Authorization": "Bearer anything"}).status_code == 200
        made = client.post("/keys", json={"role": "read"})
        assert made.status_code == 201
        key = {"Authorization": f"Bearer {made.json()['key']}"}
        deadline_ok = _eventually(lambda: client.get("/stats").status_code == 401, seconds=5)
        assert deadline_ok, "the server stayed open after its first key was made"
        assert client.get("/stats", headers=key).status_code == 200
        assert client.get("/health").json()["status"] in ("ok", "degraded")


def _eventually(check: Callable[[], bool], seconds: float) -> bool:
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return check()
