"""The one writer of base segment files: past a threshold of changes, it folds the change log into a
new base file of the active generation (re-deciding `auto` and re-training when the corpus outgrew
it), under a lock every publishing process shares (a PostgreSQL advisory lock, or a file lock beside
the index on SQLite). Readers need no publish to see a write: they apply the log themselves."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from indexer.write.locks import FileLock
from search.dense.catalog import IndexCatalog, follow
from search.dense.files import base_file_name
from search.dense.index import VectorIndex, auto_factory
from search.dense.segments import SegmentView, build_base, catch_up
from search.embedding.encoder import Encoder
from search.storage import changes
from search.storage.models import DerivedState, GenerationState, IndexGeneration
from search.storage.store import Store
from search.storage.vectors import VectorRows

log = logging.getLogger(__name__)

# Any fixed 64-bit number: the key of the advisory lock that serialises publishing on PostgreSQL.
_PG_PUBLISH_LOCK = 0x5E35_EA2C
# A merge rewrites the base file (O(corpus)), so it waits for this many changes: at least
# MERGE_MIN, a twentieth of the base, at most MERGE_MAX (which bounds a reader's start-up catch-up).
MERGE_MIN, MERGE_MAX = 20_000, 100_000


@dataclass(frozen=True)
class Merge:
    """What one merge did."""

    generation: int
    index_type: str
    vectors: int
    seq: int
    retrained: bool


@contextmanager
def publish_locked(store: Store, file_lock: FileLock) -> Iterator[Session]:
    """A transaction of `store` during which no other process publishes (nor compacts the log): the
    advisory lock on PostgreSQL, else `file_lock` (`.publish.lock` beside the index files)."""
    if store.postgres:
        with store.session() as s:
            # Held until this transaction ends, so a crash releases it with the connection.
            s.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_PUBLISH_LOCK})
            yield s
        return
    with file_lock, store.session() as s:
        yield s


def publish_lock_file(index_dir: Path) -> FileLock:
    """The lock publishing processes of one index directory share on SQLite."""
    return FileLock(index_dir / ".publish.lock")


class Publisher:
    """Folds the change log into base segment files of the active generation."""

    def __init__(self, catalog: IndexCatalog, encoder: Encoder, factory: str = "auto") -> None:
        self.catalog = catalog
        self.store = catalog.store
        self.encoder = encoder
        self.factory = factory
        self.rows = VectorRows(self.store, encoder.space.key, encoder.dim)
        self._file_lock = publish_lock_file(catalog.index_dir)
        self.generation: IndexGeneration | None = None
        self._base_checked: int | None = None
        self._swept = False
        self.merge_min, self.merge_max = MERGE_MIN, MERGE_MAX

    def follow(self, encoder: Encoder) -> None:
        """Publish for `encoder` from now on: the worker follows a generation of another model."""
        self.encoder = encoder
        self.rows = VectorRows(self.store, encoder.space.key, encoder.dim)
        self.generation, self._base_checked = None, None

    def merge_threshold(self, base_vectors: int) -> int:
        """Changes since the base file that make a merge worth its rewrite."""
        return min(self.merge_max, max(self.merge_min, base_vectors // 20))

    @contextmanager
    def locked(self) -> Iterator[Session]:
        """A transaction during which no other process publishes."""
        with publish_locked(self.store, self._file_lock) as s:
            yield s

    def active(self, s: Session) -> IndexGeneration:
        """The active generation, created for this encoder when there is none; refused when it holds
        another embedding space."""
        generation = self.store.active_generation(s)
        if generation is None:
            generation = self.catalog.create(self.encoder, self.factory, GenerationState.ACTIVE)
        follow(generation, self.encoder)  # no model switch here: another space is refused
        self.generation = generation
        return generation

    def sync(self, force: bool = False, rebuild: bool = False) -> Merge | None:
        """Merge the log into a new base file when enough changed since the last one (always with
        `force`), or when the base file cannot be read; `rebuild` builds it afresh from every stored
        vector (`check --repair`). None when nothing was merged."""
        merged = self._sync(force, rebuild)
        if merged is not None:  # committed: the files it replaced can go
            self.catalog.remove_files(merged.generation, before=merged.seq)
        return merged

    def _sync(self, force: bool, rebuild: bool) -> Merge | None:
        with self.locked() as s:
            generation = self.active(s)
            if not force and self._base_checked != generation.id:
                # Checked once per generation and process: a lost or corrupt file is rebuilt now.
                force = self.catalog.load_base(generation, mmap=True) is None
                self._base_checked = generation.id
            pending = changes.count(s, generation.base_seq, space=self.rows.space)
            merging = force or (bool(pending) and pending >= self.merge_threshold(generation.vectors))
            if merging or not self._swept:  # every merge, and a process's first look: what a killed writer left
                self._sweep(s)
            return self._merge(s, generation, rebuild) if merging else None

    def _sweep(self, s: Session) -> None:
        """Delete the stray files of the index directory (partial files of a killed merge, base files
        no generation holds); under the publish lock, so no merge is between its write and its commit."""
        self._swept = True
        for path in self.catalog.strays(s, remove=True):
            log.warning("removed %s: a file no index generation reads (left by an interrupted write)", path.name)

    def _merge(self, s: Session, generation: IndexGeneration, rebuild: bool) -> Merge:
        upto = changes.head(s)
        base = None if rebuild else self.catalog.load_base(generation)
        wanted = _wanted_type(generation, upto, s, self.rows.space)
        retrained = base is None or (wanted is not None and wanted != base.resolved_factory)
        if not retrained:
            assert base is not None
            view = catch_up(SegmentView(base, generation.base_seq), self.rows, s, upto)
            retrained = not _fold(base, view)
        if retrained:
            base = build_base(self.rows, wanted or generation.factory, s, upto)
        assert base is not None
        name = base_file_name(generation.id, upto)
        base.save(self.catalog.index_dir / name)
        generation.path, generation.base_seq = name, upto
        generation.vectors, generation.index_type = base.ntotal, base.resolved_factory
        s.merge(generation)
        self._compact(s)
        log.info(
            "merged generation %d up to change %d: %d vectors in %s",
            generation.id,
            upto,
            base.ntotal,
            base.resolved_factory,
        )
        return Merge(generation.id, base.resolved_factory, base.ntotal, upto, retrained)

    def _compact(self, s: Session) -> None:
        """Drop log entries that every consumer has applied: the base files of live generations and
        every durable derived index (derived_state)."""
        bases = select(IndexGeneration.base_seq).where(
            IndexGeneration.state.in_([GenerationState.ACTIVE, GenerationState.BUILDING])
        )
        seqs = [*s.scalars(bases), *s.scalars(select(DerivedState.seq).where(DerivedState.name != changes.FLOOR))]
        if seqs:
            changes.compact(s, min(seqs))


def _wanted_type(generation: IndexGeneration, upto: int, s: Session, space: str) -> str | None:
    """The index type `auto` asks for at the corpus size after the merge (None: keep the factory's)."""
    if generation.factory != "auto":
        return None
    added = changes.count(s, generation.base_seq, upto, space, ops=(changes.Op.VEC,))
    removed = changes.count(s, generation.base_seq, upto, ops=(changes.Op.DEL,))
    return auto_factory(max(generation.vectors + added - removed, 0))


def _fold(base: VectorIndex, view: SegmentView) -> bool:
    """Apply a view's deltas and removals to `base` in place; False when the type cannot remove."""
    try:
        base.remove(view.removed)
        for delta in view.deltas:
            live = ~np.isin(delta.ids, view.removed)
            base.remove(delta.ids[live])  # a repeat after a crash must not hold a vector twice
            base.add(delta.ids[live], delta.vectors[live])
    except (NotImplementedError, ValueError) as exc:
        log.info("rebuilding the base instead of folding into it: %s", exc)
        return False
    return True
