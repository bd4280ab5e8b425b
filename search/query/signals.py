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
from search.query.searcher import Ranked
from search.storage.store import Store
from search.storage.vectors import VectorRows
from search.timing import timed


@dataclass(frozen=True)
class OwnSignals:
    """Per document (the user's id): its best chunk's cosine and BM25 for the query (0.0 where it
    has none: no vector yet, no query term), and the BM25 bound of the query (KeywordIndex.bound)."""

    cosine: dict[str, float]
    bm25: dict[str, float]
    bound: float


def own_signals(
    store: Store,
    keyword: KeywordIndex,
    terms: Sequence[str],
    vector: np.ndarray | None,
    index: SegmentView | None,
    dense: Sequence[Ranked],
    ranked: Sequence[Ranked],
) -> OwnSignals:
    """The signals of every document in `dense` or `ranked` (the keyword list), those missing from a
    list read for the document itself. `vector` and `index`: the query's vector and the index it
    was embedded for (None in keyword mode: no cosine then)."""
    cosine = {h.id: h.score for h in dense}
    bm25 = {h.id: h.score for h in ranked}
    no_cosine = [h for h in ranked if h.id not in cosine] if vector is not None else []
    no_bm25 = [h for h in dense if h.id not in bm25] if terms else []
    if no_cosine and index is not None and index.space:
        assert vector is not None
        cosine.update(_cosines(VectorRows(store, index.space, index.dim), vector, no_cosine))
    if no_bm25:
        with timed("sql"):
            chunks = store.document_chunks([h.chunk_id for h in no_bm25])
        bm25.update(_bm25s(keyword, terms, no_bm25, chunks))
    return OwnSignals(cosine, bm25, keyword.bound(terms))


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
