"""Single-search latency while another client sends the largest legal batches, on `semsearch serve` over
SciFact (issue 21: one legal batch held other clients' searches up to 42 s).

1. Builds (or reuses) the SciFact index of bench/http_load.py (the first `--docs` documents, 2,000 by
   default) and starts `semsearch serve` over it with its default settings.
2. One client sends single `POST /search` requests (top_k 10, one after another) for `--seconds`:
   alone first, then while a second client sends batches of each `--batches` shape (QUERIESxTOP_K),
   then `/v1/embeddings` requests of `--embeddings` SciFact abstracts, back to back, each waiting
   for its answer before sending the next.
3. Sends one batch past the budget (256 x 1,000, both per-field maxima) and reports its status and
   how long the refusal took.

Prints the CPU flags and the encoder's dtype, then one table: the single searches' p50, p99 and
worst latency beside each load, and the batches' count and time (beside the single searches, and one
with nothing beside it) and answer size. The target: single
search p99 < 1 s while the largest legal batch runs.

    .venv/bin/python -m bench.batch_fairness [--seconds 30] [--docs 2000] [--batches 256x39,10x1000,256x10]
        [--embeddings 512]
"""

from __future__ import annotations

import argparse
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from api.server.app import serving_settings
from bench.common import print_table, scifact_docs, scifact_queries, serve_process
from bench.http_load import build_index, cpu_flags
from search.settings import Settings

TOP_K = 10


@dataclass
class Load:
    """What one measured run saw: the single searches' latencies, and the batches sent beside them."""

    singles: list[float] = field(default_factory=list)
    single_errors: int = 0
    batches: list[float] = field(default_factory=list)
    batch_errors: int = 0
    batch_bytes: int = 0

    def ms(self, q: float) -> float:
        """The q-th percentile single-search latency in milliseconds."""
        return float(np.percentile(self.singles, q) * 1000) if self.singles else float("nan")


def _singles(url: str, queries: list[str], seconds: float, load: Load) -> None:
    with httpx.Client(base_url=url, timeout=300) as client:
        end, i = time.perf_counter() + seconds, 0
        while time.perf_counter() < end:
            sent = time.perf_counter()
            response = client.post("/search", json={"query": queries[i % len(queries)], "top_k": TOP_K})
            if response.status_code == 200 and len(response.json()["results"]) == TOP_K:
                load.singles.append(time.perf_counter() - sent)
            else:
                load.single_errors += 1
            i += 1


@dataclass(frozen=True)
class Batch:
    """A large request that a second client sends back to back."""

    name: str
    path: str
    body: dict[str, Any]


def search_batch(queries: list[str], count: int, top_k: int) -> Batch:
    """`count` queries at `top_k` (others than the single client's first ones)."""
    body = {"queries": queries[::-1][:count], "top_k": top_k}
    return Batch(f"batches of {count} x top_k {top_k}", "/search/batch", body)


def embedding_batch(count: int) -> Batch:
    """The first `count` SciFact abstracts (the model reads 256 tokens of each) for `/v1/embeddings`."""
    texts = [doc["text"] for doc in scifact_docs(count + 50) if str(doc["text"]).strip()][:count]
    return Batch(
        f"/v1/embeddings of {count} abstracts", "/v1/embeddings", {"input": texts, "encoding_format": "base64"}
    )


def _batches(url: str, batch: Batch, stop: threading.Event, started: threading.Event, load: Load) -> None:
    """Batches back to back until `stop`; the answer is read, not parsed (the client's own CPU time
    would take a core from the server on a small host)."""
    with httpx.Client(base_url=url, timeout=600) as client:
        while not stop.is_set():
            sent = time.perf_counter()
            started.set()
            response = client.post(batch.path, json=batch.body)
            if response.status_code == 200:
                load.batches.append(time.perf_counter() - sent)
                load.batch_bytes = len(response.content)
            else:
                load.batch_errors += 1


def measure(url: str, queries: list[str], seconds: float, batch: Batch | None) -> Load:
    """Single searches for `seconds`, alone or beside `batch` sent back to back."""
    load = Load()
    if batch is None:
        _singles(url, queries, seconds, load)
        return load
    stop, started = threading.Event(), threading.Event()
    sender = threading.Thread(target=_batches, args=(url, batch, stop, started, load))
    sender.start()
    started.wait()
    time.sleep(0.5)  # the batch is under way when the single searches begin
    try:
        _singles(url, queries, seconds, load)
    finally:
        stop.set()
        sender.join()  # the batch under way ends first
    return load


def batch_alone(url: str, batch: Batch) -> float:
    """Seconds one `batch` takes with nothing beside it."""
    sent = time.perf_counter()
    response = httpx.post(url + batch.path, json=batch.body, timeout=600)
    if response.status_code != 200:
        raise RuntimeError(f"{batch.name}: answered {response.status_code}: {response.text}")
    return time.perf_counter() - sent


def refusal(url: str, queries: list[str]) -> str:
    """How the server answers a batch past the budget, and how fast."""
    sent = time.perf_counter()
    response = httpx.post(f"{url}/search/batch", json={"queries": queries[:256], "top_k": 1000}, timeout=600)
    took = time.perf_counter() - sent
    detail = response.json().get("detail", "") if response.status_code != 200 else ""
    return f"256 x top_k 1000: {response.status_code} in {took * 1000:.0f} ms {str(detail)[:200]!r}"


def encoder_line(folder: Path, settings: Settings) -> str:
    """The server's encoder as its log names it (backend and dtype), else the settings' dtype."""
    log = (folder / "server.log").read_text(errors="replace")
    found = re.findall(r"encoder \S+ \(\w+ pooling\) on \S+ with \w+ in \w+", log)
    return found[-1] if found else f"dtype {settings.dtype} (the server's log names no encoder)"


def main() -> None:
    """Index (or reuse), serve, measure alone and beside each batch shape, print the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=30.0, help="measured seconds per load")
    parser.add_argument("--docs", type=int, default=2000, help="index the first N SciFact documents")
    parser.add_argument("--batches", default="256x39,10x1000,256x10", help="batch shapes QUERIESxTOP_K")
    parser.add_argument("--embeddings", type=int, default=512, help="abstracts a /v1/embeddings request (0: none)")
    args = parser.parse_args()
    shapes = [(int(q), int(k)) for q, k in (s.lower().split("x") for s in args.batches.split(",") if s.strip())]
    queries = scifact_queries()
    folder = build_index(args.docs)
    settings = Settings(data_dir=folder)
    served = serving_settings(settings)
    print(f"CPU flags: {cpu_flags()}")
    print(
        f"server: {served.search_threads} search threads, {served.torch_threads} encoder threads, budget "
        f"{settings.search_max_hits} hits a request",
        flush=True,
    )
    rows = []
    with serve_process(folder, args=["--verbose"]) as (url, _pid):  # verbose: the log names the encoder
        for query in queries[:20]:  # warm-up
            httpx.post(f"{url}/search", json={"query": query, "top_k": TOP_K}, timeout=60)
        print(f"encoder: {encoder_line(folder, settings)}", flush=True)
        batches = [search_batch(queries, count, top_k) for count, top_k in shapes]
        batches += [embedding_batch(args.embeddings)] if args.embeddings else []
        for batch in [None, *batches]:
            load = measure(url, queries, args.seconds, batch)
            name = "alone" if batch is None else f"beside {batch.name}"
            alone = "-" if batch is None else f"{batch_alone(url, batch):.1f}"
            sent = "-" if batch is None else f"{len(load.batches)} in {np.mean(load.batches or [np.nan]):.1f} s"
            size = "-" if batch is None else f"{load.batch_bytes / 2**20:.1f}"
            worst = max(load.singles, default=float("nan")) * 1000
            errors = load.single_errors + load.batch_errors
            rows.append([name, len(load.singles), load.ms(50), load.ms(99), worst, errors, sent, alone, size])
            print(f"  {name}: p50 {load.ms(50):.0f} ms, p99 {load.ms(99):.0f} ms", flush=True)
        print(f"past the budget: {refusal(url, queries)}")
    print_table(
        f"POST /search (hybrid, top_k {TOP_K}) from one client, {args.seconds:.0f} s per load, over {args.docs} "
        "SciFact documents",
        [
            "load",
            "searches",
            "p50 ms",
            "p99 ms",
            "max ms",
            "errors",
            "batches (mean time)",
            "batch alone s",
            "batch MiB",
        ],
        rows,
    )


if __name__ == "__main__":
    main()
