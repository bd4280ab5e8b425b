"""The collections a server answers for: `default`, opened as the server starts, and every other one
opened on its first request (a server with a hundred collections starts as fast as with one), each
with its own store, dense and keyword indexes and settings, over encoders shared by model.

Which collections exist is read from SQL (search/collections/catalog.py): a name not seen in the last
read is looked up again at once, so a collection made by another process answers at its first
request; a deleted one is closed at the next read, `reload_seconds` later at most."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass, field

from api.server.flow.batcher import MicroBatcher
from api.server.index_lag import KeywordKeeper
from search.access import DEFAULT_COLLECTION
from search.collections import catalog
from search.components import EncoderPool, open_keyword, open_searcher
from search.query.hits import FusionConfig
from search.query.hybrid import HybridSearcher
from search.settings import Settings
from search.storage.outage import unavailable
from search.storage.store import Store

log = logging.getLogger(__name__)

# A collection searched within this many seconds is kept caught up with its change log in the
# background, every reload_seconds; an idle one is caught up when its next request comes. With a
# hundred collections opened, refreshing each every second (SQL reads of its log, a keyword keeper's
# look) cost the searches of the one in use 3x their time on 2 cores (bench/collections.py).
ACTIVE_SECONDS = 60.0


@dataclass
class ServedCollection:
    """One collection as this server serves it."""

    name: str
    settings: Settings
    hybrid: HybridSearcher
    batcher: MicroBatcher
    keeper: KeywordKeeper | None = None  # keeps its keyword index caught up where no worker does
    used: float = field(default_factory=time.monotonic)  # its last request
    refreshed: float = field(default_factory=time.monotonic)  # when it last applied the change log
    refreshing: threading.Lock = field(default_factory=threading.Lock)

    def refresh(self, wait: bool = True) -> None:
        """Apply what the change log holds beyond its dense and keyword indexes (in O(changes)); with
        `wait` False, nothing when another thread is doing it now."""
        if not self.refreshing.acquire(blocking=wait):
            return
        try:
            self.hybrid.dense.refresh()
            if self.keeper is not None:
                self.keeper.tick()
            self.refreshed = time.monotonic()
        finally:
            self.refreshing.release()

    @property
    def store(self) -> Store:
        """The collection's store."""
        return self.hybrid.store


class Served:
    """The collections this server serves, by name."""

    def __init__(
        self,
        server: Settings,
        deployment: Store,
        default: ServedCollection,
        encoders: EncoderPool,
        make_batcher: Callable[[Settings], MicroBatcher],
        make_keeper: Callable[[], KeywordKeeper] | None = None,
    ) -> None:
        self.server, self.deployment, self.encoders = server, deployment, encoders
        self._make_keeper = make_keeper
        self.collections: dict[str, ServedCollection] = {DEFAULT_COLLECTION: default}
        self._make_batcher = make_batcher
        self._batchers: dict[int, MicroBatcher] = {id(default.hybrid.dense.encoder): default.batcher}
        self._names: set[str] = {DEFAULT_COLLECTION}
        self._opening: dict[str, asyncio.Future[ServedCollection]] = {}

    @property
    def default(self) -> ServedCollection:
        """The collection the unprefixed routes act on."""
        return self.collections[DEFAULT_COLLECTION]

    async def get(self, name: str) -> ServedCollection:
        """The collection `name`, opened on first use; catalog.UnknownCollectionError when there is none."""
        served = self.collections.get(name)
        if served is not None:
            served.used = time.monotonic()
            if name != DEFAULT_COLLECTION and served.used - served.refreshed > self.server.reload_seconds:
                # Idle a while, so not kept fresh in the background: caught up now, in O(changes).
                await asyncio.to_thread(served.refresh, False)
            return served
        if name not in self._names:
            await self.read_names()
            if name not in self._names:
                raise catalog.UnknownCollectionError(name)
        opening = self._opening.get(name)
        if opening is None:
            opening = self._opening[name] = asyncio.ensure_future(self._open(name))
            opening.add_done_callback(lambda _: self._opening.pop(name, None))
        return await asyncio.shield(opening)

    async def _open(self, name: str) -> ServedCollection:
        # In threads: loading a model not served yet, and opening an index, take seconds.
        settings = await asyncio.to_thread(catalog.collection_settings, self.server, self.deployment, name)
        encoder = await asyncio.to_thread(self.encoders.get, settings)
        searcher = await asyncio.to_thread(open_searcher, settings, encoder, None, True)
        keyword = await asyncio.to_thread(open_keyword, settings)
        hybrid = HybridSearcher(searcher, keyword, FusionConfig.from_settings(settings))
        batcher = self._batchers.get(id(encoder))
        if batcher is None:
            batcher = self._batchers[id(encoder)] = self._make_batcher(settings)
            await batcher.start()
        keeper = self._make_keeper() if self._make_keeper is not None else None
        if keeper is not None:
            keeper.attach(hybrid.store, hybrid.keyword)  # ticked with the dense index (`refresh_all`)
            await asyncio.to_thread(keeper.tick)
        served = self.collections[name] = ServedCollection(name, settings, hybrid, batcher, keeper)
        if keeper is not None:
            hybrid.keyword.catch_up_now = lambda: _soon(served)  # a `?wait=true` write is waiting for it
        return served

    async def read_names(self) -> set[str]:
        """Read which collections exist; close the served ones deleted since."""
        listed = await asyncio.to_thread(catalog.listed, self.deployment)
        self._names = {info.name for info in listed} | {DEFAULT_COLLECTION}
        for gone in set(self.collections) - self._names:
            await asyncio.to_thread(self._close, gone)
        return self._names

    def forget(self, name: str) -> None:
        """Stop serving `name` at once (this server deletes it)."""
        self._names.discard(name)
        if name in self.collections and name != DEFAULT_COLLECTION:
            self._close(name)

    def _close(self, name: str) -> None:
        served = self.collections.pop(name, None)
        if served is not None:
            served.store.close()

    def refresh_all(self) -> None:
        """Apply the change log to the collections searched in the last ACTIVE_SECONDS (in a thread).
        An idle collection costs nothing in the background, however many there are: its next
        request catches it up first (`get`)."""
        now = time.monotonic()
        for served in list(self.collections.values()):
            if served.name != DEFAULT_COLLECTION and now - served.used <= ACTIVE_SECONDS:  # default: its reloader
                served.refresh(wait=False)

    async def stop(self) -> None:
        """Stop the batchers this registry started and close every store but the default's."""
        for key, batcher in list(self._batchers.items()):
            if batcher is not self.default.batcher:
                await batcher.stop()
            self._batchers.pop(key)
        for name in list(self.collections):
            if name != DEFAULT_COLLECTION:
                self._close(name)


def _soon(served: ServedCollection) -> None:
    """Catch `served` up in a thread now (called on the event loop); a failure is logged by the
    next refresh that meets it, not here."""
    pending = asyncio.get_running_loop().run_in_executor(None, served.refresh, False)
    pending.add_done_callback(lambda done: done.cancelled() or done.exception())


async def every(interval: float, action: Callable[[], Awaitable[object]], failed: str) -> None:
    """Run `action` every `interval` seconds until cancelled. A failure leaves what it would have
    replaced serving, and is logged once per distinct error (none for the database unavailable,
    whose outage search.storage.outage logs once): `failed` says what failed."""
    last_error = ""
    while True:
        await asyncio.sleep(interval)
        try:
            await action()
            last_error = ""
        except Exception as exc:
            if str(exc) != last_error and not unavailable(exc):
                log.exception(failed)
            last_error = str(exc)


async def keep_fresh(served: Served, interval: float) -> None:
    """Every `interval` seconds: read which collections exist, and reload the served ones' indexes."""

    async def refresh() -> None:
        await served.read_names()
        await asyncio.to_thread(served.refresh_all)

    await every(interval, refresh, "refreshing the collections failed; still serving them as they were")


async def cancel(task: asyncio.Task[None]) -> None:
    """Cancel a background task and wait for it."""
    task.cancel()
    with suppress(asyncio.CancelledError):
        await task
