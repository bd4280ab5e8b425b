"""Other clients' searches while a reader pages through results on the search page (issue 25 item 5:
the page's shading held other searches 3.6-4.2 s on a loaded 2-core host).

1. Builds (or reuses) the SciFact index of bench/http_load.py (2,000 documents) and starts `semsearch
   serve` over it with its default settings.
2. Four clients send `POST /search` (hybrid, top_k 10) one after another for `--seconds`: alone, then
   beside a browser-like client that does what the page does for each results page: a search of
   top_k 100, then one `/v1/embeddings` call shading the page's 10 hits. The shading is sent twice
   over: as the page sends it (the query and at most 3 sentences of each hit, those sharing the most
   query words: api/server/static/index.html `candidates`) and as it sent every sentence of every
   hit before (the reference, 70-100 texts).

Prints the CPU flags and the encoder, then the 4 clients' p50 and p99 beside each, and their ratio to
the p50 alone measured in the same run (target: at most 1.2x as the page sends it).

    .venv/bin/python -m bench.page_load [--seconds 20] [--docs 2000]
"""

from __future__ import annotations

import argparse
import re
import threading
import time

import httpx
import numpy as np

from bench.batch_fairness import encoder_line
from bench.common import print_table, scifact_queries, serve_process
from bench.http_load import build_index, cpu_flags
from search.settings import Settings

CLIENTS = 4
MODEL_SENTENCES = 3  # as the page's MODEL_SENTENCES
_SENTENCE = re.compile(r"[^.!?]+[.!?]*")
_WORD = re.compile(r"\w+")


def _sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE.findall(text) if s.strip()]


def _shading(query: str, hits: list[dict[str, object]], every: bool) -> list[str]:
    """The texts one results page sends to /v1/embeddings: the query and each hit's candidates."""
    words = set(_WORD.findall(query.lower()))
    texts = [query]
    for hit in hits:
        spans = _sentences(str(hit["text"]))
        if not every:
            shared = [len([w for w in _WORD.findall(s.lower()) if w in words]) for s in spans]
            order = sorted(range(len(spans)), key=lambda i: (-shared[i], i))[:MODEL_SENTENCES]
            spans = [spans[i] for i in sorted(order)]
        texts += spans
    return texts


def _reader(url: str, queries: list[str], every: bool, stop: threading.Event, sent: list[int]) -> None:
    """Pages through results as the page does: a search of 100 hits, then each page of 10 shaded."""
    with httpx.Client(base_url=url, timeout=300) as client:
        i = 0
        while not stop.is_set():
            query = queries[-1 - i % len(queries)]
            hits = client.post("/search", json={"query": query, "top_k": 100}).json()["results"]
            for page in range(0, min(len(hits), 30), 10):
                if stop.is_set():
                    break
                texts = _shading(query, hits[page : page + 10], every)
                client.post("/v1/embeddings", json={"input": texts, "encoding_format": "base64"})
                sent.append(len(texts))
            i += 1


def _searcher(url: str, queries: list[str], seconds: float, offset: int, out: list[float], errors: list[int]) -> None:
    with httpx.Client(base_url=url, timeout=300) as client:
        end, i = time.perf_counter() + seconds, offset
        while time.perf_counter() < end:
            started = time.perf_counter()
            response = client.post("/search", json={"query": queries[i % len(queries)], "top_k": 10})
            if response.status_code == 200:
                out.append(time.perf_counter() - started)
            else:
                errors.append(response.status_code)
            i += 7


def measure(url: str, queries: list[str], seconds: float, reader: bool | None) -> tuple[list[float], int, float]:
    """The 4 clients' latencies, their errors and the texts per shading call (`reader`: None, none;
    False, the page as it is; True, every sentence)."""
    latencies: list[float] = []
    errors: list[int] = []
    sent: list[int] = []
    stop = threading.Event()
    page = None
    if reader is not None:
        page = threading.Thread(target=_reader, args=(url, queries, reader, stop, sent))
        page.start()
        time.sleep(1.0)
    clients = [
        threading.Thread(target=_searcher, args=(url, queries, seconds, n, latencies, errors)) for n in range(CLIENTS)
    ]
    for thread in clients:
        thread.start()
    for thread in clients:
        thread.join()
    stop.set()
    if page is not None:
        page.join()
    return latencies, len(errors), float(np.mean(sent)) if sent else 0.0


def main() -> None:
    """Index (or reuse), serve, measure alone and beside each page, print the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0, help="measured seconds per load")
    parser.add_argument("--docs", type=int, default=2000, help="index the first N SciFact documents")
    args = parser.parse_args()
    queries = scifact_queries()
    folder = build_index(args.docs)
    print(f"CPU flags: {cpu_flags()}", flush=True)
    rows = []
    with serve_process(folder, args=["--verbose"]) as (url, _pid):
        for query in queries[:20]:  # warm-up
            httpx.post(f"{url}/search", json={"query": query, "top_k": 10}, timeout=60)
        print(f"encoder: {encoder_line(folder, Settings(data_dir=folder))}", flush=True)
        alone_p50 = None
        for name, reader in (("alone", None), ("beside the page", False), ("beside every sentence (before)", True)):
            latencies, errors, texts = measure(url, queries, args.seconds, reader)
            p50, p99 = (float(np.percentile(latencies, q) * 1000) for q in (50, 99))
            alone_p50 = alone_p50 or p50
            rows.append([name, len(latencies), p50, p99, f"{p50 / alone_p50:.2f}x", errors, f"{texts:.0f}"])
            print(f"  {name}: p50 {p50:.0f} ms, p99 {p99:.0f} ms", flush=True)
    print_table(
        f"POST /search (hybrid, top_k 10) from {CLIENTS} clients, {args.seconds:.0f} s per load, {args.docs} SciFact "
        "documents",
        ["load", "searches", "p50 ms", "p99 ms", "p50 / alone", "errors", "texts per shading call"],
        rows,
    )


if __name__ == "__main__":
    main()
