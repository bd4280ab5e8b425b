"""A FAISS index keyed by chunk primary keys (the only module that imports faiss)."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import faiss
import numpy as np

from search.dense.files import write_atomically

log = logging.getLogger(__name__)

# `auto` stays exact below this many vectors: a Flat scan of 100k x 384 floats is a few ms per query.
AUTO_FLAT_LIMIT = 100_000
_TRAIN_POINTS_PER_LIST = 64
_MAX_TRAIN = 262_144


def auto_factory(n: int) -> str:
    """The index type `factory="auto"` picks for `n` vectors: exact while that is fast, IVF with SQ8 beyond."""
    if n < AUTO_FLAT_LIMIT:
        return "Flat"
    nlist = 2 ** round(math.log2(4 * math.sqrt(n)))
    return f"IVF{nlist},SQ8"


def _auto_nprobe(nlist: int) -> int:
    # About 3% of the lists, which keeps recall@10 above 0.95 on clustered sentence embeddings.
    return max(8, nlist // 32)


def _filtered_nprobe(nprobe: int, nlist: int, matching: int, k: int) -> int:
    """IVF lists to visit when only `matching` vectors may be returned.

    The usual nprobe lists hold about matching * nprobe / nlist of the matches (if they are spread
    evenly); when that is not comfortably more than k (a rare filter), widen the probe so that about
    4k matches are in reach. A small matching set gets every list: an exact search over just those
    vectors, since the selector skips the others cheaply."""
    wanted = math.ceil(4 * k * nlist / max(matching, 1))
    return min(nlist, max(nprobe, wanted))


class VectorIndex:
    """Inner-product nearest-neighbour search over L2-normalised vectors, addressed by int64 ids."""

    def __init__(self, dim: int, factory: str = "Flat") -> None:
        if dim <= 0:
            raise ValueError(f"dim must be positive, got {dim}")
        self.dim = dim
        self.factory = factory
        self._resolved = factory
        self._index: faiss.Index | None = None if factory == "auto" else _build(dim, factory)

    @property
    def ntotal(self) -> int:
        """Number of vectors held."""
        return 0 if self._index is None else int(self._index.ntotal)

    @property
    def needs_training(self) -> bool:
        """True until the index type is known and trained (IVF, PQ and `auto` need vectors first)."""
        return self._index is None or not self._index.is_trained

    @property
    def resolved_factory(self) -> str:
        """The factory string in use (`auto` resolves when the first vectors arrive)."""
        return self._resolved

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add `vectors` under `ids`; trains the index first (on a sample of them) when it needs training."""
        ids, vectors = self._check(ids, vectors)
        if len(ids) == 0:
            return
        if self._index is None:
            self._resolved = auto_factory(len(ids))
            log.info("index factory auto -> %s for %d vectors", self._resolved, len(ids))
            self._index = _build(self.dim, self._resolved)
        if not self._index.is_trained:
            self.train(vectors)
        self._index.add_with_ids(vectors, ids)

    def train(self, vectors: np.ndarray) -> None:
        """Train on (a random sample of) `vectors`; needed once for IVF and PQ indexes."""
        assert self._index is not None
        ivf = self._ivf()
        if ivf is not None and len(vectors) < ivf.nlist:
            raise ValueError(
                f"index {self.resolved_factory!r} has {ivf.nlist} lists and needs at least that many vectors "
                f"to train, got {len(vectors)}; use a smaller IVF or 'Flat'"
            )
        wanted = _MAX_TRAIN if ivf is None else min(_MAX_TRAIN, ivf.nlist * _TRAIN_POINTS_PER_LIST)
        sample = vectors
        if len(vectors) > wanted:
            pick = np.random.default_rng(0).choice(len(vectors), size=wanted, replace=False)
            sample = vectors[np.sort(pick)]
        self._index.train(np.ascontiguousarray(sample, dtype=np.float32))
        if ivf is not None and self.factory == "auto":
            ivf.nprobe = _auto_nprobe(ivf.nlist)

    def _ivf(self) -> faiss.IndexIVF | None:
        """The IVF part of the index, None for index types without inverted lists."""
        return None if self._index is None else faiss.try_extract_index_ivf(self._index)

    @property
    def nprobe(self) -> int | None:
        """IVF lists visited per search; None for index types without lists."""
        ivf = self._ivf()
        return None if ivf is None else int(ivf.nprobe)

    def set_nprobe(self, nprobe: int) -> None:
        """How many IVF lists a search visits (more: higher recall, slower); stored with the index."""
        ivf = self._ivf()
        if ivf is None:
            raise ValueError(f"index type {self.resolved_factory!r} has no nprobe (not an IVF index)")
        ivf.nprobe = nprobe

    def search(
        self, vectors: np.ndarray, k: int, ids: np.ndarray | None = None, exclude: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-`k` (scores, ids) per query row; missing neighbours have id -1 and score -inf.

        With `ids`, only vectors stored under those ids compete; with `exclude`, vectors stored under
        those ids do not (chunks deleted since this file was written). Either restriction happens
        inside the nearest-neighbour search, so `k` matches come back whenever `k` are held."""
        queries = np.ascontiguousarray(np.atleast_2d(vectors), dtype=np.float32)
        if queries.shape[1] != self.dim:
            raise ValueError(f"query vectors have dimension {queries.shape[1]}, the index holds {self.dim}")
        if k <= 0:
            raise ValueError(f"k must be positive, got {k}")
        empty = np.full((len(queries), k), -np.inf, np.float32), np.full((len(queries), k), -1, np.int64)
        if self._index is None or self.ntotal == 0 or (ids is not None and len(ids) == 0):
            return empty
        if ids is not None:
            allowed = faiss.IDSelectorBatch(np.ascontiguousarray(ids, dtype=np.int64))
            scores, found = self._search_among(queries, k, allowed, len(ids))
        elif exclude is not None and len(exclude):
            batch = faiss.IDSelectorBatch(np.ascontiguousarray(exclude, dtype=np.int64))
            selector = faiss.IDSelectorNot(batch)  # `batch` must outlive the search: it does, as a local
            scores, found = self._search_among(queries, k, selector, max(self.ntotal - len(exclude), 1))
        else:
            scores, found = self._index.search(queries, k)
        scores[found < 0] = -np.inf
        return scores, found

    def _search_among(
        self, queries: np.ndarray, k: int, selector: faiss.IDSelector, matching: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Search restricted by a FAISS ID selector that about `matching` vectors pass (per call:
        parameters are not shared)."""
        assert self._index is not None
        ivf = self._ivf()
        if ivf is None:
            if isinstance(faiss.downcast_index(getattr(self._index, "index", self._index)), faiss.IndexHNSW):
                return self._hnsw_search(queries, k, selector, matching)
            # Flat tests the selector on every vector, so it stays exact.
            params = faiss.SearchParameters()
            params.sel = selector
            return self._index.search(queries, k, params=params)
        nlist = int(ivf.nlist)
        nprobe = _filtered_nprobe(int(ivf.nprobe), nlist, matching, k)
        scores, found = self._ivf_search(queries, k, selector, nprobe)
        # Matches clustered away from the query can all sit in unvisited lists: when a row came back
        # short, visit every list, which is exact over the matching vectors.
        if nprobe < nlist and ((found >= 0).sum(axis=1) < min(k, matching)).any():
            scores, found = self._ivf_search(queries, k, selector, nlist)
        return scores, found

    def _hnsw_search(
        self, queries: np.ndarray, k: int, selector: faiss.IDSelector, matching: int
    ) -> tuple[np.ndarray, np.ndarray]:
        # HNSW walks its graph through non-matching nodes too and keeps only matches: the beam must
        # grow as the filter gets rarer, up to the whole graph (then it is about exhaustive).
        assert self._index is not None
        ef = min(self.ntotal, max(16, math.ceil(4 * k * self.ntotal / max(matching, 1))))
        while True:
            params = faiss.SearchParametersHNSW()  # type: ignore[attr-defined]  # missing from faiss's stubs
            params.sel, params.efSearch = selector, ef
            scores, found = self._index.search(queries, k, params=params)
            if ef >= self.ntotal or not ((found >= 0).sum(axis=1) < min(k, matching)).any():
                return scores, found
            ef = min(self.ntotal, ef * 8)

    def _ivf_search(
        self, queries: np.ndarray, k: int, selector: faiss.IDSelector, nprobe: int
    ) -> tuple[np.ndarray, np.ndarray]:
        assert self._index is not None
        ivf_params = faiss.SearchParametersIVF()
        ivf_params.sel, ivf_params.nprobe = selector, nprobe
        if not isinstance(self._index, faiss.IndexPreTransform):
            return self._index.search(queries, k, params=ivf_params)
        # An IVF behind a transform ("PCA64,IVF...") takes its parameters wrapped.
        params = faiss.SearchParametersPreTransform()
        params.index_params = ivf_params
        return self._index.search(queries, k, params=params)

    def remove(self, ids: np.ndarray) -> int:
        """Remove the vectors stored under `ids`; returns how many were there."""
        if self._index is None or len(ids) == 0:
            return 0
        selector = faiss.IDSelectorBatch(np.ascontiguousarray(ids, dtype=np.int64))
        try:
            return int(self._index.remove_ids(selector))
        except RuntimeError as exc:
            raise NotImplementedError(
                f"index type {self.resolved_factory!r} cannot remove vectors; rebuild the index instead"
            ) from exc

    def ids(self) -> np.ndarray:
        """All ids held, for consistency checks."""
        if self._index is None:
            return np.empty(0, dtype=np.int64)
        id_map = getattr(self._index, "id_map", None)
        if id_map is not None:
            return faiss.vector_to_array(id_map).astype(np.int64)
        ivf = faiss.extract_index_ivf(self._index)
        invlists = ivf.invlists
        assert invlists is not None
        parts = [
            faiss.rev_swig_ptr(invlists.get_ids(i), invlists.list_size(i)).copy()
            for i in range(invlists.nlist)
            if invlists.list_size(i)
        ]
        return np.concatenate(parts).astype(np.int64) if parts else np.empty(0, dtype=np.int64)

    def save(self, path: Path) -> None:
        """Write the index to `path` atomically: a reader sees the old file or the new one, never half."""
        if self._index is None:
            self._index = _build(self.dim, "Flat")
            self._resolved = "Flat"
        index = self._index
        write_atomically(path, lambda tmp: faiss.write_index(index, tmp))

    @classmethod
    def load(cls, path: Path, factory: str | None = None, mmap: bool = False) -> VectorIndex:
        """Read an index written by `save`; `mmap` maps it rather than reading it where FAISS allows."""
        if not path.is_file():
            raise FileNotFoundError(f"no index file at {path}")
        index = faiss.read_index(str(path), faiss.IO_FLAG_MMAP if mmap else 0)
        loaded = cls(int(index.d), "auto")  # "auto" builds nothing; the file's index takes its place
        loaded.factory = factory or "Flat"
        loaded._resolved = loaded.factory
        loaded._index = index
        return loaded

    def _check(self, ids: np.ndarray, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ids = np.ascontiguousarray(ids, dtype=np.int64).reshape(-1)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise ValueError(f"vectors must have shape (n, {self.dim}), got {vectors.shape}")
        if len(ids) != len(vectors):
            raise ValueError(f"{len(ids)} ids for {len(vectors)} vectors")
        if len(np.unique(ids)) != len(ids):
            raise ValueError("ids must be unique")
        return ids, vectors


def _build(dim: int, factory: str) -> faiss.Index:
    try:
        index = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as exc:
        raise ValueError(f"invalid FAISS index factory string {factory!r}: {exc}") from exc
    # IVF indexes store ids themselves; everything else (Flat, HNSW, PQ) needs an id map so that
    # the ids are chunk primary keys rather than insertion positions.
    if faiss.try_extract_index_ivf(index) is None and not isinstance(index, faiss.IndexIDMap):
        index = faiss.IndexIDMap2(index)
    return index
