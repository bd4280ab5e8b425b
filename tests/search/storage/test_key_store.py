"""API keys in SQL (search/storage/keys.py) on SQLite and PostgreSQL: only a salted hash of each
secret is stored, and a key verifies only while it is neither revoked nor expired."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from alembic import command
from sqlalchemy import text

from search.access import KeySpec, Role
from search.storage import keys
from search.storage.db import alembic_config
from search.storage.records import ChunkIn, DocumentIn
from search.storage.store import Store


def _create(store: Store, **spec: object) -> tuple[keys.KeyInfo, str]:
    with store.session(write=True) as s:
        return keys.create_key(s, KeySpec.model_validate({"role": "read", **spec}))


def _verify(store: Store, key: str, now: datetime | None = None) -> keys.KeyInfo | None:
    with store.session() as s:
        return keys.verify(s, key, now)


def test_a_key_verifies_until_revoked(database_url: str) -> None:
    store = Store(database_url)
    with store.session() as s:
        assert not keys.any_keys(s)
    info, key = _create(store, role="write", collections=["default", "other"], name="ci")
    assert key.startswith(f"ss_{info.id}_") and keys.key_id(key) == info.id
    found = _verify(store, key)
    assert found == info and found.role is Role.WRITE and found.collections == ("default", "other")
    assert found.created_at.tzinfo is not None
    secret = key.split("_", 2)[2]
    assert _verify(store, key[:-1] + ("0" if key[-1] != "0" else "1")) is None  # a wrong secret
    assert _verify(store, f"ss_{'0' * 12}_{secret}") is None  # no such id
    assert _verify(store, "not-a-key") is None
    with store.engine.connect() as c:
        stored = " ".join(str(v) for row in c.execute(text("SELECT * FROM api_keys")) for v in row)
    assert secret not in stored and "scrypt$" in stored  # the secret is nowhere, only its hash
    with store.session(write=True) as s:
        revoked = keys.revoke_key(s, info.id)
        assert keys.revoke_key(s, "f" * 12) is None and keys.revoke_key(s, "nope") is None
    assert revoked is not None and revoked.revoked_at is not None
    assert _verify(store, key) is None
    with store.session(write=True) as s:
        assert keys.revoke_key(s, info.id) == revoked  # again: the first time is kept
        assert keys.any_keys(s)  # a revoked key still makes the store one that asks for keys
        assert [k.id for k in keys.list_keys(s)] == [info.id]
    store.close()


def test_a_key_stops_at_its_expiry(database_url: str) -> None:
    store = Store(database_url)
    info, key = _create(store, expires_at="1h")
    assert info.expires_at is not None
    assert _verify(store, key) == info
    assert _verify(store, key, now=info.expires_at + timedelta(seconds=1)) is None
    other, forever = _create(store)
    assert other.expires_at is None and _verify(store, forever, now=datetime(2999, 1, 1, tzinfo=UTC)) == other
    store.close()


def test_upgrading_an_existing_store_adds_an_empty_key_table(database_url: str) -> None:
    command.upgrade(alembic_config(database_url), "0007")
    old = Store(database_url, upgrade=False)
    old.write_documents([(DocumentIn("kept", "the cat sat", "T", {"n": 1}), [ChunkIn(0, "the cat sat", 0, 11)])])
    old.close()
    store = Store(database_url)  # upgrades to the head
    doc = store.get_document("kept")
    assert doc is not None and doc.meta == {"n": 1}
    with store.session() as s:
        assert not keys.any_keys(s) and keys.list_keys(s) == []
    _, key = _create(store, role="admin")
    assert _verify(store, key) is not None
    store.close()
