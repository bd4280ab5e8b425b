"""The default fusion (`bounded`) gives a document a score of its own, on SQLite and PostgreSQL: the
same document for the same query scores the same with or without a filter, at any page size and
offset, and the score is its own cosine and BM25 on their theoretical ranges, in [0, 1]."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from indexer.write.pipeline import open_indexer
from search.components import open_hybrid
from search.query.fusion import bounded
from search.query.hits import FusionConfig
from search.query.hybrid import HybridSearcher
from search.query.paging import Pager, view
from search.query.planning import RequestPlan
from search.query.signals import Query, own_signals, top_scores
from search.settings import Settings
from search.storage.records import DocumentIn
from search.storage.vectors import VectorRows

WORDS = ["cat", "dog", "bird", "fish", "tree", "sun", "moon", "star", "water", "fire", "earth", "wind", "gene", "cell"]
QUERIES = ["cat fish", "moon star water", "gene", "wind earth fire tree", "dog zzqx"]


def _corpus(n: int = 80) -> list[DocumentIn]:
    rng = random.Random(5)
    # Long documents (several chunks each at the fixture's chunk size) with a team each.
    return [
        DocumentIn(f"d{i}", " ".join(rng.choices(WORDS, k=rng.randint(5, 120))), f"doc {i}", {"team": f"t{i % 4}"})
        for i in range(n)
    ]


@pytest.fixture
def hybrid(settings: Settings, database_url: str) -> HybridSearcher:
    live = settings.model_copy(update={"database_url": database_url})
    indexer = open_indexer(live)
    indexer.run(_corpus())
    indexer.store.close()
    searcher = open_hybrid(live)
    # Candidates fewer than the corpus: documents past one retriever's list are the case at stake.
    searcher.fusion = FusionConfig(method="bounded", candidates=10)
    return searcher


def test_the_default_fusion_is_bounded() -> None:
    assert Settings().fusion == "bounded" and FusionConfig().method == "bounded"


def test_a_document_scores_the_same_whatever_else_the_query_returned(hybrid: HybridSearcher) -> None:
    for query in QUERIES:
        seen: dict[str, float] = {}
        for k, offset in ((5, 0), (50, 0), (5, 10), (50, 10)):
            for flt in (None, {"team": "t1"}, {"team": {"$in": ["t2", "t3"]}}):
                shown = view(k, offset)
                for hit in hybrid.search(query, k=shown.depth, filter=flt, arrange=Pager.over(hybrid.store, shown)):
                    assert 0.0 <= hit.score <= 1.0
                    if hit.id in seen:
                        assert hit.score == pytest.approx(seen[hit.id], abs=1e-6), (query, k, flt, hit.id)
                    seen[hit.id] = hit.score
        assert len(seen) > 10  # documents past one list's depth of 10 were compared too


def test_min_max_fusion_scores_depend_on_the_other_hits(hybrid: HybridSearcher) -> None:
    # What `bounded` fixes: with `convex` a document's score moves with the other hits.
    hybrid.fusion = FusionConfig(method="convex", candidates=10)
    moved = 0
    for query in QUERIES:
        alone = {h.id: h.score for h in hybrid.search(query, k=50)}
        for hit in hybrid.search(query, k=50, filter={"team": "t1"}):
            moved += hit.id in alone and abs(hit.score - alone[hit.id]) > 1e-3
    assert moved > 0


def test_the_score_is_the_document_s_own_cosine_and_bm25(hybrid: HybridSearcher) -> None:
    query = "wind earth fire tree"
    terms = hybrid.keyword.analyzer.query_terms(query)
    vector = hybrid.dense.encoder.encode([query])[0]
    bound = hybrid.keyword.bound(terms)
    rows = VectorRows(hybrid.store, hybrid.dense.index.space, hybrid.dense.index.dim)
    for hit in hybrid.search(query, k=30):
        ids = hybrid.store.document_chunks([hit.chunk_id])[hit.chunk_id]
        _, vectors = rows.fetch(ids)
        cosines = (vectors @ vector).tolist()
        found = dict(hybrid.keyword.search(terms, len(ids), np.array(sorted(ids), dtype=np.int64)))
        expected = bounded(max(cosines), max(found.values(), default=0.0), bound, 0.5)
        assert hit.score == pytest.approx(expected, abs=1e-5), hit.id


def test_only_candidates_that_can_reach_the_top_are_read_and_the_top_is_the_same(hybrid: HybridSearcher) -> None:
    hybrid.fusion = FusionConfig(method="bounded", candidates=20)
    pruned_somewhere = False
    for query in QUERIES:
        terms = hybrid.keyword.analyzer.query_terms(query)
        vector = hybrid.dense.encoder.encode([query])[0]
        plan = RequestPlan(hybrid.dense, None, None)
        dense, ranked = hybrid.dense.rank(vector, 20, None), hybrid._keyword(terms, 20, plan)
        own = Query(hybrid.store, hybrid.keyword, terms, vector, hybrid.dense.index)
        bound = hybrid.keyword.bound(terms)
        cosine, bm25 = {h.id: h.score for h in dense}, {h.id: h.score for h in ranked}
        signals = own_signals(own, [h for h in ranked if h.id not in cosine], [h for h in dense if h.id not in bm25])
        every = {
            d: bounded(cosine.get(d, signals.cosine.get(d, 0.0)), bm25.get(d, signals.bm25.get(d, 0.0)), bound, 0.5)
            for d in cosine.keys() | bm25.keys()
        }
        for k in (1, 5, 10):
            scores = top_scores(own, dense, ranked, 20, k, 0.5)
            best = sorted(every, key=lambda d: (-round(every[d], 9), d))[:k]
            assert sorted(scores, key=lambda d: (-round(scores[d], 9), d))[:k] == best, (query, k)
            assert all(scores[d] == pytest.approx(every[d]) for d in scores)  # the same scores, not bounds
            pruned_somewhere |= len(scores) < len(every)
    assert pruned_somewhere  # candidates that could not reach the top were not read


def test_the_bm25_bound_is_above_every_chunk_s_score(hybrid: HybridSearcher) -> None:
    for query in QUERIES:
        terms = hybrid.keyword.analyzer.query_terms(query)
        bound = hybrid.keyword.bound(terms)
        found = hybrid.keyword.search(terms, 1000)
        assert found and all(score < bound for _, score in found)
        # A saturated single-term chunk comes close: the bound is tight, not merely large.
        if len(set(terms)) == 1:
            assert max(score for _, score in found) > 0.5 * bound
    assert hybrid.keyword.bound([]) == 0.0
    assert math.isclose(
        hybrid.keyword.bound(["zzqx"]), 2.2 * math.log(1 + (hybrid.keyword.open().searcher().num_docs + 0.5) / 0.5)
    )


def test_bounded_fusion() -> None:
    assert bounded(0.8, 5.0, 10.0, 0.5) == pytest.approx(0.65)
    assert bounded(-0.3, 0.0, 10.0, 0.5) == 0.0  # a negative cosine counts as nothing, never below 0
    assert bounded(0.4, 3.0, 0.0, 0.5) == pytest.approx(0.2)  # no query term: the cosine alone
    assert bounded(1.0, 20.0, 10.0, 0.25) == pytest.approx(1.0)
