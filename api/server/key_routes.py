"""/keys: create, list and revoke API keys (admin keys for every collection only; api/server/app.py
includes this router with that requirement). A key's secret is in the answer that creates it, and
nowhere else ever."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from api.server.bodies import BoundedRoute
from api.server.deps import StoreDep
from api.server.schemas import ErrorBody
from search.access import KeySpec, Role
from search.storage import keys
from search.storage.keys import KeyInfo
from search.storage.store import Store

router = APIRouter(prefix="/keys", tags=["keys"], route_class=BoundedRoute)


class KeyOut(BaseModel):
    """An API key as listed: no secret."""

    id: str = Field(description="The key's public id (the part after `ss_` in the key).")
    name: str
    role: Role
    collections: list[str] | None = Field(description="The collections it reaches; null: all of them.")
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None

    @classmethod
    def of(cls, info: KeyInfo) -> KeyOut:
        """The listing of `info`."""
        collections = None if info.collections is None else list(info.collections)
        return cls(
            id=info.id,
            name=info.name,
            role=info.role,
            collections=collections,
            created_at=info.created_at,
            expires_at=info.expires_at,
            revoked_at=info.revoked_at,
        )


class KeyCreated(KeyOut):
    """A new key: `key` is the secret to send as `Authorization: Bearer <key>`, shown this once."""

    key: str


class KeyList(BaseModel):
    """Every key, revoked and expired ones too, oldest first."""

    keys: list[KeyOut]


def _create(store: Store, spec: KeySpec) -> tuple[KeyInfo, str]:
    with store.session(write=True) as session:
        return keys.create_key(session, spec)


def _revoke(store: Store, key_id: str) -> KeyInfo | None:
    with store.session(write=True) as session:
        return keys.revoke_key(session, key_id)


def _list(store: Store) -> list[KeyInfo]:
    with store.session() as session:
        return keys.list_keys(session)


@router.post("", response_model=KeyCreated, status_code=201, summary="Create an API key")
async def create_key(spec: KeySpec, store: StoreDep) -> KeyCreated:
    """A new key with the role, collections and expiry asked for; its secret is in this answer only."""
    info, key = await run_in_threadpool(_create, store, spec)  # the scrypt hash takes some tens of ms
    return KeyCreated(**KeyOut.of(info).model_dump(), key=key)


@router.get("", response_model=KeyList, summary="List API keys")
def list_keys(store: StoreDep) -> KeyList:
    """Every key's id, name, role, collections and times; never a secret."""
    return KeyList(keys=[KeyOut.of(info) for info in _list(store)])


@router.delete("/{key_id}", response_model=KeyOut, summary="Revoke an API key", responses={404: {"model": ErrorBody}})
def revoke_key(key_id: Annotated[str, Path(max_length=64)], store: StoreDep) -> KeyOut:
    """Revoke a key: every server process refuses it within seconds. Its row stays, listed as revoked."""
    info = _revoke(store, key_id)
    if info is None:
        raise HTTPException(404, f"no API key with id {key_id!r}")
    return KeyOut.of(info)
