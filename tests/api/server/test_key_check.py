"""api.server.auth.KeyCheck on SQLite and PostgreSQL: what it remembers, for how long, and that a
burst of requests with one new key costs one verification."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import SecretStr

from api.server import auth
from api.server.auth import EVERYTHING, KeyCheck
from search.access import KeySpec, Role
from search.storage import keys
from search.storage.store import Store


def _make(store: Store, **spec: object) -> tuple[str, str]:
    with store.session(write=True) as s:
        info, key = keys.create_key(s, KeySpec.model_validate(spec))
    return info.id, key


def test_open_until_a_key_exists_and_keys_checked_again_after_the_ttl(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store(database_url)
    check = KeyCheck(store, None, ttl=2.0)
    verifications: list[str] = []
    real = check._verify
    monkeypatch.setattr(check, "_verify", lambda token: verifications.append(token) or real(token))

    async def run() -> None:
        assert await check.access(None) is EVERYTHING and await check.access("Bearer anything") is EVERYTHING
        key_id, key = _make(store, role="write", collections=["default"])
        assert await check.access(None) is EVERYTHING  # remembered for the ttl
        await asyncio.sleep(2.05)
        assert await check.access(None) is None and await check.access("Bearer anything") is None
        found = await asyncio.gather(*(check.access(f"Bearer {key}") for _ in range(20)))
        assert all(a is not None and a.role is Role.WRITE and a.collections == {"default"} for a in found)
        assert verifications == [key]  # one scrypt for the burst
        with store.session(write=True) as s:
            keys.revoke_key(s, key_id)
        assert await check.access(f"Bearer {key}") is not None  # remembered for the ttl
        await asyncio.sleep(2.05)
        assert await check.access(f"Bearer {key}") is None

    asyncio.run(run())
    store.close()


def test_the_legacy_key_is_an_admin_key_for_everything(database_url: str) -> None:
    store = Store(database_url)
    check = KeyCheck(store, SecretStr("old-key"))

    async def run() -> None:
        assert await check.access("Bearer old-key") is EVERYTHING
        assert await check.access("bearer old-key") is EVERYTHING  # the scheme is case-insensitive
        assert await check.access(None) is None  # not open, though no key is in the database
        assert await check.access("Bearer old-key2") is None and await check.access("Basic old-key") is None

    asyncio.run(run())
    assert auth.CACHE_SECONDS <= 2  # every process sees a revocation within seconds
    store.close()
