"""Index generations: which FAISS file serves, built with which model and pooling."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from search.encoder import Encoder
from search.index import VectorIndex
from search.models import IndexGeneration
from search.store import Store


class IndexMismatchError(RuntimeError):
    """The serving index was built with another model, pooling or dimension than the settings ask for."""


class IndexCatalog:
    """Opens, creates and publishes index generations; the store records them, files hold the vectors."""

    def __init__(self, store: Store, index_dir: Path) -> None:
        self.store = store
        self.index_dir = index_dir

    def path_of(self, generation: IndexGeneration) -> Path:
        """The file of a generation (paths are stored relative to the index directory)."""
        return self.index_dir / generation.path

    def stamp(self, generation: IndexGeneration) -> tuple[int, int, int]:
        """(generation id, file mtime, file size): changes whenever a new file is published."""
        try:
            stat = self.path_of(generation).stat()
        except FileNotFoundError:
            return (generation.id, 0, 0)
        return (generation.id, stat.st_mtime_ns, stat.st_size)

    def open_active(self, encoder: Encoder, mmap: bool = False) -> tuple[VectorIndex, IndexGeneration] | None:
        """The serving index, checked against the encoder; None when nothing was indexed yet."""
        generation = self.store.active_generation()
        if generation is None:
            return None
        return self.open_generation(generation, encoder, mmap), generation

    def open_generation(self, generation: IndexGeneration, encoder: Encoder, mmap: bool = False) -> VectorIndex:
        """The index of `generation`, checked against the encoder."""
        _check_compatible(generation, encoder)
        path = self.path_of(generation)
        if not path.exists():
            # A generation that never got its first save (the indexer stopped before it): start it empty.
            return VectorIndex(generation.dim, generation.factory)
        return VectorIndex.load(path, factory=generation.factory, mmap=mmap)

    def open_or_create(self, encoder: Encoder, factory: str) -> tuple[VectorIndex, IndexGeneration]:
        """The serving index, or a new empty generation for this encoder when there is none."""
        opened = self.open_active(encoder)
        if opened is not None:
            return opened
        return VectorIndex(encoder.dim, factory), self.create(encoder, factory, "active")

    def create(self, encoder: Encoder, factory: str, state: str) -> IndexGeneration:
        """A new generation row for this encoder (its file is written when it is first published).

        One transaction: the row gets its file name (from its id) before it commits, so a crash can
        never leave a generation without one."""
        with self.store.session() as s:
            generation = IndexGeneration(
                path="",
                factory=factory,
                model=encoder.model_name,
                pooling=encoder.pooling,
                dim=encoder.dim,
                max_length=encoder.max_length,
                state=state,
                vectors=0,
            )
            s.add(generation)
            s.flush()  # assigns the id
            generation.path = f"gen-{generation.id:06d}.faiss"
        return generation

    def activate(self, s: Session, generation: IndexGeneration) -> None:
        """Make `generation` the serving one in transaction `s`; the one it replaces is retired."""
        s.execute(update(IndexGeneration).where(IndexGeneration.state == "active").values(state="retired"))
        generation.state = "active"
        s.merge(generation)

    def drop_inactive(self, states: tuple[str, ...] = ("building", "retired")) -> list[int]:
        """Delete the files and rows of generations in `states` (an interrupted rebuild's, or retired
        ones whose readers have moved on); returns their ids."""
        with self.store.session() as s:
            gone = list(s.scalars(select(IndexGeneration).where(IndexGeneration.state.in_(states))))
            for generation in gone:
                self.path_of(generation).unlink(missing_ok=True)
                s.delete(generation)
        return [g.id for g in gone]

    def publish(self, index: VectorIndex, generation: IndexGeneration) -> IndexGeneration:
        """Save the index file atomically, then record its size and resolved type."""
        index.save(self.path_of(generation))
        generation.vectors = index.ntotal
        generation.factory = index.resolved_factory
        return self.store.save_generation(generation)


@dataclass(frozen=True)
class Serving:
    """An encoder and the index its vectors belong to: swapped together, so that no request embeds
    with one generation's model and searches another's vectors."""

    encoder: Encoder
    index: VectorIndex


class IndexWatcher:
    """What readers serve, reloaded when the indexer publishes a new file or generation.

    `poll()` costs one clock read until `interval` seconds have passed, then one SQL query and one
    stat(); a reload happens beside the old index, which keeps answering until the swap. A generation
    built with another model or pooling (`semsearch rebuild --model/--pooling`) brings its own
    encoder, made by `encoder_for`; without it, such a generation is refused."""

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
        self._stamp: tuple[int, int, int] | None = None
        self._checked = 0.0

    def load(self) -> Serving:
        """The encoder and index as they are now (an empty index when nothing was published yet)."""
        # One look at the active generation: the stamp and the file loaded belong to the same one.
        generation = self.catalog.store.active_generation()
        self._stamp = self._stamp_of(generation)
        self._checked = time.monotonic()
        if generation is None:
            return Serving(self.encoder, VectorIndex(self.encoder.dim, self.fallback_factory))
        if self.encoder_for is not None and not compatible(generation, self.encoder):
            self.encoder = self.encoder_for(generation)
        return Serving(self.encoder, self.catalog.open_generation(generation, self.encoder, mmap=True))

    def poll(self, force: bool = False) -> Serving | None:
        """What to serve when a new index was published since the last look, else None; without
        `force`, at most one look per interval (and none while another thread is looking)."""
        if force:
            self._lock.acquire()
        elif time.monotonic() - self._checked < self.interval or not self._lock.acquire(blocking=False):
            return None
        try:
            self._checked = time.monotonic()
            if self._stamp_of(self.catalog.store.active_generation()) == self._stamp:
                return None
            return self.load()
        finally:
            self._lock.release()

    def _stamp_of(self, generation: IndexGeneration | None) -> tuple[int, int, int] | None:
        return None if generation is None else self.catalog.stamp(generation)


def compatible(generation: IndexGeneration, encoder: Encoder) -> bool:
    """True when `encoder` makes the vectors `generation` holds (same model, pooling and dimension)."""
    return (generation.model, generation.pooling, generation.dim) == (encoder.model_name, encoder.pooling, encoder.dim)


def _check_compatible(generation: IndexGeneration, encoder: Encoder) -> None:
    if not compatible(generation, encoder):
        raise IndexMismatchError(
            f"the serving index (generation {generation.id}) was built with model {generation.model!r}, "
            f"{generation.pooling} pooling, dimension {generation.dim}; the settings ask for "
            f"{encoder.model_name!r}, {encoder.pooling} pooling, dimension {encoder.dim}. "
            "Run `semsearch rebuild` to re-embed, or change the settings back."
        )
