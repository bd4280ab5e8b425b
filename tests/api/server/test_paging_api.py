"""Paging, sort and facets through POST and GET /search and the Python clients, on SQLite and PostgreSQL:
pages that do not depend on the page size, 422s that name `offset`, `sort` or `facets`."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from api.client import AsyncSemsearchClient, InvalidRequestError, SemsearchClient
from indexer.write.pipeline import open_indexer
from search.settings import Settings
from search.storage.records import DocumentIn
from tests.api.conftest import serve

WORDS = ["cat", "dog", "gene", "cell", "moon", "star", "tree", "fire"]
TEAMS = ["hr", "eng", "hr", "ops", None]


def _doc(i: int) -> DocumentIn:
    meta: dict[str, Any] = {"n": i}
    if TEAMS[i % 5]:
        meta["team"] = TEAMS[i % 5]
    if i % 4:
        meta["year"] = 2010 + i % 6
    text = " ".join(WORDS[(i * k + i) % len(WORDS)] for k in range(9))
    return DocumentIn(f"d{i}", text, f"doc {i}", meta)


DOCS = [_doc(i) for i in range(40)]
META = {d.external_id: d.metadata for d in DOCS}


@pytest.fixture
def paged_url(settings: Settings, database_url: str) -> Iterator[str]:
    live = settings.model_copy(update={"database_url": database_url, "search_max_hits": 2000})
    indexer = open_indexer(live)
    indexer.run(DOCS)
    indexer.store.close()
    yield from serve(live)


def _post(url: str, **body: Any) -> dict[str, Any]:
    response = httpx.post(f"{url}/search", json={"query": "gene cat", **body}, timeout=60)
    assert response.status_code == 200, response.text
    return dict(response.json())


def _ids(answer: dict[str, Any]) -> list[str]:
    return [hit["id"] for hit in answer["results"]]


@pytest.mark.parametrize("mode", ["dense", "keyword", "hybrid"])
def test_page_two_is_items_eleven_to_twenty_with_and_without_a_filter(paged_url: str, mode: str) -> None:
    for filter in (None, {"team": {"$in": ["hr", "ops"]}}):
        whole = _ids(_post(paged_url, top_k=20, mode=mode, filter=filter))
        assert len(whole) == 20
        assert _ids(_post(paged_url, top_k=10, offset=10, mode=mode, filter=filter)) == whole[10:]
        params: dict[str, Any] = {"q": "gene cat", "k": 10, "offset": 10, "mode": mode}
        if filter:
            params["filter"] = json.dumps(filter)
        got = httpx.get(f"{paged_url}/search", params=params, timeout=60).json()
        assert _ids(got) == whole[10:]
        sorted_whole = _ids(_post(paged_url, top_k=20, mode=mode, filter=filter, sort="-year"))
        assert _ids(_post(paged_url, top_k=10, offset=10, mode=mode, filter=filter, sort="-year")) == sorted_whole[10:]
    assert _post(paged_url, top_k=10, offset=1990, mode=mode)["results"] == []  # past the matches: an empty page


@pytest.mark.parametrize("order", ["asc", "desc"])
def test_sort_by_a_field_missing_values_last_ties_by_relevance(paged_url: str, order: str) -> None:
    relevance = _ids(_post(paged_url, top_k=40, mode="hybrid"))
    rank = {doc: i for i, doc in enumerate(relevance)}
    got = _ids(_post(paged_url, top_k=40, mode="hybrid", sort={"field": "year", "order": order}))
    dated = [d for d in got if "year" in META[d]]
    assert len(dated) == 30 and set(got[30:]) == {d for d in META if "year" not in META[d]}
    assert got[30:] == sorted(got[30:], key=rank.__getitem__)
    sign = -1 if order == "desc" else 1
    assert dated == sorted(dated, key=lambda d: (sign * META[d]["year"], rank[d]))
    short = "-year" if order == "desc" else "year"
    assert (
        _ids(httpx.get(f"{paged_url}/search", params={"q": "gene cat", "k": 40, "sort": short}, timeout=60).json())
        == got
    )


def test_facets_count_every_matching_document(paged_url: str) -> None:
    answer = _post(paged_url, top_k=3, mode="dense", filter={"year": {"$gte": 2012}}, facets=["team", "year"])
    matching = [m for m in META.values() if m.get("year", 0) >= 2012]
    for name in ("team", "year"):
        counts = Counter(m[name] for m in matching if name in m)
        want = [{"value": v, "count": c} for v, c in sorted(counts.items(), key=lambda item: (-item[1], item[0]))]
        assert answer["facets"][name] == want
    got = httpx.get(f"{paged_url}/search", params=[("q", "gene"), ("facets", "team"), ("facets", "n")], timeout=60)
    facets = got.json()["facets"]
    assert facets["team"] == [{"value": "hr", "count": 16}, {"value": "eng", "count": 8}, {"value": "ops", "count": 8}]
    assert len(facets["n"]) == 20 and all(f["count"] == 1 for f in facets["n"])  # 40 values, the first 20 shown
    assert _post(paged_url)["facets"] == {}


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"offset": 1995}, "offset 1995 + top_k 10 = 2005 is past the limit of 2000"),
        ({"offset": 995, "sort": "year"}, "offset 995 + top_k 10 = 1005 is past the limit of 1000: sort and facets"),
        ({"offset": 995, "facets": ["team"]}, "offset 995"),
        ({"sort": {"field": "year", "order": "newest"}}, 'sort order must be "asc" or "desc"'),
        ({"sort": '-a"b'}, "sort field 'a\"b'"),
        ({"facets": ["a", "b", "c", "d", "e", "f"]}, "facets names 6 fields; at most 5"),
        ({"facets": [""]}, "facets field names must be non-empty strings"),
    ],
)
def test_out_of_bounds_paging_is_a_422_naming_it(paged_url: str, body: dict[str, Any], fragment: str) -> None:
    response = httpx.post(f"{paged_url}/search", json={"query": "cat", **body}, timeout=60)
    assert response.status_code == 422 and fragment in response.json()["detail"], response.text
    negative = httpx.post(f"{paged_url}/search", json={"query": "cat", "offset": -1}, timeout=60)
    assert negative.status_code == 422 and negative.json()["detail"][0]["loc"] == ["body", "offset"]
    params = {"q": "cat", "offset": "1995"}
    got = httpx.get(f"{paged_url}/search", params=params, timeout=60)
    assert got.status_code == 422 and "offset 1995" in got.json()["detail"]


def test_the_clients_send_offset_sort_and_facets(paged_url: str) -> None:
    with SemsearchClient(paged_url) as client:
        whole = client.search("gene cat", top_k=20, sort={"field": "year", "order": "desc"})
        page = client.search("gene cat", top_k=10, offset=10, sort="-year", facets=["team"])
        assert [h.id for h in page.results] == [h.id for h in whole.results][10:]
        assert whole.facets == {} and (page.facets["team"][0].value, page.facets["team"][0].count) == ("hr", 16)
        with pytest.raises(InvalidRequestError, match="offset 1995"):
            client.search("cat", offset=1995)

    async def asynchronous() -> list[str]:
        async with AsyncSemsearchClient(paged_url) as client:
            return [h.id for h in (await client.search("gene cat", top_k=10, offset=10, sort="-year")).results]

    assert asyncio.run(asynchronous()) == [h.id for h in whole.results][10:]
