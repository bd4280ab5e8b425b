"""The client's key calls against a real server behind SEMSEARCH_API_KEY (an admin key for every collection)."""

from __future__ import annotations

import asyncio
import time

import pytest

from api.client import (
    AsyncSemsearchClient,
    AuthenticationError,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
    SemsearchClient,
)


def test_create_use_list_and_revoke_a_key(keyed_url: str) -> None:
    with SemsearchClient(keyed_url, api_key="s3cret") as admin:
        made = admin.create_key("read", collections=["default"], expires_at="7d", name="reader")
        assert made.role == "read" and made.collections == ["default"] and made.expires_at is not None
        assert made.key.startswith(f"ss_{made.id}_")
        with pytest.raises(InvalidRequestError, match="collections"):
            admin.create_key("read", collections=["Not A Name"])
        listed = admin.list_keys()
        assert [k.id for k in listed] == [made.id] and not hasattr(listed[0], "key")
        with SemsearchClient(keyed_url, api_key=made.key) as reader:
            assert reader.stats().documents == 0
            with pytest.raises(PermissionDeniedError, match="role write"):
                reader.put_document("x", "text")
            with pytest.raises(PermissionDeniedError):
                reader.list_keys()
            assert admin.revoke_key(made.id).revoked_at is not None
            with pytest.raises(NotFoundError):
                admin.revoke_key("ffffffffffff")
            deadline = time.monotonic() + 5
            while True:
                try:
                    reader.stats()
                except AuthenticationError:
                    break
                assert time.monotonic() < deadline, "the revoked key still works"
                time.sleep(0.1)


def test_the_async_client_has_the_same_calls(keyed_url: str) -> None:
    async def run() -> None:
        async with AsyncSemsearchClient(keyed_url, api_key="s3cret") as admin:
            made = await admin.create_key("write")
            assert made.collections is None and made.expires_at is None
            assert [k.id for k in await admin.list_keys()] == [made.id]
            assert (await admin.revoke_key(made.id)).revoked_at is not None

    asyncio.run(run())
