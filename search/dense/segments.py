"""What a reader serves: a trained base segment (a file, memory-mapped where the index type allows)
plus small in-memory delta segments of the vectors committed since, minus the chunks deleted since.

The base file holds the vectors up to change `base_seq`; a reader applies the change log after it
(`catch_up`), so a write costs readers what it changed, never a reload of the base. The worker folds
the deltas into a new base file past a threshold (indexer/write/publisher.py), and readers then swap it in."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
from sqlalchemy.orm import Session

from search.dense.index import VectorIndex
from search.storage import changes
from search.storage.vectors import VectorRows

log = logging.getLogger(__name__)

# Deltas are kept as a few immutable blocks (a view is never changed in place while queries read it);
# past this many, a catch-up joins them into one.
_MAX_DELTAS = 8


@dataclass(frozen=True)
class Delta:
    """Vectors committed after the base file was written: searched exactly (they are few)."""

    ids: np.ndarray
    vectors: np.ndarray

    def search(
        self, queries: np.ndarray, k: int, allowed: np.ndarray | None, removed: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        keep = ~np.isin(self.ids, removed) if len(removed) else None
        if allowed is not None:
            inside = np.isin(self.ids, allowed)
            keep = inside if keep is None else keep & inside
        live = len(self.ids) if keep is None else int(keep.sum())
        n = min(k, live)
        if n == 0:
            return np.empty((len(queries), 0), np.float32), np.empty((len(queries), 0), np.int64)
        if keep is not None and live * 4 < len(keep):
            # Few pass: score those rows alone.
            rows = np.flatnonzero(keep)
            ids, scores = self.ids[rows], queries @ self.vectors[rows].T
        else:
            # Most pass: score every row in place and push the others out of reach, rather than
            # copy the block (a copy of every vector per query cost more than the scoring).
            ids, scores = self.ids, queries @ self.vectors.T
            if keep is not None:
                scores[:, ~keep] = -np.inf
        top = np.argpartition(-scores, n - 1, axis=1)[:, :n]
        return np.take_along_axis(scores, top, axis=1), ids[top]


@dataclass(frozen=True)
class SegmentView:
    """An immutable snapshot served to queries: `base`, `deltas`, and the chunk ids deleted since the
    base was written (`removed`, sorted); it reflects the change log up to `seq`."""

    base: VectorIndex
    seq: int
    deltas: tuple[Delta, ...] = ()
    removed: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    base_ids: np.ndarray | None = None  # the base's ids, sorted (read from the base when not given)
    space: str = ""  # the embedding space's key, under which SQL holds the float vectors

    @property
    def dim(self) -> int:
        """Dimension of the vectors."""
        return self.base.dim

    @property
    def resolved_factory(self) -> str:
        """The base segment's index type."""
        return self.base.resolved_factory

    @property
    def exact(self) -> bool:
        """Whether a search scores every vector exactly (a Flat base, or an empty one: deltas are
        exact), so that a chunk missing from a search of depth n scores at most the n-th found."""
        return self.base.ntotal == 0 or self.base.resolved_factory == "Flat"

    @cached_property
    def ntotal(self) -> int:
        """Live vectors held: the base's and the deltas', less those of deleted chunks. Counted once
        per view (views are immutable), looking each deleted id up in the sorted base ids: the cost
        is the deletions', not the base's."""
        held = self.base.ntotal + sum(len(d.ids) for d in self.deltas)
        if not len(self.removed):
            return held
        gone = sum(int(np.isin(d.ids, self.removed).sum()) for d in self.deltas)
        base_ids = self.base_ids if self.base_ids is not None else np.sort(self.base.ids())
        if len(base_ids):
            at = np.minimum(np.searchsorted(base_ids, self.removed), len(base_ids) - 1)
            gone += int((base_ids[at] == self.removed).sum())
        return held - gone

    def ids(self) -> np.ndarray:
        """Every live id held, sorted (for consistency checks)."""
        held = np.concatenate([self.base.ids(), *(d.ids for d in self.deltas)])
        return np.setdiff1d(held, self.removed)

    def search(self, vectors: np.ndarray, k: int, ids: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-`k` (scores, ids) per query over every segment; with `ids`, only those compete (they
        come from SQL rows, so deleted chunks are never among them)."""
        queries = np.ascontiguousarray(np.atleast_2d(vectors), dtype=np.float32)
        scores, found = self.base.search(queries, k, ids=ids, exclude=None if ids is not None else self.removed)
        if not self.deltas:
            return scores, found
        parts_s, parts_i = [scores], [found]
        for delta in self.deltas:
            s, i = delta.search(queries, k, ids, self.removed)
            parts_s.append(s)
            parts_i.append(i)
        all_s, all_i = np.concatenate(parts_s, axis=1), np.concatenate(parts_i, axis=1)
        order = np.argsort(-all_s, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(all_s, order, axis=1), np.take_along_axis(all_i, order, axis=1)

    def apply(self, entries: Sequence[changes.Entry], vectors: dict[int, bytes]) -> SegmentView:
        """A new view with `entries` applied: "vec" entries (whose vectors are in `vectors`; a chunk
        deleted meanwhile has none) become a delta, "del" entries join `removed`."""
        if not entries:
            return self
        added = [e.chunk_id for e in entries if e.op is changes.Op.VEC and e.chunk_id in vectors]
        dead = [e.chunk_id for e in entries if e.op is changes.Op.DEL]
        deltas = self.deltas
        if added:
            block = np.frombuffer(b"".join(vectors[c] for c in added), dtype=np.float32).reshape(len(added), self.dim)
            deltas = (*deltas, Delta(np.asarray(added, dtype=np.int64), block))
        removed = np.union1d(self.removed, np.asarray(dead, dtype=np.int64)) if dead else self.removed
        if len(deltas) > _MAX_DELTAS:
            deltas = (_join(deltas, removed),)
        return SegmentView(self.base, entries[-1].seq, deltas, removed, self.base_ids, self.space)


def _join(deltas: Sequence[Delta], removed: np.ndarray) -> Delta:
    """One delta holding the live vectors of several."""
    ids = np.concatenate([d.ids for d in deltas])
    vectors = np.concatenate([d.vectors for d in deltas])
    keep = ~np.isin(ids, removed)
    return Delta(ids[keep], np.ascontiguousarray(vectors[keep]))


def catch_up(view: SegmentView, rows: VectorRows, s: Session, upto: int | None = None) -> SegmentView:
    """`view` with every change after its seq applied (up to `upto` when given), read in pages."""
    while True:
        entries, vectors = rows.vectors_since(s, view.seq)
        if upto is not None:
            entries = [e for e in entries if e.seq <= upto]
        if not entries:
            return view
        view = view.apply(entries, vectors)


def build_base(rows: VectorRows, factory: str, s: Session, upto: int) -> VectorIndex:
    """A new base index over every stored vector of the space whose "vec" entry is at most `upto`
    (later ones are applied from the log on top of it, so none is held twice)."""
    recent = np.asarray(
        [e.chunk_id for e in changes.read(s, upto, limit=2**62, ops=(changes.Op.VEC,), space=rows.space)],
        dtype=np.int64,
    )
    index = VectorIndex(rows.dim, factory)
    blocks = [(ids, vecs) for ids, vecs in rows.iter_all()]
    if blocks:
        ids = np.concatenate([b[0] for b in blocks])
        vectors = np.concatenate([b[1] for b in blocks])
        keep = ~np.isin(ids, recent)
        index.add(ids[keep], vectors[keep])
    log.info("built a %s base over %d vectors", index.resolved_factory, index.ntotal)
    return index
