"""No field is silently ignored: a JSON body field or query parameter a route does not know is a 422
naming it (a misspelt or unsupported field, such as `offset`, `sort` and `mmr` before the routes took them, was
answered 200 as if it were not there)."""

from __future__ import annotations

from typing import Any

import httpx

from api.server.schemas import BatchSearchRequest, EmbeddingsRequest, SearchRequest

DOC = {"title": "T", "text": "a text", "metadata": {"kind": "x"}}


def _names(response: httpx.Response) -> list[tuple[Any, str]]:
    assert response.status_code == 422, response.text
    return [(tuple(e["loc"]), e["msg"]) for e in response.json()["detail"] if e["type"] == "extra_forbidden"]


def test_unknown_body_fields_are_a_422_naming_them(base_url: str) -> None:
    with httpx.Client(base_url=base_url, timeout=30) as client:
        for field, value in (("ofset", 5), ("order_by", "date"), ("diversity", True)):
            names = _names(client.post("/search", json={"query": "cat", field: value}))
            assert names == [(("body", field), f"unknown field {field!r}: this request has no such field")]
        batch = client.post("/search/batch", json={"queries": ["cat"], "topk": 3})
        assert [loc for loc, _ in _names(batch)] == [("body", "topk")]
        put = client.put("/documents/new", json={**DOC, "tags": ["a"]})
        assert [loc for loc, _ in _names(put)] == [("body", "tags")]
        post = client.post("/documents", json=[{**DOC, "id": "a"}, {**DOC, "id": "b", "meta": {}}])
        assert [loc for loc, _ in _names(post)] == [("body", 1, "meta")]
        embed = client.post("/v1/embeddings", json={"input": "cat", "temperature": 0})
        # /v1 answers in OpenAI's error shape: the field is its `param`.
        assert embed.status_code == 422 and embed.json()["error"]["param"] == "temperature", embed.text
        assert client.get("/documents/new").status_code == 404  # nothing refused was written
        # What the routes do know still passes.
        known = {"query": "cat", "top_k": 2, "filter": {}, "mode": "dense"}
        assert client.post("/search", json=known).status_code == 200
        served = client.get("/v1/models").json()["data"][0]["id"]
        assert client.post("/v1/embeddings", json={"input": "cat", "model": served, "user": "u"}).status_code == 200


def test_unknown_query_parameters_are_a_422_naming_them(base_url: str) -> None:
    with httpx.Client(base_url=base_url, timeout=30) as client:
        unknown = client.get("/search", params={"q": "cat", "k": 2, "page": 10})
        assert unknown.status_code == 422
        assert unknown.json()["detail"] == (
            "unknown query parameter 'page'; /search takes facets, filter, k, min_score, mode, offset, q, sort"
        )
        assert "'top_k'" in client.get("/search", params={"q": "cat", "top_k": 2}).json()["detail"]
        assert "'sort'" in client.get("/documents", params={"limit": 2, "sort": "id"}).json()["detail"]
        assert client.get("/stats", params={"verbose": 1}).status_code == 422
        assert client.get("/search", params={"q": "cat", "k": 2, "mode": "keyword"}).status_code == 200
        assert client.get("/documents", params={"offset": 0, "limit": 2}).status_code == 200
        assert client.get("/", params={"q": "cat"}).status_code == 200  # the page reads its own query string


def test_the_schema_says_request_bodies_take_no_other_fields() -> None:
    for model in (SearchRequest, BatchSearchRequest, EmbeddingsRequest):
        assert model.model_json_schema().get("additionalProperties") is False, model.__name__
