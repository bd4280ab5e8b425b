"""Hybrid retrieval on SQLite and PostgreSQL: fusion, modes, filters inside both retrievers, deletes,
with the tiny BERT (its vectors are random, so the keyword side is what makes rare tokens win)."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from indexer.write.pipeline import open_indexer
from search.components import open_hybrid
from search.dense.catalog import Serving
from search.filters import parse_filter
from search.query.fusion import convex, min_max, rrf
from search.query.hits import FusionConfig
from search.query.hybrid import HybridSearcher
from search.query.planning import RequestPlan
from search.settings import Settings
from search.storage.records import DocumentIn

WORDS = ["cat", "dog", "bird", "fish", "tree", "sun", "moon", "star", "water", "fire", "earth", "wind", "gene", "cell"]


def _corpus(n: int = 60) -> list[DocumentIn]:
    rng = random.Random(3)
    docs = [
        DocumentIn(f"d{i}", " ".join(rng.choices(WORDS, k=30)), f"doc {i}", {"kind": "even" if i % 2 else "odd"})
        for i in range(n)
    ]
    docs.append(DocumentIn("code", "the part number ZQX-4471 fits the cat door", "Parts", {"kind": "part"}))
    docs.append(DocumentIn("zh", "我爱北京大学的图书馆和猫", "中文", {"kind": "zh"}))
    return docs


@pytest.fixture
def hybrid(settings: Settings, database_url: str) -> HybridSearcher:
    live = settings.model_copy(update={"database_url": database_url})
    indexer = open_indexer(live)
    indexer.run(_corpus())  # its publish brings the keyword index up to date (the hybrid hook)
    indexer.store.close()
    return open_hybrid(live)


def test_rrf_and_convex_fusion() -> None:
    dense = [("a", 0.9), ("b", 0.8), ("c", 0.1)]
    keyword = [("c", 12.0), ("a", 3.0)]
    fused = rrf([dense, keyword], k=60)
    assert fused["a"] == pytest.approx(1 / 61 + 1 / 62)
    assert fused["c"] == pytest.approx(1 / 63 + 1 / 61) and fused["b"] == pytest.approx(1 / 62)
    assert min_max(keyword) == {"c": 1.0, "a": 0.0} and min_max([("x", 2.0)]) == {"x": 1.0}
    mixed = convex([dense, keyword], [0.25, 0.75])
    assert mixed["c"] == pytest.approx(0.75) and mixed["a"] == pytest.approx(0.25)
    assert mixed["b"] == pytest.approx(0.25 * 0.7 / 0.8)
    with pytest.raises(ValueError):
        rrf([dense], k=0)


def test_a_rare_token_wins_in_keyword_and_hybrid_mode(hybrid: HybridSearcher) -> None:
    for mode in ("keyword", "hybrid"):
        hits = hybrid.search("ZQX-4471", k=5, mode=mode)
        assert hits[0].id == "code", mode
        assert hits[0].matched_terms == ["ZQX", "4471"]
        assert hits[0].keyword is not None and hits[0].keyword.rank == 1


def test_a_chinese_word_finds_its_document(hybrid: HybridSearcher) -> None:
    for query in ("北京", "图书馆", "猫"):
        for mode in ("keyword", "hybrid"):
            hits = hybrid.search(query, k=5, mode=mode)
            assert hits[0].id == "zh", (query, mode)
            assert hits[0].matched_terms == [query]  # overlapping bigrams join into the word


def test_each_hit_says_what_each_retriever_said(hybrid: HybridSearcher) -> None:
    # The default: half the document's own cosine, half its BM25 over the query's bound.
    both = hybrid.search("cat door part number", k=10)
    top = next(h for h in both if h.id == "code")
    assert top.dense is not None and top.keyword is not None and top.keyword.rank == 1
    bound = hybrid.keyword.bound(hybrid.keyword.analyzer.query_terms("cat door part number"))
    assert top.score == pytest.approx(0.5 * max(top.dense.score, 0.0) + 0.5 * top.keyword.score / bound)
    # convex: dense and keyword scores min-max normalised over each retriever's candidates, then
    # weighted 0.5 each. "code" is the keyword side's best (normalised 1.0).
    hybrid.fusion = FusionConfig(method="convex")
    top = next(h for h in hybrid.search("cat door part number", k=10) if h.id == "code")
    assert top.dense is not None
    dense_all = hybrid.search("cat door part number", k=100, mode="dense")
    low, high = dense_all[-1].score, dense_all[0].score
    assert top.score == pytest.approx(0.5 * (top.dense.score - low) / (high - low) + 0.5)
    hybrid.fusion = FusionConfig(method="rrf", rrf_k=60)
    rrf_top = next(h for h in hybrid.search("cat door part number", k=10) if h.id == "code")
    assert rrf_top.dense is not None and rrf_top.keyword is not None
    assert rrf_top.score == pytest.approx(1 / (60 + rrf_top.dense.rank) + 1 / (60 + rrf_top.keyword.rank))
    dense = hybrid.search("cat door part number", k=10, mode="dense")
    assert all(h.keyword is None and h.dense is not None for h in dense)
    assert [h.score for h in dense] == [h.dense.score for h in dense if h.dense]
    keyword = hybrid.search("cat door part number", k=10, mode="keyword")
    assert all(h.dense is None and h.keyword is not None for h in keyword)
    assert [h.keyword.rank for h in keyword if h.keyword] == list(range(1, len(keyword) + 1))
    with pytest.raises(ValueError, match="mode must be one of hybrid, dense, keyword"):
        hybrid.search("cat", mode="nonsense")


def test_the_page_size_does_not_reshape_the_ranking(hybrid: HybridSearcher) -> None:
    ten = [h.id for h in hybrid.search("gene protein cell", k=10)]
    three = [h.id for h in hybrid.search("gene protein cell", k=3)]
    assert three == ten[:3] and len(set(ten)) == 10


@pytest.mark.parametrize("mode", ["hybrid", "dense", "keyword"])
def test_filters_apply_inside_both_retrievers(hybrid: HybridSearcher, mode: str) -> None:
    # "cat" is everywhere; only one document is of kind "part", one of kind "zh" (which lacks it).
    hits = hybrid.search("cat", k=5, filter={"kind": {"$in": ["part", "zh"]}}, mode=mode)
    expected = {"hybrid": {"code", "zh"}, "dense": {"code", "zh"}, "keyword": {"code"}}[mode]
    assert {h.id for h in hits} == expected
    odd = hybrid.search("cat", k=20, filter={"kind": "odd"}, mode=mode)
    assert len(odd) == 20 and all(h.metadata["kind"] == "odd" for h in odd)


@pytest.mark.parametrize("mode", ["hybrid", "dense", "keyword"])
def test_a_broad_filter_is_checked_on_results_and_answers_as_a_narrow_one(
    hybrid: HybridSearcher, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Half the documents are "odd": checked on over-fetched unfiltered results, so its chunk ids
    # (half the corpus) are never read; forced down the narrow plan, the same answer comes back.
    lookups: list[object] = []
    ids, vectors = hybrid.store.matching_chunk_ids, hybrid.dense.matching_vectors
    monkeypatch.setattr(hybrid.store, "matching_chunk_ids", lambda f: lookups.append(f) or ids(f))
    monkeypatch.setattr(hybrid.dense, "matching_vectors", lambda f, s=None: lookups.append(f) or vectors(f, s))
    query, odd = "cat fish", {"kind": "odd"}
    broad = [(h.id, round(h.score, 5)) for h in hybrid.search(query, k=20, filter=odd, mode=mode)]
    assert lookups == [] and len(broad) == 20
    monkeypatch.setattr(hybrid.dense, "broad_share", lambda f: None)
    narrow = [(h.id, round(h.score, 5)) for h in hybrid.search(query, k=20, filter=odd, mode=mode)]
    # One lookup served both retrievers: the few chunks' ids for the keyword one, their vectors for the dense one.
    assert len(lookups) == 1 and narrow == broad
    assert {h.metadata["kind"] for h in hybrid.search(query, k=20, filter=odd, mode=mode)} == {"odd"}


def test_the_dense_side_looks_again_when_the_keyword_side_looked_in_another_space(
    hybrid: HybridSearcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The API ranks the keyword side before the query is embedded, in what serves then; if a model
    # change swaps the space before the vectors come, the dense side must not score old vectors.
    lookups: list[str] = []
    few = hybrid.dense.matching_vectors
    monkeypatch.setattr(hybrid.dense, "matching_vectors", lambda f, s=None: lookups.append("few") or few(f, s))
    monkeypatch.setattr(hybrid.dense, "broad_share", lambda f: None)
    plan = RequestPlan(hybrid.dense, parse_filter({"kind": "odd"}), None)
    ids = plan.ids()
    assert ids is not None and len(ids) > 0 and lookups == ["few"]
    same = plan.dense_allowed()
    assert same is not None and same.vectors is not None and len(same.ids) == len(ids) and lookups == ["few"]
    plan = RequestPlan(hybrid.dense, parse_filter({"kind": "odd"}), None)
    plan.ids()
    moved = replace(hybrid.dense.index, space="another")
    plan.serving = Serving(hybrid.dense.encoder, moved)
    other = plan.dense_allowed()  # nothing is embedded in that space
    assert other is not None and len(other.ids) == 0 and lookups == ["few", "few", "few"]


@pytest.mark.parametrize("mode", ["hybrid", "dense", "keyword"])
def test_a_stale_broad_estimate_of_a_rare_filter_still_finds_its_matches(
    hybrid: HybridSearcher, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hybrid.dense, "broad_share", lambda f: 0.9)  # as if most documents passed
    hits = hybrid.search("cat", k=5, filter={"kind": {"$in": ["part", "zh"]}}, mode=mode)
    assert {h.id for h in hits} == {"hybrid": {"code", "zh"}, "dense": {"code", "zh"}, "keyword": {"code"}}[mode]


def test_a_deleted_document_leaves_keyword_results_at_once(hybrid: HybridSearcher) -> None:
    assert hybrid.search("ZQX-4471", k=3, mode="keyword")[0].id == "code"
    hybrid.store.delete_documents(["code"])  # no catch-up: the rows decide
    for mode in ("keyword", "hybrid"):
        assert "code" not in [h.id for h in hybrid.search("ZQX-4471", k=10, mode=mode)]


def test_fusion_from_the_settings(settings: Settings) -> None:
    live = settings.model_copy(update={"fusion_weight": 0.0})
    indexer = open_indexer(live)
    indexer.run(_corpus())
    indexer.store.close()
    searcher = open_hybrid(live)
    hybrid = searcher.search("ZQX-4471 cat", k=5)
    keyword = searcher.search("ZQX-4471 cat", k=5, mode="keyword")
    # Weight 0 on dense: the keyword ranking alone decides, BM25 over the query's bound.
    bound = searcher.keyword.bound(searcher.keyword.analyzer.query_terms("ZQX-4471 cat"))
    assert [h.id for h in hybrid] == [h.id for h in keyword]
    assert [h.score for h in hybrid] == pytest.approx([h.score / bound for h in keyword])


@pytest.mark.parametrize("mode", ["hybrid", "dense", "keyword"])
def test_ranking_reads_text_only_for_the_hits_shown(
    hybrid: HybridSearcher, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each retriever ranks 100 candidates; only the 3 shown per query are read whole (text, fields),
    # in one lookup for the whole batch.
    reads: list[int] = []
    real = hybrid.store.chunk_hits
    monkeypatch.setattr(hybrid.store, "chunk_hits", lambda ids: reads.append(len(ids)) or real(ids))
    batch = hybrid.search_many(["cat door", "fish tree", "moon"], k=3, mode=mode)
    assert reads == [9] and [len(hits) for hits in batch] == [3, 3, 3]
    assert all(h.text and h.title for hits in batch for h in hits)


def test_the_keyword_retriever_runs_beside_the_dense_one_only_when_the_search_is_alone(
    hybrid: HybridSearcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    ran_on: list[str] = []
    real = hybrid._keyword
    monkeypatch.setattr(hybrid, "_keyword", lambda *a: ran_on.append(threading.current_thread().name) or real(*a))
    alone = [(h.id, h.score) for h in hybrid.search("cat fish", k=5)]
    assert ran_on[-1].startswith("keyword-retriever")
    hybrid._in_flight += 1  # as if another request were searching: its cores are busy already
    try:
        busy = [(h.id, h.score) for h in hybrid.search("cat fish", k=5)]
    finally:
        hybrid._in_flight -= 1
    assert ran_on[-1] == threading.current_thread().name and busy == alone
    hybrid.search("cat fish", k=5, mode="dense")
    assert len(ran_on) == 2  # dense mode asks no keyword retriever


@pytest.mark.parametrize("flt", [None, {"kind": "odd"}, {"kind": {"$in": ["part", "zh"]}}])
def test_a_keyword_side_ranked_before_the_vectors_gives_the_same_hits(hybrid: HybridSearcher, flt: object) -> None:
    queries = ["cat fish", "gene"]
    serving = hybrid.refresh()
    vectors = serving.encoder.encode(queries)
    whole = hybrid.search_prepared(queries, vectors, 5, flt, "hybrid", serving)
    side = hybrid.rank_keywords(queries, 5, flt)  # what the API ranks while the queries are embedded
    split = hybrid.search_prepared(queries, vectors, 5, flt, "hybrid", serving, side)
    assert [[(h.id, h.score, h.matched_terms) for h in hits] for hits in split] == [
        [(h.id, h.score, h.matched_terms) for h in hits] for hits in whole
    ]
    with pytest.raises(ValueError, match="keyword side"):
        hybrid.search_prepared(queries, vectors, 5, flt, "dense", serving, side)
