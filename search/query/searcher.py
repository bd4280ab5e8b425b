"""The dense retriever: an embedded query -> the best chunk per document from the vector index, within a
filter's plan. Searches come through search/query/hybrid.py (every mode), which embeds the queries and
joins the rows of the hits shown."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from search.dense.catalog import IndexWatcher, Serving
from search.dense.segments import SegmentView
from search.embedding.encoder import Encoder
from search.filters import MetadataFilter
from search.query.planning import BROAD, FilterPlanner
from search.storage.records import ChunkOwner
from search.storage.store import Store
from search.storage.vectors import FewMatches, Matches, VectorRows
from search.timing import timed

# A filter as a client sends it ({"kind": "animal"}), already parsed, or None for no filter.
FilterSpec = Mapping[str, Any] | MetadataFilter | None

# How many chunks to fetch per wanted document at first; grows while documents repeat.
_OVERFETCH = 4
# A filter passing at most this many chunks is scored exactly from their vectors in SQL.
_EXACT_AMONG = 2048


@dataclass(frozen=True)
class Ranked:
    """A document's place in one retriever's ranking: its id (the user's), its best chunk and that
    chunk's score. Ranking reads only these; the text and fields come for the hits shown."""

    id: str
    chunk_id: int
    score: float


class Searcher:
    """Ranks documents for embedded queries from a vector index and the store that owns the chunk rows."""

    def __init__(self, encoder: Encoder, index: SegmentView, store: Store, watcher: IndexWatcher | None = None) -> None:
        self.serving = Serving(encoder, index)
        self.store = store
        self.planner = FilterPlanner(store)
        self.watcher = watcher

    @property
    def encoder(self) -> Encoder:
        """The encoder of the index being served."""
        return self.serving.encoder

    @property
    def index(self) -> SegmentView:
        """The index being served."""
        return self.serving.index

    def refresh(self, force: bool = False) -> Serving:
        """Swap in a newly published index (with its encoder), if the watcher saw one, and return what
        serves now. A reference swap: requests already searching keep the pair they started with;
        `force` looks now rather than at the next interval."""
        fresh = self.watcher.poll(force) if self.watcher else None
        if fresh is not None:
            self.serving = fresh
        return self.serving

    def rank(self, vector: np.ndarray, k: int, allowed: Matches | None, serving: Serving | None = None) -> list[Ranked]:
        """The `k` best documents for one embedded query among the `allowed` chunks (None: all),
        for callers that look the filter up once for several retrievers (search/query/hybrid.py)."""
        return self._search((serving or self.refresh()).index, vector, k, allowed)

    def matching(self, check: MetadataFilter, serving: Serving | None = None) -> Matches:
        """The chunks passing a narrow filter: when few, their vectors (scored exactly, no index
        search), else their ids (an ID selector in the index search)."""
        few = self.matching_vectors(check, serving)
        return few.embedded if few is not None else Matches(self.store.matching_chunk_ids(check))

    def matching_vectors(self, check: MetadataFilter, serving: Serving | None = None) -> FewMatches | None:
        """The chunks passing `check` and the vectors of those embedded, in one query, when at most
        a few (`_EXACT_AMONG`) pass; None when more, or when the index names no space to read them from."""
        index = (serving or self.serving).index
        if not (isinstance(index, SegmentView) and index.space):
            return None
        return VectorRows(self.store, index.space, index.dim).matching_vectors(check, _EXACT_AMONG)

    def broad_share(self, check: MetadataFilter) -> float | None:
        """The share of documents the filter is estimated to pass when it is broad enough to check
        on the results of unfiltered searches; None for a narrow one (search/query/planning.py)."""
        return self.planner.broad_share(check)

    def rank_checked(
        self, vector: np.ndarray, k: int, check: MetadataFilter, share: float, serving: Serving | None = None
    ) -> list[Ranked] | None:
        """The `k` best documents passing a broad filter (see `broad_share`), from over-fetched
        unfiltered searches; None when the estimate was too far off to find them that way."""
        return self._search_checked((serving or self.refresh()).index, vector, k, check, share)

    def _search(self, index: SegmentView, vector: np.ndarray, k: int, allowed: Matches | None) -> list[Ranked]:
        """Best chunk per document, over-fetching chunks until `k` distinct documents turn up.

        `allowed` (the chunks whose document passed the filter) restricts the index search itself."""
        if k <= 0:
            raise ValueError(f"k must be positive, got {k}")
        # Candidates: the whole index, or at most the allowed chunks.
        total = index.ntotal if allowed is None else min(index.ntotal, len(allowed.ids))
        if total == 0:
            return []
        fetch = k * _OVERFETCH
        while True:
            scores, ids = self._candidates(index, vector, min(fetch, total), allowed)
            best = self._best_per_document(scores, ids, k, None if allowed is None else allowed.owners)
            # Stop when enough distinct documents came back, or when every candidate was returned.
            if len(best) >= k or fetch >= total:
                return best[:k]
            fetch *= _OVERFETCH

    def _candidates(
        self, index: SegmentView, vector: np.ndarray, n: int, allowed: Matches | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The `n` nearest chunks (scores, ids). A base index with compressed codes (SQ, PQ) ranks
        them approximately, so they are re-scored exactly with their float vectors from SQL (one
        primary-key lookup of n rows): the codes bound recall on tight clusters, the re-rank lifts it.
        A few allowed chunks are scored exactly from SQL alone: an IVF search restricted to them
        would visit many lists to find them, a cost that grows with the corpus, not the filter."""
        query = np.asarray(vector, dtype=np.float32).reshape(-1)
        if allowed is not None and allowed.vectors is not None:
            with timed("dense"):
                exact = allowed.vectors @ query
                order = np.argsort(-exact, kind="stable")[:n]
            return exact[order], allowed.ids[order]
        with timed("dense"):
            scores, ids = index.search(vector, n, ids=None if allowed is None else allowed.ids)
        return self._rescored(index, query, scores[0], ids[0])

    def _rescored(
        self, index: SegmentView, query: np.ndarray, scores: np.ndarray, ids: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Candidates ranked again by their exact scores when the base's codes are approximate."""
        if not any(code in index.resolved_factory for code in ("SQ", "PQ")):
            return scores, ids
        rows = VectorRows(self.store, index.space, index.dim)
        with timed("sql"):
            found, vectors = rows.fetch(ids[ids >= 0].tolist())
        if not len(found):
            return scores, ids
        exact = vectors @ query
        order = np.argsort(-exact, kind="stable")
        return exact[order], found[order]

    def _checked_candidates(
        self, index: SegmentView, vector: np.ndarray, n: int, check: MetadataFilter
    ) -> tuple[np.ndarray, np.ndarray, dict[int, ChunkOwner]]:
        """The `n` nearest chunks of an unfiltered search less those whose document fails `check`,
        with the documents of those kept. The check comes before the exact re-rank, so only the
        passing chunks' vectors are read."""
        with timed("dense"):
            scores, ids = index.search(vector, n)
        valid = ids[0] >= 0  # FAISS pads a short result with -1
        scores, ids = scores[0][valid], ids[0][valid]
        with timed("sql"):
            owners = self.store.chunk_owners(ids.tolist(), metadata=True)
        passing = {cid: o for cid, o in owners.items() if check.holds(o.metadata or {})}
        keep = np.fromiter((int(cid) in passing for cid in ids), dtype=bool, count=len(ids))
        query = np.asarray(vector, dtype=np.float32).reshape(-1)
        return (*self._rescored(index, query, scores[keep], ids[keep]), passing)

    def _search_checked(
        self, index: SegmentView, vector: np.ndarray, k: int, check: MetadataFilter, share: float
    ) -> list[Ranked] | None:
        """The `k` best documents that pass `check`, from unfiltered searches over-fetching by the
        filter's estimated share; None when a few widenings did not find `k` (the estimate was far
        off: the caller filters inside the search instead)."""
        total = index.ntotal
        if total == 0:
            return []
        fetch = math.ceil(k * _OVERFETCH / max(share, BROAD))
        for _ in range(3):
            scores, ids, passing = self._checked_candidates(index, vector, min(fetch, total), check)
            best = self._best_per_document(scores, ids, k, passing)
            if len(best) >= k or fetch >= total:
                return best[:k]
            fetch *= _OVERFETCH
        return None

    def _best_per_document(
        self, scores: np.ndarray, ids: np.ndarray, k: int, owners: Mapping[int, ChunkOwner] | None = None
    ) -> list[Ranked]:
        valid = ids >= 0  # FAISS pads a short result with -1
        found = list(zip(ids[valid].tolist(), scores[valid].tolist(), strict=True))
        return best_per_document(self.store, found, owners=owners, limit=k)


def best_per_document(
    store: Store,
    found: Sequence[tuple[int, float]],
    check: MetadataFilter | None = None,
    owners: Mapping[int, ChunkOwner] | None = None,
    limit: int | None = None,
) -> list[Ranked]:
    """The best chunk of each document among `found` ((chunk id, score), best first) whose row still
    exists and whose document passes `check`: rows decide (or the owners the store remembers, checked
    against the rows of the hits shown: search/storage/owners.py), so a vector or keyword entry of a
    chunk deleted or replaced since is skipped. `owners`: the rows of the chunks searched among, read by
    this request's filter lookup (else they are read here). `limit`: enough documents (the rest of
    `found` ranks below them). Shared by the dense and keyword retrievers."""
    if owners is None:
        with timed("sql"):
            owners = store.chunk_owners([chunk_id for chunk_id, _ in found], metadata=check is not None)
    best: dict[str, Ranked] = {}
    for chunk_id, score in found:
        owner = owners.get(chunk_id)
        if owner is None or owner.document_id in best:
            continue
        if check is not None and not check.holds(owner.metadata or {}):
            continue
        best[owner.document_id] = Ranked(owner.document_id, chunk_id, float(score))
        if len(best) == limit:
            break
    return list(best.values())
