"""Paging, sorting and facets (search/query/paging.py): the rules on their own, then on SQLite and
PostgreSQL through HybridSearcher in every mode, with and without a filter."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import pytest

from indexer.write.pipeline import open_indexer
from search.components import open_hybrid
from search.query.hybrid import HybridSearcher
from search.query.paging import (
    FACET_VALUES,
    MAX_FACETS,
    SORT_CANDIDATES,
    FacetCount,
    Pager,
    SortKey,
    count_values,
    parse_sort,
    sort_order,
    view,
)
from search.settings import Settings
from search.storage.records import DocumentIn

WORDS = ["cat", "dog", "bird", "fish", "tree", "sun", "moon", "star", "water", "fire", "earth", "wind", "gene", "cell"]
TEAMS = ["hr", "eng", "ops", None]
MODES = ("dense", "keyword", "hybrid")


def _meta(i: int) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    if TEAMS[i % 4] is not None:
        meta["team"] = TEAMS[i % 4]
    if i % 5:  # every fifth has no year; a few years repeat, so ties are common
        meta["year"] = 2000 + i % 7 if i % 3 else float(2000 + i % 7)
    return meta


def _corpus(n: int = 60) -> list[DocumentIn]:
    rng = random.Random(5)
    return [DocumentIn(f"d{i}", " ".join(rng.choices(WORDS, k=30)), f"doc {i}", _meta(i)) for i in range(n)]


@pytest.fixture
def hybrid(settings: Settings, database_url: str) -> HybridSearcher:
    live = settings.model_copy(update={"database_url": database_url})
    indexer = open_indexer(live)
    indexer.run(_corpus())
    indexer.store.close()
    return open_hybrid(live)


def _ids(hybrid: HybridSearcher, query: str, mode: str, filter: Any = None, **shown: Any) -> list[str]:
    pager = Pager.over(hybrid.store, view(**shown))
    return [h.id for h in hybrid.search(query, pager.shown.depth, filter, mode, arrange=pager)]


def test_sort_order_puts_numbers_then_booleans_then_strings_and_missing_last() -> None:
    metas: list[dict[str, Any]] = [
        {"y": "b"},
        {},
        {"y": 2},
        {"y": True},
        {"y": 1.5},
        {"y": None},
        {"y": "a"},
        {"y": 2.0},  # equal to 2: relevance (its place here) breaks the tie
        {"y": float("nan")},
        {"y": False},
        {"y": [1]},
        {"y": 10**30},  # exact: not rounded to a float
    ]
    assert sort_order(metas, SortKey("y")) == [4, 2, 7, 11, 9, 3, 6, 0, 1, 5, 8, 10]
    # Descending is the reverse of ascending but for ties (relevance order) and the missing (last).
    assert sort_order(metas, SortKey("y", descending=True)) == [0, 6, 3, 9, 11, 2, 7, 4, 1, 5, 8, 10]


def test_facet_counts_merge_equal_numbers_but_not_booleans_and_are_bounded() -> None:
    metas: list[dict[str, Any]] = [{"v": 1}, {"v": 1.0}, {"v": True}, {"v": "1"}, {"v": [1]}, {}, {"v": "1"}]
    assert count_values(metas, "v") == [FacetCount(1, 2), FacetCount("1", 2), FacetCount(True, 1)]
    many = [{"v": f"x{i:03}"} for i in range(50)] + [{"v": "x049"}]
    counted = count_values(many, "v")
    assert len(counted) == FACET_VALUES and counted[0] == FacetCount("x049", 2) and counted[1].value == "x000"


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"top_k": 10, "offset": -1}, "offset must be 0 or more"),
        ({"top_k": 10, "offset": 9991, "max_hits": 10_000}, "offset 9991 + top_k 10 = 10001 is past the limit"),
        ({"top_k": 10, "offset": SORT_CANDIDATES, "sort": "year"}, "sort and facets look at the 1000 most relevant"),
        ({"top_k": 10, "offset": SORT_CANDIDATES, "facets": ["team"]}, "offset 1000"),
        ({"top_k": 10, "facets": ["a"] * (MAX_FACETS + 1)}, f"at most {MAX_FACETS} are allowed"),
        ({"top_k": 10, "facets": ['a"b']}, "facets field 'a\"b'"),
        ({"top_k": 10, "sort": "$or"}, "sort field '$or': top-level operators"),
        ({"top_k": 10, "sort": {"field": "year", "order": "up"}}, 'sort order must be "asc" or "desc"'),
        ({"top_k": 10, "sort": {"name": "year"}}, 'sort must be {"field"'),
        ({"top_k": 10, "sort": {"field": 3}}, "sort field names must be non-empty strings"),
    ],
)
def test_bad_views_are_refused_by_name(kwargs: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValueError, match=None) as caught:
        view(**kwargs)
    assert fragment in str(caught.value)


def test_sort_forms() -> None:
    assert parse_sort("-year") == SortKey("year", True) == parse_sort({"field": "year", "order": "desc"})
    assert parse_sort("year") == SortKey("year") == parse_sort({"field": "year"})
    assert view(10, 990, facets=["team"]).depth == SORT_CANDIDATES and view(10, 30).depth == 40


@pytest.mark.parametrize("filter", [None, {"team": {"$in": ["hr", "eng"]}}])
def test_pages_are_stable_in_every_mode(hybrid: HybridSearcher, filter: Any) -> None:
    for mode in MODES:
        whole = _ids(hybrid, "gene cat", mode, filter, top_k=20)
        assert len(whole) == 20, mode
        assert _ids(hybrid, "gene cat", mode, filter, top_k=10, offset=10) == whole[10:], mode
        assert _ids(hybrid, "gene cat", mode, filter, top_k=7, offset=13) == whole[13:], mode
        by_year = _ids(hybrid, "gene cat", mode, filter, top_k=20, sort="-year")
        assert _ids(hybrid, "gene cat", mode, filter, top_k=10, offset=10, sort="-year") == by_year[10:], mode


@pytest.mark.parametrize("filter", [None, {"team": "hr"}])
def test_sort_puts_missing_last_and_ties_in_relevance_order(hybrid: HybridSearcher, filter: Any) -> None:
    meta = {d.external_id: d.metadata for d in _corpus()}
    for mode in MODES:
        relevance = _ids(hybrid, "gene cat", mode, filter, top_k=SORT_CANDIDATES)
        rank = {doc: i for i, doc in enumerate(relevance)}
        for order in ("asc", "desc"):
            got = _ids(hybrid, "gene cat", mode, filter, top_k=100, sort={"field": "year", "order": order})
            assert sorted(got) == sorted(relevance), (mode, order)  # the same candidates, reordered
            dated = [d for d in got if "year" in meta[d]]
            assert got[len(dated) :] == sorted(set(got) - set(dated), key=rank.__getitem__)  # missing last
            sign = -1 if order == "desc" else 1
            assert dated == sorted(dated, key=lambda d: (sign * meta[d]["year"], rank[d])), (mode, order)


@pytest.mark.parametrize("filter", [None, {"year": {"$gte": 2003}}])
def test_facets_count_the_candidates(hybrid: HybridSearcher, filter: Any) -> None:
    docs = {d.external_id: d for d in _corpus()}
    for mode in MODES:
        shown = view(5, facets=["team", "year", "absent"])
        pager = Pager.over(hybrid.store, shown)
        hybrid.search("gene", shown.depth, filter, mode, arrange=pager)
        # Every document matching the query and the filter is a candidate here (60 < SORT_CANDIDATES).
        matching = [
            d
            for d in docs.values()
            if (filter is None or d.metadata.get("year", 0) >= 2003) and (mode != "keyword" or "gene" in d.text.split())
        ]
        everything = _ids(hybrid, "gene", mode, filter, top_k=SORT_CANDIDATES)
        assert sorted(everything) == sorted(d.external_id for d in matching)
        for name in ("team", "year"):
            counts = Counter(d.metadata[name] for d in matching if name in d.metadata)
            want = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
            assert [(f.value, f.count) for f in pager.facets[0][name]] == want, (mode, name)
        assert pager.facets[0]["absent"] == []
