"""Rebuilds under continuous query load: the server swaps generations without failing a request."""

from __future__ import annotations

import threading
from collections import Counter

import httpx

from indexer.write.rebuild import rebuild
from search.settings import Settings

WORDS = ["cat", "dog", "gene", "virus", "python", "star", "water", "tree", "fire", "cell"]


def test_rebuilds_under_load_fail_no_request(loaded: tuple[str, Settings]) -> None:
    url, live = loaded
    stop = threading.Event()
    outcomes: Counter[str] = Counter()
    generations: set[int] = set()

    def client(n: int) -> None:
        with httpx.Client(base_url=url, timeout=60) as http:
            while not stop.is_set():
                response = http.post("/search", json={"query": f"{WORDS[n]} {WORDS[n + 1]}", "top_k": 5})
                ok = response.status_code == 200 and len(response.json()["results"]) == 5
                outcomes["ok" if ok else f"{response.status_code}: {response.text[:200]}"] += 1
                generations.add(http.get("/stats").json()["generation"])

    threads = [threading.Thread(target=client, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    try:
        # A new index type (vectors reused), a new pooling (re-embedded), and back to exact search.
        target = live
        for change in ({"index_factory": "IVF8,Flat"}, {"pooling": "cls"}, {"index_factory": "Flat"}):
            target = target.model_copy(update=change)
            rebuild(target)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
    assert outcomes["ok"] > 20 and set(outcomes) == {"ok"}, outcomes
    stats = httpx.get(f"{url}/stats", timeout=30).json()
    assert (stats["generation"], stats["pooling"], stats["index_type"], stats["vectors"]) == (4, "cls", "Flat", 203)
    assert len(generations) >= 2, "the clients should have seen the generations change"
    assert [p.name.split("-")[1] for p in live.index_dir.glob("*.faiss")] == ["000004"], "one base file, of gen 4"
