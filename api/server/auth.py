"""Who a request is: the API key it sends (`Authorization: Bearer <key>`) resolved to a role and the
collections it reaches, and `require(role)`, the check every protected router is included with
(api/server/app.py maps each router to its role).

The keys are in SQL (search/storage/keys.py), so every server process sees a key created or revoked
by any other within CACHE_SECONDS: a verified key is remembered for that long under a keyed digest
of it (never the key itself), and the scrypt verification of a key not remembered runs in a thread,
off the event loop. SEMSEARCH_API_KEY, where set, is an admin key for every collection. With neither
it nor any key in the database, every route is open, as before keys existed.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import Depends, Header, HTTPException, Request, status
from pydantic import SecretStr

from search.access import DEFAULT_COLLECTION, Role
from search.storage import keys
from search.storage.store import Store

CACHE_SECONDS = 2.0
_CACHE_ENTRIES = 10_000  # past it the cache starts over: a flood of wrong keys cannot grow it without bound


@dataclass(frozen=True)
class Access:
    """What a request may do: its role, the collections it reaches (None: all), until when (None: no end)."""

    role: Role
    collections: frozenset[str] | None = None
    until: datetime | None = None

    def reaches(self, collection: str) -> bool:
        """Whether the request may act on `collection` at all."""
        return self.collections is None or collection in self.collections


EVERYTHING = Access(Role.ADMIN)  # SEMSEARCH_API_KEY, or a server without keys


class KeyCheck:
    """Resolves the Authorization header of a request to its Access (None: no valid key)."""

    def __init__(self, store: Store, legacy: SecretStr | None, ttl: float = CACHE_SECONDS) -> None:
        self.store, self.ttl = store, ttl
        self._legacy = None if legacy is None else legacy.get_secret_value().encode()
        self._pepper = secrets.token_bytes(32)  # this process's own: the cache's digests mean nothing elsewhere
        self._verified: dict[bytes, tuple[float, Access | None]] = {}
        self._pending: dict[bytes, asyncio.Future[Access | None]] = {}
        self._open: tuple[float, bool] | None = None
        self._open_lock = asyncio.Lock()

    async def access(self, authorization: str | None) -> Access | None:
        """The request's access: everything with SEMSEARCH_API_KEY or on an open server, the key's
        own with a valid key, else None."""
        token = _bearer(authorization)
        if self._legacy is not None and token is not None and hmac.compare_digest(token.encode(), self._legacy):
            return EVERYTHING
        if self._legacy is None and await self.is_open():
            return EVERYTHING
        if token is None or keys.key_id(token) is None:
            return None
        return await self._key_access(token)

    async def is_open(self) -> bool:
        """Whether no key was ever created in the database (read again every `ttl` seconds)."""
        if self._open is not None and time.monotonic() < self._open[0]:
            return self._open[1]
        async with self._open_lock:
            if self._open is None or time.monotonic() >= self._open[0]:
                try:
                    some = await asyncio.to_thread(self._any_keys)
                except Exception:
                    if self._open is None:
                        raise
                    return self._open[1]  # the database is away: as it last said (checked as the server started)
                self._open = (time.monotonic() + self.ttl, not some)
            return self._open[1]

    def _any_keys(self) -> bool:
        with self.store.session() as session:
            return keys.any_keys(session)

    async def _key_access(self, token: str) -> Access | None:
        digest = hmac.new(self._pepper, token.encode(), hashlib.sha256).digest()
        cached = self._verified.get(digest)
        if cached is None or time.monotonic() >= cached[0]:
            # One verification per key at a time: a burst of requests with a key not yet remembered
            # waits for the first one's scrypt, rather than each running its own.
            pending = self._pending.get(digest)
            if pending is None:
                pending = self._pending[digest] = asyncio.ensure_future(asyncio.to_thread(self._verify, token))
                pending.add_done_callback(lambda done: self._forget(digest, done))
            cached = (time.monotonic() + self.ttl, await asyncio.shield(pending))
            if len(self._verified) >= _CACHE_ENTRIES:
                self._verified.clear()
            self._verified[digest] = cached
        found = cached[1]
        if found is not None and found.until is not None and datetime.now(UTC) >= found.until:
            return None  # expired since it was verified
        return found

    def _forget(self, digest: bytes, done: asyncio.Future[Access | None]) -> None:
        self._pending.pop(digest, None)
        if not done.cancelled():
            done.exception()  # retrieved here: each waiter raises it, and none may be left to

    def _verify(self, token: str) -> Access | None:
        with self.store.session() as session:
            info = keys.verify(session, token)
        if info is None:
            return None
        reach = None if info.collections is None else frozenset(info.collections)
        return Access(info.role, reach, info.expires_at)


def _bearer(authorization: str | None) -> str | None:
    if authorization is None:
        return None
    scheme, _, token = authorization.partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


async def request_access(request: Request, authorization: Annotated[str | None, Header()] = None) -> Access | None:
    """The request's access (see KeyCheck.access)."""
    check: KeyCheck = request.app.state.key_check
    return await check.access(authorization)


AccessDep = Annotated[Access | None, Depends(request_access)]

# Begins as it did before scoped keys, for clients that match the message.
UNAUTHORIZED = "missing or wrong API key (or one expired or revoked): send the header 'Authorization: Bearer <key>'"


# What a route acts on: the collection in its path (`default` where it has none), every collection
# (keys, snapshots), or any one (the list of collections, which shows only those the key reaches).
Scope = Literal["collection", "all", "any"]


def require(role: Role, scope: Scope = "collection") -> Any:
    """The dependency a router is included with: its routes need a key of `role` (or above) that
    reaches the collection of the path (`default` for an unprefixed route; a key that does not gets
    404, as if nothing were there), every collection (scope "all"), or any ("any")."""

    async def check(request: Request, access: AccessDep) -> Access:
        if access is None:
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, UNAUTHORIZED, headers={"WWW-Authenticate": "Bearer"})
        if scope == "collection" and not access.reaches(request.path_params.get("collection", DEFAULT_COLLECTION)):
            raise HTTPException(status.HTTP_404_NOT_FOUND, "Not Found")
        if scope == "all" and access.collections is not None:
            raise HTTPException(status.HTTP_403_FORBIDDEN, "this needs a key for every collection")
        if not access.role.allows(role):
            needs = f"this needs a key with the role {role} or above; this key's is {access.role}"
            raise HTTPException(status.HTTP_403_FORBIDDEN, needs)
        return access

    checker: Callable[..., Coroutine[Any, Any, Access]] = check
    return Depends(checker)
