"""Each candidate document's own signals for a query, whichever retriever found it: the cosine of its
best chunk and the BM25 of its best chunk, read for the document itself when a retriever's list did
not hold it (its chunks' vectors from SQL; a keyword search among its chunks).

A fused score made from these alone (search/query/fusion.py `bounded`) is the document's own: the
same document for the same query scores the same with or without a filter, at any page size, and
whatever else matched. A retriever's list gives a document's best chunk only down to its depth; a
document past it would otherwise count as 0 there, and its score would depend on the others."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from search.dense.segments import SegmentView
from search.keyword.index import KeywordIndex
from search.query.fusion import bounded
from search.query.searcher import Ranked
from search.storage.store import Store
from search.storage.vectors import VectorRows
from search.timing import timed


@dataclass(frozen=True)
class Query:
    """What reading a document's own signals needs: the query's terms (analysed), its vector and the
    index it was embedded for (None in keyword mode: no cosine then), and the store and keyword
    index to read from."""

    store: Store
    keyword: KeywordIndex
    terms: Sequence[str]
    vector: np.ndarray | None
    index: SegmentView | None


def top_scores(
    query: Query, dense: Sequence[Ranked], ranked: Sequence[Ranked], depth: int, k: int, weight: float
) -> dict[str, float]:
    """The fused `bounded` scores of every candidate (in `dense` or `ranked`, the keyword list, each
    searched to `depth`) that can be among the `k` best; those that cannot are left out.

    A document in both lists scores at once. One missing from a list scores at most what that list's
    last document scored there (the lists are exact: FAISS on a Flat index, BM25 in tantivy), so it
    is read for itself (`own_signals`) only while that ceiling still reaches the k-th score known;
    most never do. The scores read are the same as reading every one: it only saves the reads."""
    cosine = {h.id: h.score for h in dense}
    bm25 = {h.id: h.score for h in ranked}
    bound = query.keyword.bound(query.terms)
    exact = query.index is not None and query.index.exact
    cos_ceiling = dense[-1].score if dense and len(dense) >= depth and exact else 1.0
    # A keyword list shorter than its depth holds every document with a matching chunk: 0 for the rest.
    bm25_ceiling = ranked[-1].score if len(ranked) >= depth else 0.0
    scores = {d: bounded(cosine[d], bm25[d], bound, weight) for d in cosine.keys() & bm25.keys()}

    ceiling = {
        h.id: bounded(cosine.get(h.id, cos_ceiling), bm25.get(h.id, bm25_ceiling), bound, weight)
        for h in (*ranked, *dense)
        if h.id not in scores
    }
    pending = sorted((h for h in (*ranked, *dense) if h.id in ceiling), key=lambda h: -ceiling[h.id])
    batch = k
    while pending:
        kth = sorted(scores.values(), reverse=True)[k - 1] if len(scores) >= k else -1.0
        reach = [h for h in pending if ceiling[h.id] >= kth]
        taken, pending = reach[:batch], reach[batch:]
        if not taken:
            break
        own = own_signals(query, [h for h in taken if h.id not in cosine], [h for h in taken if h.id not in bm25])
        for h in taken:
            scores[h.id] = bounded(
                cosine.get(h.id, own.cosine.get(h.id, 0.0)), bm25.get(h.id, own.bm25.get(h.id, 0.0)), bound, weight
            )
        batch *= 4  # few rounds: the first reads the likeliest, the next all that still can reach
    return scores


@dataclass(frozen=True)
class OwnSignals:
    """Per document (the user's id): its best chunk's cosine and BM25 for the query (0.0 where it
    has none: no vector yet, no query term)."""

    cosine: dict[str, float]
    bm25: dict[str, float]


def own_signals(query: Query, no_cosine: Sequence[Ranked], no_bm25: Sequence[Ranked]) -> OwnSignals:
    """The cosine of each document of `no_cosine` and the BM25 of each of `no_bm25`, read for the
    document itself (each given by a chunk of it): the best over its chunks' vectors in SQL, and a
    keyword search among its chunks."""
    cosine: dict[str, float] = {}
    bm25: dict[str, float] = {}
    index, vector = query.index, query.vector
    if no_cosine and vector is not None and index is not None and index.space:
        cosine = _cosines(VectorRows(query.store, index.space, index.dim), vector, no_cosine)
    if no_bm25 and query.terms:
        with timed("sql"):
            chunks = query.store.document_chunks([h.chunk_id for h in no_bm25])
        bm25 = _bm25s(query.keyword, query.terms, no_bm25, chunks)
    return OwnSignals(cosine, bm25)


def _cosines(rows: VectorRows, vector: np.ndarray, docs: Sequence[Ranked]) -> dict[str, float]:
    """Each document's best cosine over its chunks' vectors in SQL (0.0 where none has one yet)."""
    with timed("sql"):
        given, vectors = rows.document_vectors([h.chunk_id for h in docs])
    by_chunk = {h.chunk_id: h.id for h in docs}
    best = dict.fromkeys(by_chunk.values(), 0.0)
    if len(given):
        scores = vectors @ np.asarray(vector, dtype=np.float32).reshape(-1)
        for chunk_id, score in zip(given.tolist(), scores.tolist(), strict=True):
            doc = by_chunk[chunk_id]
            best[doc] = max(best[doc], float(score))
    return best


def _bm25s(
    keyword: KeywordIndex, terms: Sequence[str], docs: Sequence[Ranked], chunks: dict[int, list[int]]
) -> dict[str, float]:
    """Each document's best BM25 over its chunks, from a keyword search among them alone."""
    owners = {chunk_id: h.id for h in docs for chunk_id in chunks.get(h.chunk_id, ())}
    best = dict.fromkeys((h.id for h in docs), 0.0)
    if owners:
        allowed = np.fromiter(sorted(owners), dtype=np.int64, count=len(owners))
        with timed("keyword"):
            found = keyword.search(terms, len(owners), allowed)
        for chunk_id, score in found:
            doc = owners.get(chunk_id)
            if doc is not None:
                best[doc] = max(best[doc], score)
    return best
