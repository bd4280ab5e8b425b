"""bench.http_load's in-process comparison: the references, one query at a time, and the rounds that
alternate them with the HTTP runs (`python -m bench.http_load`; see its docstring)."""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch

from api.server.app import serving_settings
from bench.common import cpu_line, print_table, scifact_queries, serve_process, settle
from bench.http_load import ENCODER, SEARCH, TOP_K, Run, http_run
from bench.http_targets import HEADER, table_rows, verdict
from bench.rebuild_beside import RebuildLoop, served_index_type
from search.components import make_encoder, open_hybrid
from search.embedding.encoder import Encoder
from search.query.hybrid import HybridSearcher
from search.settings import Settings


def one_at_a_time(work: Callable[[str], object], queries: list[str], seconds: float, offset: int) -> Run:
    """`work` on one query after another of `queries` (from `offset` on) for `seconds`."""
    run = Run()
    started = time.perf_counter()
    i = offset
    while (now := time.perf_counter()) - started < seconds:
        work(queries[i % len(queries)])
        run.latencies.append(time.perf_counter() - now)
        i += 1
    run.seconds = time.perf_counter() - started
    return run


def sequential(searcher: HybridSearcher, queries: list[str], seconds: float, mode: str, offset: int) -> Run:
    """Sequential searches in `mode` over `queries` (from `offset` on) for `seconds`: the work the
    API does for one request, without HTTP."""
    return one_at_a_time(lambda query: searcher.search(query, k=TOP_K, mode=mode), queries, seconds, offset)


def encoder_alone(encoder: Encoder, queries: list[str], seconds: float, offset: int) -> Run:
    """The in-process `Encoder` embedding `queries` one at a time (from `offset` on) for `seconds`: what
    one request costs at least, whatever the index, the SQL and the HTTP add."""
    return one_at_a_time(lambda query: encoder.encode([query]), queries, seconds, offset)


# One in-process reference: a run over the queries (from an offset on) for some seconds.
Reference = Callable[..., Run]


def rounds(
    folder: Path, queries: list[str], client_counts: list[int], args: argparse.Namespace, beside: RebuildLoop | None
) -> dict[str, list[Run]]:
    """The in-process runs (SEARCH, ENCODER) and the HTTP runs per client count, round after round."""
    encoder = make_encoder(Settings(data_dir=folder))  # the server's settings, but for its serving defaults
    searcher = open_hybrid(Settings(data_dir=folder), encoder=encoder)
    dtype = str(encoder.dtype).removeprefix("torch.")
    threads = encoder.threads or f"{encoder.backend}'s default"
    print(f"  encoder in process: {encoder.backend} in {dtype} on {encoder.device}, threads: {threads}")
    for query in queries[:20]:
        searcher.search(query, k=TOP_K, mode=args.mode)
    references: dict[str, Reference] = {
        SEARCH: partial(sequential, searcher, mode=args.mode),
        ENCODER: partial(encoder_alone, encoder),
    }
    runs: dict[str, list[Run]] = {SEARCH: [], ENCODER: [], **{str(c): [] for c in client_counts}}
    try:
        with serve_process(folder) as (url, pid):
            # Whatever the server's start set going (its worker catching up) must not fall in a measured run.
            print(f"  the server searches {served_index_type(url)}; idle {settle(pid):.0f} s after it answered")
            for n in range(args.rounds):
                print(f"  round {n + 1}: " + _round(n, url, references, queries, client_counts, args, beside, runs))
            print(f"  the server searches {served_index_type(url)} after the runs", flush=True)
    finally:
        searcher.store.close()
    return runs


def _round(
    n: int,
    url: str,
    references: dict[str, Reference],
    queries: list[str],
    client_counts: list[int],
    args: argparse.Namespace,
    beside: RebuildLoop | None,
    runs: dict[str, list[Run]],
) -> str:
    """Round `n` into `runs`: both in-process references (each leading every other round), then each
    client count's HTTP run, with the rebuilds beside it if any; the round's line."""
    for key in (SEARCH, ENCODER) if n % 2 == 0 else (ENCODER, SEARCH):
        runs[key].append(references[key](queries, args.seconds, offset=n * 97))
    base, alone = runs[SEARCH][-1], runs[ENCODER][-1]
    line = [f"in process search {base.rate:.1f}/s, Encoder alone {alone.rate:.1f}/s"]
    for clients in client_counts:
        if beside is not None:
            beside.start()
        try:
            run = http_run(url, clients, queries, args)
        finally:
            ran = f", {beside.stop()} rebuilds beside" if beside is not None else ""
        runs[str(clients)].append(run)
        vs = f"{run.rate / base.rate:.2f}x search, {run.rate / alone.rate:.2f}x Encoder"
        line.append(f"{clients} clients {run.rate:.1f}/s ({vs}, {run.errors} errors{ran})")
    return "; ".join(line)


def measure(folder: Path, args: argparse.Namespace, beside: RebuildLoop | None) -> None:
    """The facts of the host and settings, the rounds, the table and the target."""

    client_counts = [int(c) for c in args.clients.split(",") if c.strip()]
    queries = scifact_queries()
    settings = Settings(data_dir=folder)
    threads = settings.torch_threads or torch.get_num_threads()
    print(cpu_line())
    print("load average at the start: " + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    served = serving_settings(settings)
    print(
        f"torch {torch.__version__}, {threads} threads a forward pass in process (the server: "
        f"{served.torch_threads or threads}, and {served.search_threads} searches at once); "
        f"batch wait {settings.batch_wait_ms} ms"
    )
    print(f"{args.rounds} rounds of {args.seconds:.0f} s in process, then at {args.clients} clients ...", flush=True)
    runs = rounds(folder, queries, client_counts, args, beside)
    print("load average at the end: " + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    print_table(
        f"POST /search, mode {args.mode}, top_k={TOP_K}, {len(queries)} SciFact queries, {args.rounds} rounds of "
        f"{args.seconds:.0f} s per path{', a rebuild beside each HTTP run' if beside else ''} (vs: median over "
        "rounds of requests/s over that round's in-process search, and Encoder alone, one query at a time)",
        HEADER,
        table_rows(runs, client_counts),
    )
    print("\nissue 25's target (against the Encoder alone):\n" + verdict(runs, client_counts))
