"""`POST /search` with a query vector instead of a text, and `mmr`, over real HTTP against a real server
on the `hybrid_url` corpus of conftest.py (30 "loud" gene documents much alike, 12 "quiet" ones...)."""

from __future__ import annotations

import httpx
import pytest

QUERY = "gene cat tree"


def _post(url: str, path: str = "/search", **body: object) -> httpx.Response:
    return httpx.post(f"{url}{path}", json=body, timeout=60)


def _vector(url: str, text: str) -> list[float]:
    response = _post(url, "/v1/embeddings", input=[text], encoding_format="float")
    assert response.status_code == 200, response.text
    return list(response.json()["data"][0]["embedding"])


def test_a_vector_finds_what_its_text_finds(hybrid_url: str) -> None:
    by_text = _post(hybrid_url, query=QUERY, mode="dense", top_k=8).json()["results"]
    for body in ({}, {"mode": "dense"}):  # dense is the default with a vector
        by_vector = _post(hybrid_url, vector=_vector(hybrid_url, QUERY), top_k=8, **body).json()["results"]
        assert [h["id"] for h in by_vector] == [h["id"] for h in by_text]
        assert [h["score"] for h in by_vector] == pytest.approx([h["score"] for h in by_text], abs=1e-5)
    # Any length: it is normalised, so the scores stay cosines.
    longer = [2.5 * x for x in _vector(hybrid_url, QUERY)]
    scaled = _post(hybrid_url, vector=longer, top_k=8).json()["results"]
    assert [h["score"] for h in scaled] == pytest.approx([h["score"] for h in by_text], abs=1e-5)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"query": "cat", "vector": [0.1] * 32}, "exactly one of them"),
        ({"top_k": 3}, "either 'query' (text) or 'vector'"),
        ({"vector": [0.1] * 32, "mode": "hybrid"}, "mode 'hybrid' needs a query text"),
        ({"vector": [0.1] * 32, "mode": "keyword"}, "a 'vector' searches in dense mode only"),
        ({"vector": [0.1] * 5}, "vector has 5 numbers, but the serving model"),
        ({"vector": [0.0] * 32}, "vector is all zeros"),
        ({"vector": []}, "vector"),
        ({"query": "cat", "mmr": {"fetch_k": 5}, "top_k": 10}, "fetch_k (5) must be at least top_k (10)"),
        ({"query": "cat", "mmr": {"lambda": 1.5}}, '"loc":["body","mmr","lambda"]'),
        ({"query": "cat", "mmr": {"fetch_k": 1001}}, '"loc":["body","mmr","fetch_k"]'),
        ({"query": "cat", "mmr": {"lamda": 0.3}}, '"loc":["body","mmr","lamda"]'),
    ],
)
def test_a_bad_vector_or_mmr_is_a_422_naming_it(hybrid_url: str, body: dict[str, object], reason: str) -> None:
    response = _post(hybrid_url, **body)
    assert response.status_code == 422, response.text
    assert reason in response.text


def test_a_vector_of_wrong_dimension_names_the_model_dimension(hybrid_url: str) -> None:
    dim = len(_vector(hybrid_url, "cat"))
    response = _post(hybrid_url, vector=[0.1] * (dim + 1))
    assert response.status_code == 422
    assert f"makes {dim}-dimensional vectors" in response.json()["detail"]


def test_a_vector_that_is_not_finite_is_a_422(hybrid_url: str) -> None:
    for raw in ("NaN", "Infinity", "-Infinity", "1e400"):
        body = '{"vector": [' + ", ".join(["0.1"] * 31 + [raw]) + "]}"
        response = httpx.post(
            f"{hybrid_url}/search", content=body, headers={"Content-Type": "application/json"}, timeout=60
        )
        assert response.status_code == 422, (raw, response.text)
        assert "vector" in response.text


@pytest.mark.parametrize("mode", ["dense", "keyword", "hybrid"])
def test_mmr_in_every_mode(hybrid_url: str, mode: str) -> None:
    plain = _post(hybrid_url, query="gene", mode=mode, top_k=5).json()["results"]
    same = _post(hybrid_url, query="gene", mode=mode, top_k=5, mmr={"lambda": 1.0, "fetch_k": 40}).json()["results"]
    assert [h["id"] for h in same] == [h["id"] for h in plain]
    diverse = _post(hybrid_url, query="gene", mode=mode, top_k=5, mmr={"lambda": 0.0, "fetch_k": 40})
    assert diverse.status_code == 200, diverse.text
    hits = diverse.json()["results"]
    assert len(hits) == 5 and hits[0]["id"] == plain[0]["id"]
    assert [h["id"] for h in hits] != [h["id"] for h in plain]


def test_mmr_with_a_vector_and_in_a_batch(hybrid_url: str) -> None:
    vector = _vector(hybrid_url, "gene")
    by_vector = _post(hybrid_url, vector=vector, top_k=4, mmr={"lambda": 0.0, "fetch_k": 30}).json()["results"]
    by_text = _post(hybrid_url, query="gene", mode="dense", top_k=4, mmr={"lambda": 0.0, "fetch_k": 30})
    assert [h["id"] for h in by_vector] == [h["id"] for h in by_text.json()["results"]]
    batch = _post(
        hybrid_url, "/search/batch", queries=["gene", "cat"], mode="dense", top_k=4, mmr={"lambda": 0.0, "fetch_k": 30}
    )
    assert batch.status_code == 200, batch.text
    assert [h["id"] for h in batch.json()["results"][0]] == [h["id"] for h in by_text.json()["results"]]
    # The candidates count against the hit budget (10,000 by default): 20 queries x 1000.
    over = _post(hybrid_url, "/search/batch", queries=["gene"] * 20, top_k=5, mmr={"fetch_k": 1000})
    assert over.status_code == 422 and "SEMSEARCH_SEARCH_MAX_HITS" in over.text
    short = _post(hybrid_url, "/search/batch", queries=["gene"], top_k=30, mmr={"fetch_k": 20})
    assert short.status_code == 422 and "fetch_k (20) must be at least top_k (30)" in short.text
