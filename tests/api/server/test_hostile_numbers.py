"""The hostile battery's numbers (issue 21): 64-bit integers and float64 values in metadata are
stored and found exactly through the API, by narrow filters (answered from the metadata index)
and broad ones (checked on results), on SQLite and PostgreSQL; filter values beyond 64 bits are a
422 naming the field."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from api.server.app import create_app
from search.query.searcher import Searcher
from search.settings import Settings
from search.storage.records import DocumentIn

# Each hostile value beside a decoy a double (or 15 digits) cannot tell from it.
HOSTILE: dict[str, Any] = {"odd": 2**53 + 1, "max": 2**63 - 1, "min": -(2**63), "frac": 0.5110627055689232}
DECOYS: dict[str, Any] = {"even": 2**53, "p63": 2.0**63, "min1": -(2**63) + 1, "frac15": 0.511062705568923}
WORDS = ["cat", "dog", "gene", "star", "tree", "fire", "water", "moon"]


@pytest.fixture
def numbers_url(settings: Settings, database_url: str, start_server: Callable[[FastAPI], str]) -> str:
    """A server over eight documents, each holding one of HOSTILE or DECOYS as `n`."""
    from indexer.write.pipeline import open_indexer

    live = settings.model_copy(update={"database_url": database_url})
    indexer = open_indexer(live)
    values = {**HOSTILE, **DECOYS}
    indexer.run([DocumentIn(ext, f"{WORDS[i]} text", ext, {"n": v}) for i, (ext, v) in enumerate(values.items())])
    indexer.store.close()
    return start_server(create_app(live))


FILTERS: list[tuple[Any, set[str]]] = [
    *((value, {ext}) for ext, value in HOSTILE.items()),
    *((value, {ext}) for ext, value in DECOYS.items()),
    ({"$in": list(HOSTILE.values())}, set(HOSTILE)),
    ({"$gt": 2.0**53}, {"odd", "max", "p63"}),
    ({"$gte": 2**63 - 1}, {"max", "p63"}),
    ({"$lt": 2.0**63}, set(HOSTILE) | set(DECOYS) - {"p63"}),
    ({"$lte": -(2**63)}, {"min"}),
    ({"$gt": 0.511062705568923, "$lt": 1}, {"frac"}),
    ({"$lt": 0.5110627055689232, "$gt": 0}, {"frac15"}),
    (2.0**53, {"even"}),
    (float(2**63 - 1), {"p63"}),  # the double nearest 2**63 - 1 is 2**63
]


def _ids(response: httpx.Response) -> set[str]:
    assert response.status_code == 200, response.text
    return {hit["id"] for hit in response.json()["results"]}


@pytest.mark.parametrize("plan", ["as-planned", "all-broad", "all-narrow"])
def test_hostile_numbers_are_found_exactly_by_every_plan(
    numbers_url: str, monkeypatch: pytest.MonkeyPatch, plan: str
) -> None:
    # As planned, a filter matching one of the eight documents is narrow (answered from the metadata
    # index) and one matching two or more is broad (checked on results); the server runs in this
    # process, so the planner's answer can also be forced one way for every filter.
    if plan != "as-planned":
        share = 1.0 if plan == "all-broad" else None
        monkeypatch.setattr(Searcher, "broad_share", lambda self, check: share)
    checked: list[int] = []
    rank_checked = Searcher.rank_checked
    monkeypatch.setattr(Searcher, "rank_checked", lambda *a: checked.append(1) or rank_checked(*a))
    with httpx.Client(base_url=numbers_url, timeout=30) as client:
        for condition, expected in FILTERS:
            body = {"query": "text", "top_k": 10, "filter": {"n": condition}}
            assert _ids(client.post("/search", json=body)) == expected, condition
            params = {"q": "text", "k": 10, "filter": json.dumps({"n": condition})}
            assert _ids(client.get("/search", params=params)) == expected, condition
        searches = 2 * len(FILTERS)  # each through POST and GET
        if plan == "as-planned":
            assert 0 < len(checked) < searches, "both plans were taken"
        else:
            assert len(checked) == (searches if plan == "all-broad" else 0)
        stored = client.get("/documents/max").json()["metadata"]["n"]
        assert type(stored) is int and stored == 2**63 - 1


@pytest.mark.parametrize(
    "condition",
    [2**63, -(2**63) - 1, {"$gt": 2**64}, {"$in": [1, 2**63]}, 10**30],
)
def test_filter_values_beyond_64_bits_are_a_422_naming_the_field(base_url: str, condition: Any) -> None:
    with httpx.Client(base_url=base_url, timeout=30) as client:
        posted = client.post("/search", json={"query": "cat", "filter": {"n": condition}})
        got = client.get("/search", params={"q": "cat", "filter": json.dumps({"n": condition})})
        for response in (posted, got):
            assert response.status_code == 422, response.text
            detail = response.json()["detail"]
            assert "filter field 'n'" in detail and "64-bit integer range" in detail, detail
