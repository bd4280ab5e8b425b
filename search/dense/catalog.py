"""Index generations: which base segment file serves, for which embedding space; and the readers'
watcher, which applies the change log on top of it."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TypeVar

import numpy as np
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from search.dense.files import base_file_name, remove_strays, stray_files
from search.dense.index import VectorIndex
from search.dense.segments import SegmentView, build_base, catch_up
from search.embedding.encoder import Encoder
from search.embedding.space import EmbeddingSpace
from search.storage import changes
from search.storage.models import GenerationState, IndexGeneration
from search.storage.store import Store
from search.storage.vectors import VectorRows

log = logging.getLogger(__name__)


class BaseFileState(StrEnum):
    """What `check` finds of the active generation's base file."""

    OK = "ok"
    NONE = "none"  # nothing merged yet
    UNREADABLE = "unreadable"  # missing, truncated or corrupt


class IndexMismatchError(RuntimeError):
    """The serving index was built in another embedding space than the encoder's."""


class IndexCatalog:
    """Opens, creates and records index generations; the store records them, files hold base segments."""

    def __init__(self, store: Store, index_dir: Path) -> None:
        self.store = store
        self.index_dir = index_dir

    def path_of(self, generation: IndexGeneration) -> Path:
        """The base segment file of a generation (paths are stored relative to the index directory)."""
        return self.index_dir / generation.path

    def load_base(self, generation: IndexGeneration, mmap: bool = False) -> VectorIndex | None:
        """The generation's base segment; an empty one when none was written yet; None (with a
        warning) when its file is missing, truncated or corrupt: the vectors in SQL rebuild it."""
        path = self.path_of(generation)
        if generation.base_seq == 0 and not path.exists():
            return VectorIndex(generation.dim, generation.index_type or generation.factory)
        try:
            index = VectorIndex.load(path, factory=generation.index_type, mmap=mmap)
        except (OSError, RuntimeError) as exc:
            log.warning(
                "index file %s of generation %d is unreadable (%s); rebuilding it from the vectors in SQL",
                path,
                generation.id,
                str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
            )
            return None
        if index.dim != generation.dim:
            log.warning(
                "index file %s holds dimension %d, not %d; rebuilding it from SQL", path, index.dim, generation.dim
            )
            return None
        return index

    def base_segment(self, generation: IndexGeneration, rows: VectorRows, s: Session, mmap: bool) -> VectorIndex:
        """The base segment, rebuilt in memory from SQL when its file cannot be read."""
        base = self.load_base(generation, mmap)
        if base is None:
            base = build_base(rows, generation.index_type or generation.factory, s, generation.base_seq)
        return base

    def create(self, encoder: Encoder, factory: str, state: GenerationState) -> IndexGeneration:
        """A new generation row for this encoder (its file is written when it is first published).

        One transaction: the row gets its file name (from its id) before it commits, so a crash can
        never leave a generation without one."""
        with self.store.session() as s:
            generation = IndexGeneration(
                path="",
                factory=factory,
                index_type="",
                base_seq=0,
                model=encoder.model_name,
                pooling=encoder.pooling,
                dim=encoder.dim,
                max_length=encoder.max_length,
                state=state,
                vectors=0,
            )
            s.add(generation)
            s.flush()  # assigns the id
            generation.path = base_file_name(generation.id, 0)
        return generation

    def activate(self, s: Session, generation: IndexGeneration) -> None:
        """Make `generation` the serving one in transaction `s`; the one it replaces is retired."""
        s.execute(
            update(IndexGeneration)
            .where(IndexGeneration.state == GenerationState.ACTIVE)
            .values(state=GenerationState.RETIRED)
        )
        generation.state = GenerationState.ACTIVE
        s.merge(generation)

    def drop_inactive(
        self, states: tuple[GenerationState, ...] = (GenerationState.BUILDING, GenerationState.RETIRED)
    ) -> list[int]:
        """Delete the files and rows of generations in `states` (an interrupted rebuild's, or retired
        ones whose readers have moved on); returns their ids."""
        with self.store.session() as s:
            gone = list(s.scalars(select(IndexGeneration).where(IndexGeneration.state.in_(states))))
            for generation in gone:
                self.remove_files(generation.id)
                s.delete(generation)
        return [g.id for g in gone]

    def strays(self, s: Session, remove: bool = False) -> list[Path]:
        """Files of the index directory nothing will read (a killed writer's partial files, base files
        no generation holds), deleted with `remove`. Only under the publish lock: a merge in flight
        has written its new base file before its generation row says so."""
        live: dict[int, int | None] = {
            g.id: g.base_seq if g.state == GenerationState.ACTIVE else None  # a rebuild may be writing
            for g in s.scalars(select(IndexGeneration))
        }
        return (remove_strays if remove else stray_files)(self.index_dir, live)

    def remove_files(self, generation_id: int, before: int | None = None) -> None:
        """Delete a generation's base files (only those older than change `before` when given: a newer
        one may be another process's). A reader that maps one keeps it alive (POSIX); one that read the
        row just before opening it fails the open and tries again at its next poll."""
        for path in self.index_dir.glob(f"gen-{generation_id:06d}*.faiss"):
            seq = path.stem.rpartition("-")[2] if path.stem.count("-") == 2 else "0"
            if before is None or (seq.isdigit() and int(seq) < before):
                path.unlink(missing_ok=True)


@dataclass(frozen=True)
class Serving:
    """An encoder and the segments its vectors belong to: swapped together, so that no request embeds
    with one generation's model and searches another's vectors."""

    encoder: Encoder
    index: SegmentView

    @property
    def space(self) -> EmbeddingSpace:
        """The embedding space of the vectors searched."""
        return self.encoder.space


# What embeds in a space: a generation, or the encoder-and-segments pair readers serve.
Target = TypeVar("Target", IndexGeneration, Serving)


def follow(target: Target, encoder: Encoder, make: Callable[[Target], Encoder] | None = None) -> Encoder:
    """The encoder whose vectors belong to `target`: the one rule of following a model, for readers,
    the worker and the API alike. `encoder` itself when its embedding space is the target's; else
    the target's own (a generation's model, pooling and length), made by `make`; with no `make` (a
    process that cannot switch models), an IndexMismatchError that says what to do."""
    if encoder.space == target.space:
        return encoder
    if make is None:
        raise IndexMismatchError(mismatch_message(target, encoder.space))
    return make(target)


class IndexWatcher:
    """What readers serve: the active generation's base segment plus the change log applied on top.

    `poll()` costs one clock read until `interval` seconds have passed, then a look at the generation
    row and one read of the log after the applied seq: a write costs what it changed. A new base file
    (a merge, a rebuild) is loaded beside the old view, which keeps answering until the swap. A
    generation built in another embedding space brings its own encoder, made by `encoder_for`;
    without it, such a generation is refused."""

    def __init__(
        self,
        catalog: IndexCatalog,
        encoder: Encoder,
        fallback_factory: str,
        interval: float = 1.0,
        encoder_for: Callable[[IndexGeneration], Encoder] | None = None,
    ) -> None:
        self.catalog = catalog
        self.encoder = encoder
        self.fallback_factory = fallback_factory
        self.interval = interval
        self.encoder_for = encoder_for
        self._lock = threading.Lock()
        self._stamp: tuple[int, str] | None = None
        self._serving: Serving | None = None
        self._checked = 0.0

    def load(self) -> Serving:
        """The encoder and segments as they are now (an empty base when nothing was merged yet)."""
        store = self.catalog.store
        with store.session() as s:
            generation = store.active_generation(s)
            if generation is not None:
                self.encoder = follow(generation, self.encoder, self.encoder_for)
            rows = VectorRows(store, self.encoder.space.key, self.encoder.dim)
            if generation is None:
                view = SegmentView(VectorIndex(self.encoder.dim, "Flat"), 0, space=rows.space)
            else:
                base = self.catalog.base_segment(generation, rows, s, mmap=True)
                view = SegmentView(base, generation.base_seq, base_ids=np.sort(base.ids()), space=rows.space)
            view = catch_up(view, rows, s)
        self._stamp = None if generation is None else (generation.id, generation.path)
        self._checked = time.monotonic()
        self._serving = Serving(self.encoder, view)
        return self._serving

    def poll(self, force: bool = False) -> Serving | None:
        """What to serve when anything changed since the last look, else None; without `force`, at
        most one look per interval (and none while another thread is looking)."""
        if force:
            self._lock.acquire()
        elif time.monotonic() - self._checked < self.interval or not self._lock.acquire(blocking=False):
            return None
        try:
            self._checked = time.monotonic()
            if self._serving is None:
                return self.load()
            return self._look(self._serving)
        finally:
            self._lock.release()

    def _look(self, serving: Serving) -> Serving | None:
        store = self.catalog.store
        with store.session() as s:
            generation = store.active_generation(s)
            stamp = None if generation is None else (generation.id, generation.path)
            if stamp != self._stamp:
                return self.load()
            rows = VectorRows(store, serving.encoder.space.key, serving.encoder.dim)
            view = catch_up(serving.index, rows, s)
            if changes.floor(s) > serving.index.seq:  # entries it needed were compacted away
                return self.load()
        if view is serving.index:
            return None
        self._serving = Serving(serving.encoder, view)
        return self._serving


def mismatch_message(target: IndexGeneration | Serving, space: EmbeddingSpace) -> str:
    """Why a generation cannot be served or extended with an encoder of `space`, and what to do."""
    which = f" (generation {target.id})" if isinstance(target, IndexGeneration) else ""
    return (
        f"the serving index{which} holds vectors of {target.space.describe()}; "
        f"the settings give {space.describe()}. Run `semsearch rebuild` to re-embed in the new space, "
        "or change the settings back."
    )
