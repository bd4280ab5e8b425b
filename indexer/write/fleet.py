"""One indexing worker for every collection of a deployment: `semsearch worker` and `serve`'s worker.

Each collection has a Worker of its own (its store, indexes and settings; the encoders shared through
an EncoderPool), and the fleet gives them turns in a ring: a turn embeds at most one step (a batch
of small documents or one slice of a large one, about two seconds: indexer/write/embedding.py), so a
collection with a million pending documents delays another's ten by one step each round, not by its
whole backlog. The collections are read from SQL every `refresh_seconds`: a new one gets a worker, a
deleted one loses its worker, whichever process made or deleted it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace

from indexer.write.locks import FileLock, LockHeldError
from indexer.write.worker import Worker, open_worker
from search.access import DEFAULT_COLLECTION
from search.collections import catalog
from search.components import EncoderPool, migrate, open_store
from search.settings import Settings
from search.storage.store import Store
from search.work.state import WorkerSnapshot, WorkerState

log = logging.getLogger(__name__)


class Fleet:
    """The workers of every collection, worked in turns."""

    def __init__(
        self,
        server: Settings,
        encoders: EncoderPool | None = None,
        lock: Callable[[Settings], FileLock | None] | None = None,
        refresh_seconds: float = 1.0,
    ) -> None:
        self.server = server.model_copy(update={"collection": DEFAULT_COLLECTION})
        self.encoders = encoders or EncoderPool()
        self.lock = lock  # the SQLite writer lock of a collection (None: PostgreSQL, or held already)
        self.refresh_seconds = refresh_seconds
        self.deployment: Store = open_store(self.server)
        self.workers: dict[str, Worker] = {}
        self._locks: dict[str, FileLock | None] = {}
        self._refreshed = 0.0
        self._refused: set[str] = set()

    @property
    def state(self) -> WorkerState:
        """Every collection's worker's error budget as one, for /health, /stats and /metrics."""
        return FleetState(self)

    def refresh(self) -> None:
        """Open a worker for each new collection, and close those of deleted ones."""
        self._refreshed = time.monotonic()
        current = {info.name for info in catalog.listed(self.deployment)} | {DEFAULT_COLLECTION}
        for gone in set(self.workers) - current:
            self._close(gone)
        catalog.finish_deletes(self.server, self.deployment)  # those a killed process left half done
        for name in sorted(current - set(self.workers)):
            try:
                self._open(name, catalog.collection_settings(self.server, self.deployment, name))
            except catalog.UnknownCollectionError:
                continue  # deleted meanwhile
            except LockHeldError as exc:
                if name == DEFAULT_COLLECTION:
                    raise  # as before collections: a second indexing process is refused
                if name not in self._refused:  # said once; tried again at each refresh
                    log.warning("not indexing collection %s for now: %s", name, exc)
                    self._refused.add(name)

    def _open(self, name: str, settings: Settings) -> None:
        lock = self.lock(settings) if self.lock is not None else None
        self._locks[name] = lock
        migrate(settings)  # a writing process brings each collection's schema up to date as it opens it
        self.workers[name] = open_worker(settings, self.encoders.get(settings))
        self._refused.discard(name)

    def _close(self, name: str) -> None:
        worker = self.workers.pop(name)
        worker.store.close()
        lock = self._locks.pop(name, None)
        if lock is not None:
            lock.release()

    def turn(self) -> bool:
        """A turn for each collection's worker, in name order; True when any did work."""
        if time.monotonic() - self._refreshed >= self.refresh_seconds:
            self.refresh()
        busy = False
        for name in list(self.workers):
            busy = self.workers[name].turn() or busy
        return busy

    def run(self, stop: threading.Event, idle_poll: float = 0.2) -> None:
        """Work until `stop` is set (a failed refresh, the deployment's database away, is retried)."""
        while not stop.is_set():
            try:
                busy = self.turn()
            except Exception as exc:
                log.warning("reading the collections failed: %s; retrying", exc)
                busy = False
            if not busy:
                stop.wait(idle_poll)
        for worker in self.workers.values():
            worker.finish()

    def drain(self) -> int:
        """Embed everything pending in every collection, then publish; the documents embedded."""
        self.refresh()
        total = 0
        for worker in self.workers.values():
            worker.start_up()
            total += worker.drain()
        return total

    def close(self) -> None:
        """Release every collection's store and lock."""
        for name in list(self.workers):
            self._close(name)
        self.deployment.close()


class FleetState(WorkerState):
    """The error budgets of every collection's worker read as one: the default collection's, with
    another collection's failure streak or stale index added under its name, so that /health is
    degraded, naming the collection, when any collection's worker keeps failing."""

    def __init__(self, fleet: Fleet) -> None:
        super().__init__()
        self.fleet = fleet

    def snapshot(self) -> WorkerSnapshot:
        """The default collection's snapshot, with the other collections' failures added."""
        workers = dict(self.fleet.workers)  # a copy: the fleet's thread opens and closes workers
        default = workers.pop(DEFAULT_COLLECTION, None)
        base = default.state.snapshot() if default is not None else super().snapshot()
        failing, errors, public = base.failing, [base.last_error], [base.last_error_public]
        stale, stale_public = dict(base.stale_indexes), dict(base.stale_public)
        for name, worker in sorted(workers.items()):
            own = worker.state.snapshot()
            stale.update({f"{name}/{index}": error for index, error in own.stale_indexes.items()})
            stale_public.update({f"{name}/{index}": error for index, error in own.stale_public.items()})
            if own.failing:
                failing = True
                errors.append(f"collection {name}: {own.last_error}")
                public.append(f"collection {name}: {own.last_error_public}")
        return replace(
            base,
            failing=failing,
            last_error="; ".join(e for e in errors if e) or None,
            last_error_public="; ".join(e for e in public if e) or None,
            stale_indexes=stale,
            stale_public=stale_public,
        )
