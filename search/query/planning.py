"""How a metadata filter runs: inside the nearest-neighbour search (its chunk ids as an ID selector)
or as a check on over-fetched results of an unfiltered search, chosen by its estimated share.

The estimate is two index counts, which cost in proportion to what the filter matches; a service
sees the same filters again and again (a tenant, a category), so each filter's estimate is kept a
short while. A stale estimate only costs speed: a broad plan that finds too few falls back to the
narrow one, and a narrow plan is exact whatever the share."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from search.filters import MetadataFilter
from search.storage.records import ChunkOwner
from search.storage.store import Store
from search.storage.vectors import FewMatches, Matches
from search.timing import timed

if TYPE_CHECKING:
    from search.dense.catalog import Serving
    from search.query.searcher import Searcher

# A filter that at least this share of documents may pass is checked on over-fetched results of an
# unfiltered search; a narrower one restricts the search itself to the matching chunks.
BROAD = 0.2


class FilterPlanner:
    """Estimates a filter's share of the documents, remembering each estimate for `max_age` seconds
    (at most `size` filters)."""

    def __init__(self, store: Store, max_age: float = 30.0, size: int = 256) -> None:
        self.store = store
        self.max_age = max_age
        self.size = size
        self._estimates: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def broad_share(self, check: MetadataFilter) -> float | None:
        """The estimated share of documents passing `check` when it is broad enough to check on
        results; None for a narrow filter, cheaper to look up and search inside."""
        share = self.share(check)
        return share if share >= BROAD else None

    def share(self, check: MetadataFilter) -> float:
        """At most what share of the documents pass `check` (0 on an empty store)."""
        key = repr(check)  # not the value itself: True == 1 in Python, not in a filter
        now = time.monotonic()
        with self._lock:
            hit = self._estimates.get(key)
            if hit is not None and now - hit[0] < self.max_age:
                self._estimates.move_to_end(key)
                return hit[1]
        with timed("sql"):
            bound, total = self.store.matching_estimate(check)
        share = bound / total if total else 0.0
        with self._lock:
            self._estimates[key] = (now, share)
            self._estimates.move_to_end(key)
            while len(self._estimates) > self.size:
                self._estimates.popitem(last=False)
        return share


class RequestPlan:
    """How one request's filter runs, decided once for its queries and both retrievers: a broad
    filter (`share` set) is checked on results, its chunk ids looked up only if a check falls
    short; a narrow one restricts both retrievers to its chunks: the keyword one to their ids, the
    dense one to their vectors when few (scored exactly), else to their ids. A narrow filter's few
    chunks come in one lookup for both retrievers; each lookup is made once, on first use, by
    whichever retriever thread asks first."""

    def __init__(
        self, dense: Searcher, check: MetadataFilter | None, serving: Serving | None, vectors: bool = True
    ) -> None:
        self.check = check
        self._dense = dense
        self._with_vectors = vectors  # False: a keyword search, which needs the ids alone
        # The pair the query vectors come from (None: what serves at lookup time); set once they exist.
        self.serving = serving
        self.share = None if check is None else dense.broad_share(check)
        self._ids: np.ndarray | None = None
        self._few: tuple[str, FewMatches | None] | None = None  # (the space looked in, what it found)
        self._vectors: Matches | None = None
        self._ids_lock, self._few_lock, self._vectors_lock = threading.Lock(), threading.Lock(), threading.Lock()

    def ids(self) -> np.ndarray | None:
        """The ids of the chunks passing the filter (None: no filter)."""
        if self.check is None:
            return None
        few = self._narrow_few()
        return few.ids if few is not None else self._matching_ids(self.check)

    def owners(self) -> Mapping[int, ChunkOwner] | None:
        """The documents of the chunks passing a narrow filter, when its one lookup for both
        retrievers read them (None: no such lookup was made)."""
        few = self._narrow_few()
        return None if few is None else few.owners

    def _narrow_few(self) -> FewMatches | None:
        """The one lookup for both retrievers, made only for a narrow filter of a search that needs
        vectors (None otherwise, or when too many chunks pass)."""
        if self.check is None or self.share is not None or not self._with_vectors:
            return None
        return self._few_matches()

    def dense_allowed(self) -> Matches | None:
        """What the dense retriever searches among (None: no filter)."""
        if self.check is None:
            return None
        with self._vectors_lock:
            if self._vectors is None:
                few = self._few_matches()
                self._vectors = few.embedded if few is not None else Matches(self._matching_ids(self.check))
            return self._vectors

    def _few_matches(self) -> FewMatches | None:
        """The filter's few chunks and their vectors (None: too many), looked up in the space of the
        pair serving the query vectors; again if the keyword side looked before that pair was known
        and a model change since moved the space."""
        assert self.check is not None
        pair = self.serving or self._dense.serving
        space = pair.index.space
        with self._few_lock:
            if self._few is None or self._few[0] != space:
                with timed("sql"):
                    self._few = (space, self._dense.matching_vectors(self.check, pair))
            return self._few[1]

    def _matching_ids(self, check: MetadataFilter) -> np.ndarray:
        with self._ids_lock:
            if self._ids is None:
                with timed("sql"):
                    self._ids = self._dense.store.matching_chunk_ids(check)
            return self._ids
