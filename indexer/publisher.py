"""The one writer of index files: it applies the vectors stored in SQL, and the tombstones of removed
chunks, to the active generation's index and saves it atomically, under a lock every publishing
process shares (a PostgreSQL advisory lock, or a file lock beside the index on SQLite)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
from sqlalchemy import text
from sqlalchemy.orm import Session

from indexer.locks import FileLock
from search.catalog import IndexCatalog
from search.encoder import Encoder
from search.index import VectorIndex
from search.models import IndexGeneration, space_key
from search.vectors import VectorRows

log = logging.getLogger(__name__)

# Any fixed 64-bit number: the key of the advisory lock that serialises publishing on PostgreSQL.
_PG_PUBLISH_LOCK = 0x5E35_EA2C


def encoder_space(encoder: Encoder) -> str:
    """The embedding space an encoder's vectors belong to."""
    return space_key(encoder.model_name, encoder.pooling, encoder.dim, encoder.max_length)


class Publisher:
    """Keeps an in-memory copy of the serving index in step with the vectors in SQL and publishes it."""

    def __init__(self, catalog: IndexCatalog, encoder: Encoder, factory: str = "Flat") -> None:
        self.catalog = catalog
        self.store = catalog.store
        self.encoder = encoder
        self.factory = factory
        self.rows = VectorRows(self.store, encoder_space(encoder), encoder.dim)
        self._file_lock = FileLock(catalog.index_dir / ".publish.lock")
        self._index: VectorIndex | None = None
        self.generation: IndexGeneration | None = None
        self._stamp: tuple[int, int, int] | None = None

    @property
    def index(self) -> VectorIndex:
        """The index as this process last loaded or published it."""
        if self._index is None:
            with self.locked() as s:
                self._refresh(s)
        assert self._index is not None
        return self._index

    @contextmanager
    def locked(self) -> Iterator[Session]:
        """A transaction during which no other process publishes."""
        if self.rows.postgres:
            with self.store.session() as s:
                # Held until this transaction ends, so a crash releases it with the connection.
                s.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_PUBLISH_LOCK})
                yield s
            return
        with self._file_lock, self.store.session() as s:
            yield s

    def _refresh(self, s: Session) -> None:
        """Load the active generation's file when another process published since this one looked."""
        generation = self.store.active_generation(s)
        if generation is None:
            self._index, self.generation = self.catalog.open_or_create(self.encoder, self.factory)
            self._stamp = self.catalog.stamp(self.generation)
            return
        stamp = self.catalog.stamp(generation)
        if self._index is not None and stamp == self._stamp:
            return
        self.generation = generation
        self._index = self.catalog.open_generation(generation, self.encoder)
        self._stamp = stamp
        if stamp[1:] == (0, 0) and generation.vectors:
            # The file is gone (deleted by hand, a lost disk): every stored vector goes back in.
            log.warning("index file of generation %d is missing; rebuilding it from the stored vectors", generation.id)
            self.rows.unpublish_all()

    def sync(self, final: bool = True) -> int:
        """Apply unpublished vectors and tombstones, save the file, then mark them published.

        Returns the number of vectors added. An index that needs training (IVF, PQ, `auto`) and is
        still empty waits for the `final` sync, so it is trained on every vector of the run."""
        with self.locked() as s:
            self._refresh(s)
            index = self._index
            assert index is not None and self.generation is not None
            dead = self.rows.tombstones(s)
            ids, vectors = self.rows.unpublished(s)
            if index.needs_training and index.ntotal == 0 and not final:
                ids, vectors = ids[:0], vectors[:0]
            if not len(dead) and not len(ids):
                return 0
            # Removing first makes a repeated sync (after a crash between the save and the commit
            # below) idempotent: no vector is ever held twice.
            self._remove(index, np.concatenate([dead, ids]))
            try:
                index.add(ids, vectors)
            except ValueError as exc:  # too few vectors to train the configured IVF yet
                log.warning("not publishing %d vectors yet: %s", len(ids), exc)
                ids = ids[:0]
            self.generation = self.catalog.publish(index, self.generation)
            self._stamp = self.catalog.stamp(self.generation)
            self.rows.mark_published(s, ids)
            self.rows.clear_tombstones(s, dead)
            return len(ids)

    def repair(self) -> tuple[int, int]:
        """Make the file hold exactly the stored vectors: drop orphans, add what is missing (from SQL,
        nothing re-embedded), publish. Returns (orphans removed, vectors added)."""
        with self.locked() as s:
            self._refresh(s)
            index = self._index
            assert index is not None

            def save(orphans: int, added: int) -> None:
                if orphans or added:
                    assert self.generation is not None
                    self.generation = self.catalog.publish(index, self.generation)
                    self._stamp = self.catalog.stamp(self.generation)
                    log.info("repaired the index: %d orphan vectors removed, %d added", orphans, added)

            return self.converge(s, index, save)

    def converge(self, s: Session, index: VectorIndex, save: Callable[[int, int], None]) -> tuple[int, int]:
        """Inside `locked()`: make `index` hold exactly the stored vectors of the space (orphans out,
        missing ones in, from SQL), let `save(orphans, added)` write the file, then mark what it holds
        published and clear the tombstones seen. Returns (orphans removed, added).

        The marks come after the save: on SQLite the first write in `s` takes the database's write
        lock, which the save's own bookkeeping session would then wait for."""
        held, stored = index.ids(), self.rows.ids()
        orphans, missing = np.setdiff1d(held, stored), np.setdiff1d(stored, held)
        dead = self.rows.tombstones(s)
        self._remove(index, orphans)
        ids, vectors = self.rows.fetch(missing.tolist())
        index.add(ids, vectors)
        save(len(orphans), len(missing))
        # Only what the index holds now: a vector a worker commits meanwhile stays unpublished.
        self.rows.mark_published(s, stored)
        self.rows.clear_tombstones(s, dead)
        return len(orphans), len(missing)

    @staticmethod
    def _remove(index: VectorIndex, ids: np.ndarray) -> None:
        try:
            index.remove(ids)
        except NotImplementedError:
            # HNSW cannot remove: stale vectors stay until a rebuild; the searcher skips them, since
            # their rows are gone.
            log.warning("index %s keeps %d stale vectors until the next rebuild", index.resolved_factory, len(ids))
