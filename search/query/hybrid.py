"""Hybrid retrieval: the dense searcher and the BM25 keyword index, each ranking documents by their
best chunk, fused per document (search/query/fusion.py).

Each retriever ranks `candidates` documents (at least `k`) whatever `k` is, so a page of 10 is the
top of a page of 50. A metadata filter applies to both retrievers, planned once by its estimated
share (as in the dense searcher): a narrow one inside their searches, a broad one checked on their
over-fetched results; either way `k` matches come back whenever that many exist. `mode` picks one
retriever alone or both."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextvars import copy_context

import numpy as np

from search.dense.catalog import Serving
from search.embedding.space import chunk_input
from search.filters import parse_filter
from search.keyword.index import KeywordIndex
from search.pages import page_of
from search.query.diversify import diversify
from search.query.fusion import convex, rrf
from search.query.hits import Fused, FusionConfig, HybridHit, KeywordSide, Signal, check_mode
from search.query.mmr import MMR
from search.query.planning import RequestPlan
from search.query.searcher import FilterSpec, Ranked, Searcher, best_per_document
from search.query.signals import Query, top_scores
from search.storage.store import Store
from search.timing import timed

# The types live in search/query/hits.py; callers take the whole hybrid API from here.
# Chunks fetched per wanted document at first; grows while documents repeat (as in the dense searcher).
_OVERFETCH = 4
_UNRANKED = 1 << 62  # the rank of a document a retriever did not return
# While a hybrid search is the only one in flight, its keyword retriever runs on a thread of its own
# beside the dense one (FAISS, SQLite and tantivy release the GIL), so it costs about the slower of the
# two, not their sum. With others in flight the cores are busy already: a second thread per request
# would only add switching.
_KEYWORD_THREADS = 2
# What a caller may do to each fused ranking before its rows are read: cut a page, sort it
# (search/query/paging.py's Pager).
Arrange = Callable[[list[Fused]], list[Fused]]


class HybridSearcher:
    """Answers queries in any mode from the dense searcher and the keyword index."""

    def __init__(self, dense: Searcher, keyword: KeywordIndex, fusion: FusionConfig | None = None) -> None:
        self.dense = dense
        self.keyword = keyword
        self.fusion = fusion or FusionConfig()
        self._pool = ThreadPoolExecutor(_KEYWORD_THREADS, thread_name_prefix="keyword-retriever")
        self._in_flight = 0
        self._in_flight_lock = threading.Lock()

    @property
    def store(self) -> Store:
        """The store that owns the chunk rows."""
        return self.dense.store

    def refresh(self, force: bool = False) -> Serving:
        """Pick up newly published vectors and keyword segments; returns the dense pair serving now."""
        self.keyword.reload(force)
        return self.dense.refresh(force)

    def search(
        self,
        query: str,
        k: int = 10,
        filter: FilterSpec = None,
        mode: str = "hybrid",
        mmr: MMR | None = None,
        arrange: Arrange | None = None,
    ) -> list[HybridHit]:
        """The `k` best documents for `query` (see `search_many`)."""
        return self.search_many([query], k, filter, mode, mmr, arrange)[0]

    def search_by_vector(
        self, vector: np.ndarray, k: int = 10, filter: FilterSpec = None, mmr: MMR | None = None
    ) -> list[HybridHit]:
        """The `k` best documents for an already embedded query (dense mode: a vector has no words),
        embedded by the encoder that serves now."""
        serving = self.refresh()
        return self.search_prepared([""], np.atleast_2d(vector), k, parse_filter(filter), "dense", serving, mmr=mmr)[0]

    def search_many(
        self,
        queries: Sequence[str],
        k: int = 10,
        filter: FilterSpec = None,
        mode: str = "hybrid",
        mmr: MMR | None = None,
        arrange: Arrange | None = None,
    ) -> list[list[HybridHit]]:
        """The `k` best documents for each query among those passing `filter` (diversified by `mmr`
        when given); the queries are embedded in one batch, and not at all in keyword mode. A bad
        mode or filter raises ValueError before any model time is spent."""
        check_mode(mode)
        parsed = parse_filter(filter)
        if mmr is not None:
            mmr.check_k(k)
        serving = self.refresh()
        vectors = None if mode == "keyword" else serving.encoder.encode(list(queries))
        return self.search_prepared(queries, vectors, k, parsed, mode, serving, mmr=mmr, arrange=arrange)

    def search_prepared(
        self,
        queries: Sequence[str],
        vectors: np.ndarray | None,
        k: int,
        filter: FilterSpec = None,
        mode: str = "hybrid",
        serving: Serving | None = None,
        keyword: KeywordSide | None = None,
        mmr: MMR | None = None,
        arrange: Arrange | None = None,
    ) -> list[list[HybridHit]]:
        """Like `search_many` with the query vectors already made by `serving`'s encoder (None in
        keyword mode); the chunks passing `filter` are looked up once for all the queries. In hybrid
        mode `keyword` is the keyword side already ranked (`rank_keywords`, with the same filter, to
        `mmr.fetch_k` documents when given). `arrange`, when given, makes each query's ranking of `k`
        (diversified first, with `mmr`) into the hits shown."""
        check_mode(mode)
        parsed = parse_filter(filter)
        if k <= 0:
            raise ValueError(f"k must be positive, got {k}")
        if mmr is not None:
            mmr.check_k(k)
        if mode != "keyword" and (vectors is None or len(vectors) != len(queries)):
            raise ValueError(f"{mode} search needs one query vector per query")
        if keyword is not None and (mode != "hybrid" or len(keyword.rankings) != len(queries)):
            raise ValueError("a keyword side ranked beforehand serves a hybrid search of the same queries")
        plan = keyword.plan if keyword is not None else RequestPlan(self.dense, parsed, serving, mode != "keyword")
        plan.serving = serving
        with self._in_flight_lock:
            self._in_flight += 1
        try:
            hits, gone = self._answer(queries, vectors, k, plan, mode, serving, keyword, mmr, arrange)
            if gone:
                # Chunks ranked by a remembered owner (search/storage/owners.py) but deleted since, which
                # reading their rows made the store forget: ranked again, where SQL answers for them, so
                # that `k` hits come whenever they exist.
                hits, _ = self._answer(queries, vectors, k, plan, mode, serving, None, mmr, arrange)
            return hits
        finally:
            with self._in_flight_lock:
                self._in_flight -= 1

    def _answer(
        self,
        queries: Sequence[str],
        vectors: np.ndarray | None,
        k: int,
        plan: RequestPlan,
        mode: str,
        serving: Serving | None,
        keyword: KeywordSide | None,
        mmr: MMR | None,
        arrange: Arrange | None,
    ) -> tuple[list[list[HybridHit]], list[int]]:
        """Each query's hits, and the ranked chunks whose rows were gone (see `_hits`)."""
        if mmr is None:
            fused, terms = self._rank_all(queries, vectors, k, plan, mode, serving, keyword)
        else:
            fused, terms = self._rank_all(queries, vectors, mmr.fetch_k, plan, mode, serving, keyword)
            index = (serving or self.dense.serving).index
            with timed("fusion"):
                fused = [diversify(self.store, index, f, k, mmr.lambda_, mode) for f in fused]
        return self._hits([arrange(f) for f in fused] if arrange else fused, terms)

    def _rank_all(
        self,
        queries: Sequence[str],
        vectors: np.ndarray | None,
        k: int,
        plan: RequestPlan,
        mode: str,
        serving: Serving | None,
        ranked: KeywordSide | None = None,
    ) -> tuple[list[list[Fused]], list[list[str]]]:
        """Each query's fused ranking and its keyword terms."""
        depth = k if mode != "hybrid" else max(k, self.fusion.candidates)
        fused: list[list[Fused]] = []
        if ranked is not None:
            assert vectors is not None  # checked by the caller
            for vector, keyword, words in zip(vectors, ranked.rankings, ranked.terms, strict=True):
                dense = self._dense(vector, depth, plan, serving)
                fused.append(self._fused(dense, keyword, k, mode, words, vector, serving))
            return fused, ranked.terms
        terms = []
        for i, query in enumerate(queries):
            terms.append(self.keyword.analyzer.query_terms(query))
            if mode == "keyword":
                keyword = self._keyword(terms[-1], depth, plan)
                fused.append(self._fused([], keyword, k, mode, terms[-1], None, serving))
                continue
            alone = mode == "hybrid" and self._in_flight == 1
            # In the request's context, so that its keyword time is counted (search/timing.py).
            beside = self._pool.submit(copy_context().run, self._keyword, terms[-1], depth, plan) if alone else None
            assert vectors is not None  # checked above for every mode but keyword
            dense = self._dense(vectors[i], depth, plan, serving)
            if beside is not None:
                keyword = beside.result()
            else:
                keyword = self._keyword(terms[-1], depth, plan) if mode == "hybrid" else []
            fused.append(self._fused(dense, keyword, k, mode, terms[-1], vectors[i], serving))
        return fused, terms

    def rank_keywords(self, queries: Sequence[str], k: int, filter: FilterSpec = None) -> KeywordSide:
        """The keyword side of a hybrid search of `queries` (no model time): the API ranks it while
        the queries are embedded, then hands it to `search_prepared`."""
        plan = RequestPlan(self.dense, parse_filter(filter), None)
        depth = max(k, self.fusion.candidates)
        terms = [self.keyword.analyzer.query_terms(q) for q in queries]
        return KeywordSide(plan, terms, [self._keyword(t, depth, plan) for t in terms])

    def _hits(self, fused: list[list[Fused]], terms: list[list[str]]) -> tuple[list[list[HybridHit]], list[int]]:
        """The fused rankings with their chunks' rows (one query for all), and the chunks left out
        because their rows were gone (deleted since they were ranked)."""
        with timed("sql"):
            rows = self.store.chunk_hits([f.chunk.chunk_id for ranking in fused for f in ranking])
        out = []
        gone: list[int] = []
        for ranking, words in zip(fused, terms, strict=True):
            hits = []
            for f in ranking:
                row = rows.get(f.chunk.chunk_id)
                if row is None:
                    gone.append(f.chunk.chunk_id)
                    continue
                matched = self.keyword.analyzer.matched_terms(words, chunk_input(row.title, row.text))
                hits.append(
                    HybridHit(
                        id=f.chunk.id,
                        chunk_id=row.chunk_id,
                        score=f.score,
                        title=row.title,
                        text=row.text,
                        metadata=row.metadata,
                        start=row.start,
                        end=row.end,
                        dense=f.dense,
                        keyword=f.keyword,
                        matched_terms=matched,
                        page=page_of(row.metadata, row.start),
                    )
                )
            out.append(hits)
        return out, gone

    def _dense(self, vector: np.ndarray, depth: int, plan: RequestPlan, serving: Serving | None) -> list[Ranked]:
        if plan.check is not None and plan.share is not None:
            hits = self.dense.rank_checked(vector, depth, plan.check, plan.share, serving)
            if hits is not None:
                return hits
        return self.dense.rank(vector, depth, plan.dense_allowed(), serving)

    def _keyword(self, terms: list[str], depth: int, plan: RequestPlan) -> list[Ranked]:
        """The `depth` best documents by BM25 of their best chunk, over-fetching chunks until that
        many documents turn up; a chunk whose row is gone (deleted, replaced) is skipped. A broad
        filter is checked on over-fetched unfiltered results (a few widenings at most), a narrow
        one restricts the search to its chunks."""
        if plan.check is not None and plan.share is not None:
            fetch = math.ceil(depth * _OVERFETCH / plan.share)
            for _ in range(3):
                with timed("keyword"):
                    found = self.keyword.search(terms, fetch, None)
                best = best_per_document(self.store, found, plan.check, limit=depth)
                if len(best) >= depth or len(found) < fetch:
                    return best[:depth]
                fetch *= _OVERFETCH
        fetch = depth * _OVERFETCH
        allowed = plan.ids()
        while True:
            with timed("keyword"):
                found = self.keyword.search(terms, fetch, allowed)
            best = best_per_document(self.store, found, owners=plan.owners(), limit=depth)
            if len(best) >= depth or len(found) < fetch:
                return best[:depth]
            fetch *= _OVERFETCH

    def _fused(
        self,
        dense: list[Ranked],
        keyword: list[Ranked],
        k: int,
        mode: str,
        terms: list[str],
        vector: np.ndarray | None,
        serving: Serving | None,
    ) -> list[Fused]:
        """The `k` best of the candidates by their scores (`_scores`), each with its signals."""
        with timed("fusion"):
            return self._fuse(dense, keyword, k, self._scores(dense, keyword, k, mode, terms, vector, serving))

    def _scores(
        self,
        dense: list[Ranked],
        keyword: list[Ranked],
        k: int,
        mode: str,
        terms: list[str],
        vector: np.ndarray | None,
        serving: Serving | None,
    ) -> dict[str, float]:
        """Each candidate document's score: a retriever's own in a single mode, else fused (under
        `bounded`, only for the candidates that can be among the `k` best)."""
        rankings = [[(h.id, h.score) for h in dense], [(h.id, h.score) for h in keyword]]
        if mode != "hybrid":
            return dict(rankings[0] if mode == "dense" else rankings[1])
        if self.fusion.method == "rrf":
            return rrf(rankings, self.fusion.rrf_k)
        weight = self.fusion.weight
        if self.fusion.method == "convex":
            return convex(rankings, [weight, 1.0 - weight])
        query = Query(self.store, self.keyword, terms, vector, (serving or self.dense.serving).index)
        return top_scores(query, dense, keyword, max(k, self.fusion.candidates), k, weight)

    def _fuse(self, dense: list[Ranked], keyword: list[Ranked], k: int, scores: dict[str, float]) -> list[Fused]:
        by_dense = {h.id: (rank, h) for rank, h in enumerate(dense, start=1)}
        by_keyword = {h.id: (rank, h) for rank, h in enumerate(keyword, start=1)}

        def best_rank(doc: str) -> int:
            return min(by_dense.get(doc, (_UNRANKED,))[0], by_keyword.get(doc, (_UNRANKED,))[0])

        # Ties (frequent under RRF) go to the document one retriever ranked higher, then by id.
        order = sorted(scores, key=lambda doc: (-scores[doc], best_rank(doc), doc))[:k]
        fused = []
        for doc in order:
            d, kw = by_dense.get(doc), by_keyword.get(doc)
            # The chunk shown is the one of the retriever that ranked the document higher.
            if d is not None and (kw is None or d[0] <= kw[0]):
                chunk = d[1]
            else:
                assert kw is not None
                chunk = kw[1]
            fused.append(
                Fused(
                    chunk=chunk,
                    score=float(scores[doc]),
                    dense=None if d is None else Signal(d[0], d[1].score),
                    keyword=None if kw is None else Signal(kw[0], kw[1].score),
                )
            )
        return fused
