"""Where a search's time goes, over real HTTP: /metrics' `semsearch_stage_seconds` counts each stage a
request passed through once, and the stages of a request fit within its own latency."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from search.timing import STAGES

# A hybrid search's keyword ranking runs while its query is embedded (api/server/app.py's `_search`).
BESIDE_KEYWORD = ("thread_wait", "keyword", "sql")
BESIDE_EMBEDDING = ("queue_wait", "forward")


def scrape(client: httpx.Client) -> tuple[dict[str, tuple[float, float]], float]:
    """Each stage's (count, sum) and the sum of /search's request latencies, from /metrics."""
    stages: dict[str, tuple[float, float]] = {}
    total = 0.0
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for sample in family.samples:
            if sample.name in ("semsearch_stage_seconds_count", "semsearch_stage_seconds_sum"):
                count, seconds = stages.get(sample.labels["stage"], (0.0, 0.0))
                if sample.name.endswith("_count"):
                    count = sample.value
                else:
                    seconds = sample.value
                stages[sample.labels["stage"]] = (count, seconds)
            if sample.name == "semsearch_request_seconds_sum" and sample.labels["route"] == "/search":
                total = sample.value
    return stages, total


def one_search(client: httpx.Client, body: dict[str, object]) -> tuple[dict[str, tuple[float, float]], float]:
    """What one search added to each stage's (count, sum), and its latency, from scrapes around it."""
    before, total_before = scrape(client)
    response = client.post("/search", json=body)
    assert response.status_code == 200, response.text
    after, total_after = scrape(client)
    added = {s: (after[s][0] - before[s][0], after[s][1] - before[s][1]) for s in STAGES}
    return added, total_after - total_before


def test_every_stage_of_hybrid_searches_is_counted_within_their_latency(base_url: str) -> None:
    queries = ["the cat sat on the mat", "sun and moon", "cancer study", "a star in the sky", "mat"]
    with httpx.Client(base_url=base_url, timeout=30) as client:
        for query in queries:
            added, took = one_search(client, {"query": query, "top_k": 2, "mode": "hybrid"})
            assert {s: count for s, (count, _) in added.items()} == dict.fromkeys(STAGES, 1.0)
            seconds = {s: spent for s, (_, spent) in added.items()}
            assert all(spent >= 0 for spent in seconds.values()), seconds
            # The keyword side and the embedding overlap by at most the shorter of the two.
            overlap = min(sum(seconds[s] for s in BESIDE_KEYWORD), sum(seconds[s] for s in BESIDE_EMBEDDING))
            assert 0 < sum(seconds.values()) - overlap <= took, (seconds, took)
        stages, _ = scrape(client)
    assert all(stages[s][0] >= len(queries) for s in STAGES), stages


def test_a_keyword_search_spends_no_model_time(base_url: str) -> None:
    with httpx.Client(base_url=base_url, timeout=30) as client:
        added, took = one_search(client, {"query": "the cat", "top_k": 2, "mode": "keyword"})
    counted = {s for s, (count, _) in added.items() if count}
    assert counted == {"admission", "thread_wait", "keyword", "fusion", "sql", "serialise"}
    assert all(count == 1 for s, (count, _) in added.items() if s in counted)
    assert 0 < sum(spent for _, spent in added.values()) <= took


def test_a_dense_search_ranks_no_keywords(base_url: str) -> None:
    with httpx.Client(base_url=base_url, timeout=30) as client:
        client.get("/search", params={"q": "warm up", "mode": "dense"})  # GET is the same route
        added, took = one_search(client, {"query": "the cat", "top_k": 2, "mode": "dense"})
    counted = {s for s, (count, _) in added.items() if count}
    assert counted == set(STAGES) - {"keyword"}
    assert 0 < sum(spent for _, spent in added.values()) <= took
