"""Hybrid, dense and keyword modes over real HTTP against a real server (issue 11's "must show"), on the
`hybrid_url` corpus of conftest.py: 30 "loud" and 12 "quiet" gene documents, a part number, a Chinese text."""

from __future__ import annotations

import time

import httpx
import pytest


def _search(url: str, query: str, mode: str | None = None, **body: object) -> list[dict[str, object]]:
    payload = {"query": query, **body, **({"mode": mode} if mode else {})}
    response = httpx.post(f"{url}/search", json=payload, timeout=60)
    assert response.status_code == 200, response.text
    return list(response.json()["results"])


def test_a_rare_token_is_the_top_hit_in_keyword_and_hybrid_mode(hybrid_url: str) -> None:
    for mode in ("keyword", "hybrid", None):  # None: the default, hybrid
        top = _search(hybrid_url, "ZQX-4471", mode, top_k=5)[0]
        assert top["id"] == "part", mode
        assert top["matched_terms"] == ["ZQX", "4471"]
        assert top["keyword"] == {"rank": 1, "score": pytest.approx(top["keyword"]["score"])}  # type: ignore[index]
    got = httpx.get(f"{hybrid_url}/search", params={"q": "ZQX-4471", "k": 3, "mode": "keyword"}, timeout=60).json()
    assert got["results"][0]["id"] == "part" and got["results"][0]["dense"] is None


def test_a_chinese_document_is_the_top_hit_for_a_word_it_contains(hybrid_url: str) -> None:
    for mode in ("keyword", "hybrid"):
        for word in ("北京", "图书馆"):
            top = _search(hybrid_url, word, mode, top_k=3)[0]
            assert top["id"] == "zh", (mode, word)
            assert top["matched_terms"] == [word]


def test_a_keyword_search_with_a_filter_returns_top_k_matching_hits(hybrid_url: str) -> None:
    # Without the filter the 30 loud documents fill the first pages; the filter applies inside.
    assert {h["id"] for h in _search(hybrid_url, "gene", "keyword", top_k=10)} <= {f"loud{i}" for i in range(30)}
    for mode in ("keyword", "hybrid", "dense"):
        hits = _search(hybrid_url, "gene", mode, top_k=10, filter={"kind": "quiet"})
        assert len(hits) == 10 and all(h["metadata"] == {"kind": "quiet"} for h in hits), mode
    batch = httpx.post(
        f"{hybrid_url}/search/batch",
        json={"queries": ["gene", "ZQX-4471"], "top_k": 10, "mode": "keyword", "filter": {"kind": "quiet"}},
        timeout=60,
    ).json()["results"]
    assert len(batch[0]) == 10 and all(h["metadata"]["kind"] == "quiet" for h in batch[0])
    assert batch[1] == []  # no quiet document holds the part number


def test_a_deleted_document_leaves_keyword_results_at_once(hybrid_url: str) -> None:
    assert _search(hybrid_url, "ZQX-4471", "keyword")[0]["id"] == "part"
    assert httpx.delete(f"{hybrid_url}/documents/part", timeout=60).status_code in (200, 204)
    for mode in ("keyword", "hybrid"):
        assert "part" not in [h["id"] for h in _search(hybrid_url, "ZQX-4471", mode)]


def test_each_hit_carries_both_retrievers_and_the_fused_score(hybrid_url: str) -> None:
    hits = _search(hybrid_url, "cat door part number", "hybrid", top_k=10)
    top = next(h for h in hits if h["id"] == "part")
    dense, keyword = top["dense"], top["keyword"]
    assert isinstance(dense, dict) and isinstance(keyword, dict)
    # The default fusion: 0.5 x each retriever's min-max normalised score; the keyword side's best is 1.
    assert keyword["rank"] == 1 and 0.5 <= top["score"] <= 1.0
    assert set(top["matched_terms"]) >= {"part", "number", "cat", "door"}  # type: ignore[arg-type]
    dense_only = _search(hybrid_url, "cat door", "dense", top_k=5)
    assert all(h["keyword"] is None and h["dense"]["rank"] == n for n, h in enumerate(dense_only, 1))  # type: ignore[index]


def test_a_bad_mode_is_a_422_naming_the_allowed_values(hybrid_url: str) -> None:
    responses = [
        httpx.post(f"{hybrid_url}/search", json={"query": "cat", "mode": "nonsense"}, timeout=60),
        httpx.get(f"{hybrid_url}/search", params={"q": "cat", "mode": "nonsense"}, timeout=60),
        httpx.post(f"{hybrid_url}/search/batch", json={"queries": ["cat"], "mode": "nonsense"}, timeout=60),
    ]
    for response in responses:
        assert response.status_code == 422
        assert "'hybrid', 'dense' or 'keyword'" in response.text, response.text


def test_a_document_written_through_the_api_becomes_keyword_searchable(worker_url: str) -> None:
    # The worker beside the server chunks and embeds it; its next publish applies the change log to
    # the keyword index, and the server reloads the committed segments.
    put = httpx.put(f"{worker_url}/documents/spare", json={"text": "the spare part QQV-9931 is in stock"}, timeout=60)
    assert put.status_code in (200, 201, 202), put.text
    deadline, hits = time.monotonic() + 60, []
    while time.monotonic() < deadline and not (hits and hits[0]["id"] == "spare"):
        time.sleep(0.2)
        hits = _search(worker_url, "QQV-9931", "keyword")
    assert hits and hits[0]["id"] == "spare" and hits[0]["matched_terms"] == ["QQV", "9931"]
    assert httpx.delete(f"{worker_url}/documents/spare", timeout=60).status_code == 200
    assert _search(worker_url, "QQV-9931", "keyword") == []  # gone the moment the delete returns


def test_min_score_keeps_the_hits_scoring_at_least_it_on_every_search_route(hybrid_url: str) -> None:
    every = _search(hybrid_url, "gene", top_k=20)
    scores = sorted({h["score"] for h in every}, reverse=True)  # type: ignore[type-var]
    assert len(scores) > 3 and all(0.0 <= s <= 1.0 for s in scores)  # type: ignore[operator]
    cut = scores[2]
    kept = _search(hybrid_url, "gene", top_k=20, min_score=cut)
    assert kept and [h["id"] for h in kept] == [h["id"] for h in every if h["score"] >= cut]  # type: ignore[operator]
    got = httpx.get(f"{hybrid_url}/search", params={"q": "gene", "k": 20, "min_score": cut}, timeout=60).json()
    assert [h["id"] for h in got["results"]] == [h["id"] for h in kept]
    batch = httpx.post(
        f"{hybrid_url}/search/batch", json={"queries": ["gene", "gene"], "top_k": 20, "min_score": cut}, timeout=60
    ).json()["results"]
    assert [[h["id"] for h in hits] for hits in batch] == [[h["id"] for h in kept]] * 2
    assert _search(hybrid_url, "gene", top_k=20, min_score=1.01) == []
    for bad in ("nan", "inf"):
        refused = httpx.get(f"{hybrid_url}/search", params={"q": "gene", "min_score": bad}, timeout=60)
        assert refused.status_code == 422 and "min_score" in refused.text
