"""semsearch beside a peer over HTTP (`python -m bench.http_load --peer txtai`): one run, alternating.

Both servers run at once over the same SciFact chunks (bench/txtai_peer.py): `semsearch serve`, asked
in dense and in hybrid mode (POST /search), and txtai's API (GET /search). After a first, longer
warm-up of each path, each round takes every client count in turn, and at each count runs the three
paths back to back (warm-up, then `--seconds` measured), the path that starts rotating from round to
round; the same queries, from the same places in the list, the same asyncio + httpx keep-alive
clients. Each round's rates are divided by txtai's at the same count in that round, so a host whose
speed drifts still compares like with like.

Prints the CPU, the load average, both servers' backend, dtype and threads, each round's rates, then
one table (requests/s, p50, p99, errors over all rounds; median of the rounds' ratios to txtai) and the
issue's target: semsearch hybrid at least 2x txtai's requests/s at 8 clients, its p99 no worse.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from dataclasses import dataclass
from typing import Any

from api.server.app import serving_settings
from bench import txtai_peer
from bench.common import cpu_line, print_table, scifact_queries, serve_process
from bench.http_load import TOP_K, Ask, Run, build_index, load, pooled, round_ratios
from search.components import make_encoder
from search.settings import Settings

PEER = "txtai"
DENSE, HYBRID = "semsearch dense", "semsearch hybrid"
TARGET_CLIENTS, TARGET_RATIO = 8, 2.0


@dataclass(frozen=True)
class Target:
    """One path under load: a name, the server's URL and what each client sends."""

    name: str
    url: str
    ask: str | Ask


def round_order(names: list[str], n: int) -> list[str]:
    """The paths' order in round `n`: rotated by one a round, so each leads as often as the others."""
    shift = n % len(names)
    return names[shift:] + names[:shift]


def alternate(
    targets: list[Target], client_counts: list[int], queries: list[str], seconds: float, warmup: float, rounds: int
) -> dict[tuple[str, int], list[Run]]:
    """Every path at every client count, round after round (round n's runs at index n)."""
    by_name = {t.name: t for t in targets}
    # A fresh txtai answers its first requests in about a second each: warm every path well first.
    for target in targets:
        asyncio.run(load(target.url, max(client_counts), queries, 5 * warmup, target.ask))
    runs: dict[tuple[str, int], list[Run]] = {}
    for n in range(rounds):
        for clients in client_counts:
            line = []
            for name in round_order(list(by_name), n):
                target = by_name[name]
                asyncio.run(load(target.url, clients, queries, warmup, target.ask))
                run = asyncio.run(load(target.url, clients, queries, seconds, target.ask))
                runs.setdefault((name, clients), []).append(run)
                line.append(f"{name} {run.rate:.1f}/s ({run.errors} errors)")
            print(f"  round {n + 1}, {clients} clients: " + "; ".join(line), flush=True)
    return runs


def ratio_to_peer(runs: dict[tuple[str, int], list[Run]], name: str, clients: int) -> tuple[float, list[float]]:
    """The median over rounds of `name`'s requests/s over the peer's in the same round, and each round's."""
    return round_ratios(runs[(name, clients)], runs[(PEER, clients)])


def table_rows(runs: dict[tuple[str, int], list[Run]], names: list[str], client_counts: list[int]) -> list[list[Any]]:
    """path, clients, requests/s, p50 ms, p99 ms, errors (all rounds pooled), ratio to the peer."""
    rows: list[list[Any]] = []
    for clients in client_counts:
        for name in names:
            run = pooled(runs[(name, clients)])
            ratio, _ = ratio_to_peer(runs, name, clients)
            rows.append([name, clients, run.rate, run.percentile_ms(50), run.percentile_ms(99), run.errors, ratio])
    return rows


def verdict(runs: dict[tuple[str, int], list[Run]], clients: int = TARGET_CLIENTS) -> str:
    """The issue's target at `clients`: hybrid at least TARGET_RATIO x the peer's rate, p99 no worse."""
    ratio, each = ratio_to_peer(runs, HYBRID, clients)
    mine, theirs = pooled(runs[(HYBRID, clients)]).percentile_ms(99), pooled(runs[(PEER, clients)]).percentile_ms(99)
    rounds = ", ".join(f"{r:.2f}" for r in each)
    return (
        f"{HYBRID} / {PEER} requests/s at {clients} clients: {ratio:.2f}x (rounds: {rounds}); target >= "
        f"{TARGET_RATIO:.0f}x: {'met' if ratio >= TARGET_RATIO else 'NOT met'}\n"
        f"p99 at {clients} clients: {mine:.1f} ms vs {theirs:.1f} ms: "
        f"{'no worse' if mine <= theirs else 'WORSE'} than {PEER}"
    )


def _encoder_line(settings: Settings) -> str:
    """What the server's encoder runs on: the same settings resolved by the same code, in this process."""
    encoder = make_encoder(settings)
    return f"{encoder.backend} in {str(encoder.dtype).removeprefix('torch.')} on {encoder.device}"


def compare(args: argparse.Namespace) -> None:
    """Index both (or reuse), serve both, alternate the loads, print the table and the target."""
    client_counts = [int(c) for c in args.clients.split(",") if c.strip()]
    queries = scifact_queries()
    folder = build_index(args.docs)
    peer_folder = txtai_peer.build_index(folder)
    served = serving_settings(Settings(data_dir=folder))
    print(cpu_line())
    print("load average at the start: " + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    with serve_process(folder) as (url, _pid), txtai_peer.serve(peer_folder, args.peer_threads) as (peer_url, facts):
        print(
            f"semsearch: {_encoder_line(served)}, {served.torch_threads} torch threads, "
            f"{served.search_threads} searches at once, 1 uvicorn worker"
        )
        print(
            f"txtai: torch {facts['torch']} in {facts['dtype']} (meanpooling, FAISS {txtai_peer.FAISS_COMPONENTS}),"
            f" {facts['torch_threads']} torch threads, {facts['workers']} uvicorn worker"
        )
        targets = [Target(DENSE, url, "dense"), Target(HYBRID, url, "hybrid"), Target(PEER, peer_url, txtai_peer.ask)]
        print(f"{args.rounds} rounds of {args.seconds:.0f} s per path at {args.clients} clients ...", flush=True)
        runs = alternate(targets, client_counts, queries, args.seconds, args.warmup, args.rounds)
    print("load average at the end: " + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    print_table(
        f"GET/POST /search, top_k={TOP_K}, {len(queries)} SciFact queries over {args.docs or 'all'} documents, "
        f"{args.rounds} alternating rounds of {args.seconds:.0f} s per path (ratio: median over rounds of "
        f"requests/s over {PEER}'s in the same round)",
        ["path", "clients", "requests/s", "p50 ms", "p99 ms", "errors", f"vs {PEER}"],
        table_rows(runs, [t.name for t in targets], client_counts),
    )
    if TARGET_CLIENTS in client_counts:
        print("\n" + verdict(runs))
