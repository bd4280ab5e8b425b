"""Where a search's time goes under load: the server's per-stage seconds (/metrics'
`semsearch_stage_seconds`) over a run of concurrent clients on SciFact, and what recording them costs.

1. Times the recording itself in this process: a request's stage times made current, the timers
   of a hybrid search's stages, the observations into the histogram, `--overhead` times over.
2. Serves an index of SciFact (bench/http_load.py's, built once under .bench/), runs `--clients`
   clients for `--seconds` (after a warm-up) as bench/http_load.py does, and reads /metrics before
   and after.

Prints, per stage, the requests that passed through it, its mean, p50 and p99 per request (the
percentiles estimated from the histogram's buckets, as Prometheus' histogram_quantile does) and its
share of the mean request latency; then the recording's cost per request, and that cost as a share
of the mean request latency measured in the same run.

    .venv/bin/python -m bench.stages [--seconds 20] [--clients 8] [--docs 2000] [--mode hybrid]
"""

from __future__ import annotations

import argparse
import asyncio
import time

import httpx
import torch
from prometheus_client.parser import text_string_to_metric_families

from api.server.app import serving_settings
from api.server.metrics import Metrics
from bench.common import cpu_line, print_table, scifact_queries, serve_process
from bench.http_load import TOP_K, build_index, load
from search.components import make_encoder
from search.query.hits import MODES
from search.settings import Settings
from search.timing import CURRENT, STAGES, StageTimes, timed

# The timers one hybrid search without a filter passes through (search/query, api/server/flow).
_HYBRID_TIMERS = ("keyword", "sql", "dense", "sql", "fusion", "sql")
Buckets = dict[str, dict[float, float]]  # stage -> upper bound -> cumulative count


def recording_cost(n: int) -> float:
    """CPU seconds per request of recording a hybrid search's stages: what the middleware, the flow
    control and the search core add to a request. CPU time, not wall time: on a shared machine the
    wall time of a tight loop counts the turns other processes take."""
    metrics = Metrics()
    started = time.process_time()
    for _ in range(n):
        times = StageTimes(time.perf_counter())
        token = CURRENT.set(times)
        times.add("admission", time.perf_counter() - times.arrived)
        for stage in _HYBRID_TIMERS:
            with timed(stage):
                pass
        for stage in ("thread_wait", "thread_wait", "queue_wait", "forward", "serialise"):
            times.add(stage, time.perf_counter() - times.arrived)
        CURRENT.reset(token)
        for stage, seconds in times.seconds.items():
            metrics.stages[stage].observe(seconds)
    return (time.process_time() - started) / n


def scrape(url: str) -> tuple[Buckets, dict[str, float], dict[str, float], tuple[float, float]]:
    """Each stage's buckets, count and sum, and /search's (count, sum) of request seconds."""
    buckets: Buckets = {s: {} for s in STAGES}
    counts, sums, total = dict.fromkeys(STAGES, 0.0), dict.fromkeys(STAGES, 0.0), [0.0, 0.0]
    for family in text_string_to_metric_families(httpx.get(f"{url}/metrics", timeout=30).text):
        for sample in family.samples:
            labels, value = sample.labels, sample.value
            if sample.name == "semsearch_stage_seconds_bucket":
                buckets[labels["stage"]][float(labels["le"])] = value
            elif sample.name == "semsearch_stage_seconds_count":
                counts[labels["stage"]] = value
            elif sample.name == "semsearch_stage_seconds_sum":
                sums[labels["stage"]] = value
            elif sample.name.startswith("semsearch_request_seconds_") and labels.get("route") == "/search":
                if sample.name.endswith("_count"):
                    total[0] = value
                elif sample.name.endswith("_sum"):
                    total[1] = value
    return buckets, counts, sums, (total[0], total[1])


def quantile(q: float, cumulative: dict[float, float]) -> float:
    """The q-quantile of a histogram's (upper bound -> cumulative count), linear within a bucket."""
    bounds = sorted(cumulative)
    total = cumulative[bounds[-1]] if bounds else 0.0
    if total <= 0:
        return float("nan")
    rank, lower, below = q * total, 0.0, 0.0
    for bound in bounds:
        if cumulative[bound] >= rank:
            if bound == float("inf"):
                return lower
            inside = cumulative[bound] - below
            return lower + (bound - lower) * ((rank - below) / inside if inside else 0.0)
        lower, below = bound, cumulative[bound]
    return lower


def main() -> None:
    """Time the recording, serve, load, print the per-stage table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=3.0, help="unmeasured seconds before")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients")
    parser.add_argument("--docs", type=int, default=2000, help="index the first N SciFact documents")
    parser.add_argument("--mode", choices=MODES, default="hybrid", help="search mode")
    parser.add_argument("--overhead", type=int, default=100_000, help="requests of the recording micro-benchmark")
    args = parser.parse_args()
    folder = build_index(args.docs)
    served = serving_settings(Settings(data_dir=folder))
    encoder = make_encoder(served)
    print(cpu_line())
    print(
        f"torch {torch.__version__}; the server's encoder: {encoder.backend} in "
        f"{str(encoder.dtype).removeprefix('torch.')} on {encoder.device}, {served.torch_threads} threads, "
        f"{served.search_threads} search threads, batch wait {served.batch_wait_ms} ms"
    )
    del encoder
    cost = recording_cost(args.overhead)
    queries = scifact_queries()
    with serve_process(folder) as (url, _pid):
        asyncio.run(load(url, args.clients, queries, args.warmup, args.mode))
        before = scrape(url)
        run = asyncio.run(load(url, args.clients, queries, args.seconds, args.mode))
        after = scrape(url)
    requests = after[3][0] - before[3][0]
    mean_request = (after[3][1] - before[3][1]) / max(requests, 1)
    rows = []
    for stage in STAGES:
        count = after[1][stage] - before[1][stage]
        spent = after[2][stage] - before[2][stage]
        cumulative = {b: after[0][stage][b] - before[0][stage].get(b, 0.0) for b in after[0][stage]}
        p50, p99 = (quantile(q, cumulative) * 1000 for q in (0.5, 0.99))
        mean = spent / count * 1000 if count else float("nan")
        rows.append([stage, int(count), mean, p50, p99, spent / max(requests, 1) / mean_request])
    print_table(
        f"POST /search, mode {args.mode}, top_k={TOP_K}, {args.clients} clients for {args.seconds:.0f} s: "
        f"{run.rate:.1f} requests/s, mean {mean_request * 1000:.2f} ms, {run.errors} errors (share: the "
        "stage's seconds over the requests' seconds; hybrid keyword ranking overlaps queue_wait + forward)",
        ["stage", "requests", "mean ms", "p50 ms", "p99 ms", "share"],
        rows,
    )
    print(
        f"\nrecording the stages: {cost * 1e6:.2f} us of CPU per request ({args.overhead} requests in process), "
        f"{cost / mean_request:.4%} of the mean request latency above"
    )


if __name__ == "__main__":
    main()
