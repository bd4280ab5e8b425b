"""HTTP load on the real API server, against two in-process references, on SciFact (issue 25).

1. Builds (or reuses, under .bench/, which git ignores) an index of SciFact's corpus with the
   default settings, through the project's own indexer.
2. Opens the searcher the API uses, in the same `--mode` (default hybrid: embed one query, search
   the vector and keyword indexes, join the rows, fuse), with the `Encoder` the settings make
   (`make_encoder(Settings(data_dir=...))`), and starts `semsearch serve` as a subprocess on a
   loopback port.
3. Runs `--rounds` rounds, each measuring for `--seconds`: the in-process sequential search (the
   SciFact queries one after another), the in-process `Encoder` alone embedding them one at a time
   (`encoder.encode([query])`), then for each `--clients` count that many asyncio + httpx clients,
   each sending POST /search and waiting for the answer before sending the next (after a short
   warm-up). Each round's HTTP rate is divided by both in-process rates of the same round: on a host
   whose speed drifts from minute to minute, neighbouring runs compare; runs minutes apart may not.

Prints the CPU and its flags, the load average, the encoder's backend, dtype and threads (in process
and in the server) and the server's search threads; each round's rates; then one table: path,
clients, requests/s, p50 and p99 latency, p99/p50, errors, texts per encoder forward pass (from the
server's /metrics) over all rounds, and the median over rounds of the per-round ratios against the
in-process search and against the Encoder alone (the rounds, the two references taking turns to go
first: bench/http_compare.py); then issue 25's target, against the Encoder alone
(bench/http_targets.py): at 8 clients >= 1.0x, p99 <= 3x p50, 0 errors; at 32 clients the same
within 10 %.

    .venv/bin/python -m bench.http_load [--seconds 20] [--rounds 3] [--clients 8,32] [--docs N]
        [--rebuild-beside]

With `--rebuild-beside`: during each HTTP run (warm-up included), `semsearch rebuild --factory
HNSW32,Flat` in its own process, in a loop, on a scratch copy of the index that one such rebuild has
first turned into HNSW32,Flat, so every path searches HNSW32,Flat, not the index the default
settings (`auto`: exact, Flat, at this size) give (bench/rebuild_beside.py). Prints the served index
type before and after the runs, how many rebuilds ran and whether each exited 0.

With `--peer txtai` (the `bench` extra): semsearch dense and hybrid against txtai's API over the same
chunks and model, in alternating rounds, instead of the in-process comparison (bench/peer_load.py).

The server inherits the SEMSEARCH_* environment, so its settings can be tuned per run, e.g.
`SEMSEARCH_BATCH_WAIT_MS=5 python -m bench.http_load`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from itertools import islice
from pathlib import Path

import httpx
import numpy as np

from bench.common import SCIFACT
from bench.rebuild_beside import FACTORY, RebuildLoop, rebuild_once, scratch_copy, stored_index_type
from indexer.ingest.sources import read_sources
from indexer.write.pipeline import open_indexer
from search.query.hits import MODES
from search.settings import Settings

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / ".bench" / "http_load"
TOP_K = 10
SEARCH, ENCODER = "search", "encoder"  # the in-process references' runs, beside each client count's


@dataclass
class Run:
    """What one measured run saw."""

    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    seconds: float = 0.0
    rows_per_pass: float = float("nan")

    @property
    def rate(self) -> float:
        """Successful requests per second."""
        return len(self.latencies) / self.seconds if self.seconds else 0.0

    def percentile_ms(self, q: float) -> float:
        """The q-th percentile latency of the successful requests, in milliseconds."""
        return float(np.percentile(self.latencies, q) * 1000) if self.latencies else float("nan")


def round_ratios(runs: list[Run], references: list[Run]) -> tuple[float, list[float]]:
    """The median over rounds of `runs`' requests/s over `references`' in the same round, and each
    round's: neighbouring runs on a host whose speed drifts compare, pooled rates minutes apart may not."""
    each = [r.rate / b.rate if b.rate else float("inf") for r, b in zip(runs, references, strict=True)]
    return float(np.median(each)), each


def build_index(docs: int | None) -> Path:
    """The data directory of an index of the first `docs` SciFact documents (all when None), built once."""
    folder = CACHE / f"scifact-{docs or 'all'}"
    marker = folder / "complete.json"
    if marker.is_file():
        print(f"reusing the index in {folder}: {marker.read_text().strip()}")
        return folder
    shutil.rmtree(folder, ignore_errors=True)  # a run that was interrupted: start over
    indexer = open_indexer(Settings(data_dir=folder))
    print(f"indexing {docs or 'all'} SciFact documents into {folder} (minutes for all of them) ...", flush=True)
    summary = indexer.run(islice(read_sources([SCIFACT / "corpus.jsonl"]), docs))
    indexer.store.close()
    facts = {"documents": summary.documents, "chunks": summary.chunks, "seconds": round(summary.seconds, 1)}
    marker.write_text(json.dumps(facts) + "\n")
    print(f"indexed: {facts}")
    return folder


def cpu_flags() -> str:
    """The CPU's vector and matrix extensions (AVX2, AVX-512 and its BF16, AMX) that decide the encoder's
    dtype and speed, from /proc/cpuinfo (empty where there is none)."""
    try:
        words = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return "unknown"
    return " ".join(sorted({w for w in words if w.startswith(("avx", "amx"))})) or "no AVX"


# One request and its answer: whether it came back whole (a peer's bench asks its own API its own way).
Ask = Callable[[httpx.AsyncClient, str], Awaitable[bool]]


async def post_search(client: httpx.AsyncClient, query: str, mode: str) -> bool:
    """semsearch's POST /search in `mode`: whether it answered TOP_K results."""
    response = await client.post("/search", json={"query": query, "top_k": TOP_K, "mode": mode})
    return response.status_code == 200 and len(response.json()["results"]) == TOP_K


async def _client(client: httpx.AsyncClient, queries: list[str], start: int, end: float, run: Run, ask: Ask) -> None:
    """One client: a request, its answer, the next request, until `end` (each client starts elsewhere
    in the query list, so concurrent requests carry different queries)."""
    i = start
    while time.perf_counter() < end:
        sent = time.perf_counter()
        try:
            ok = await ask(client, queries[i % len(queries)])
        except httpx.HTTPError:
            ok = False
        if ok:
            run.latencies.append(time.perf_counter() - sent)
        else:
            run.errors += 1
        i += 1


async def load(url: str, clients: int, queries: list[str], seconds: float, mode: str | Ask) -> Run:
    """`clients` concurrent clients for `seconds` (one connection each, loopback only), each asking
    semsearch's POST /search in `mode`, or asking `mode` itself where it is a request function."""
    ask = partial(post_search, mode=mode) if isinstance(mode, str) else mode
    run = Run()
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:
        started = time.perf_counter()
        end = started + seconds
        step = len(queries) // clients or 1
        await asyncio.gather(*(_client(client, queries, c * step, end, run, ask) for c in range(clients)))
        run.seconds = time.perf_counter() - started
    return run


def batch_rows(url: str) -> tuple[float, float]:
    """(texts embedded, forward passes) so far, from the server's /metrics."""
    text = httpx.get(f"{url}/metrics", timeout=30).text
    values = [re.search(rf"^semsearch_encoder_batch_rows_{s} (\S+)$", text, re.MULTILINE) for s in ("sum", "count")]
    rows, passes = (float(m.group(1)) if m else 0.0 for m in values)
    return rows, passes


def http_run(url: str, clients: int, queries: list[str], args: argparse.Namespace) -> Run:
    """One measured run at `clients`, after a warm-up at the same concurrency."""
    asyncio.run(load(url, clients, queries, args.warmup, args.mode))
    rows_before, passes_before = batch_rows(url)
    run = asyncio.run(load(url, clients, queries, args.seconds, args.mode))
    rows_after, passes_after = batch_rows(url)
    run.rows_per_pass = (rows_after - rows_before) / max(passes_after - passes_before, 1)
    return run


def pooled(runs: list[Run]) -> Run:
    """The runs of one path taken together (rates over their summed seconds)."""
    total = Run(seconds=sum(r.seconds for r in runs), errors=sum(r.errors for r in runs))
    for r in runs:
        total.latencies.extend(r.latencies)
    passes = [r.rows_per_pass for r in runs if not np.isnan(r.rows_per_pass)]
    total.rows_per_pass = float(np.mean(passes)) if passes else float("nan")
    return total


def main() -> None:
    """Index (or reuse), measure in process, serve, load, print the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0, help="measured seconds per run")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of in-process then HTTP runs")
    parser.add_argument("--warmup", type=float, default=3.0, help="unmeasured seconds before each HTTP run")
    parser.add_argument("--clients", default="8,32", help="comma-separated concurrent client counts")
    parser.add_argument("--docs", type=int, default=None, help="index only the first N documents")
    parser.add_argument("--mode", choices=MODES, default="hybrid", help="search mode, in process and over HTTP")
    parser.add_argument(
        "--rebuild-beside",
        action="store_true",
        help=f"during the HTTP runs, `semsearch rebuild --factory {FACTORY}` in a loop (on a scratch copy)",
    )
    parser.add_argument("--peer", choices=["txtai"], help="instead: dense and hybrid against this peer's API")
    parser.add_argument("--peer-threads", type=int, default=None, help="the peer's torch threads (default torch's own)")
    args = parser.parse_args()
    if args.peer:
        from bench.peer_load import compare  # here: peer_load builds on this module

        compare(args)
        return
    from bench.http_compare import measure  # here: http_compare builds on this module

    folder = build_index(args.docs)
    if not args.rebuild_beside:
        measure(folder, args, None)
        return
    with scratch_copy(folder) as copy:
        before = stored_index_type(copy)
        print(f"rebuilding a copy of the index ({before}) in {copy} as {FACTORY} ...", flush=True)
        print(f"  {rebuild_once(copy):.1f} s; every path below searches that copy", flush=True)
        beside = RebuildLoop(copy)
        measure(copy, args, beside)
        print(beside.summary())
        print(
            f"note: every figure above is on {FACTORY}, which the rebuilds beside keep (the server's type "
            f"before and after the runs, above), where runs without --rebuild-beside search the cache's "
            f"{before} index: the in-process search and the server search the same index here, the Encoder "
            "alone none, so its column compares across the two kinds of run and the search column within one"
        )


if __name__ == "__main__":
    main()
