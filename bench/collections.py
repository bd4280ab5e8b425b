"""`make bench-collections`: what serving many collections costs one of them, in one run.

A deployment of `--small-collections` collections of `--small-chunks` chunks each and one of
`--large-chunks` (synthetic documents and unit vectors through the bulk write path, bench/scale.py's
`build`: no model time; each with its base index and keyword index), and a deployment holding only
the first small collection, built the same way. Against `semsearch serve --no-worker` processes over
real HTTP (keep-alive clients):

- search p50 on the first small collection, the full deployment's server against the lone one's, in
  alternating rounds: first with only that collection opened, then after every collection answered
  once; as dense searches given a `vector` (POST /search; the encoder out, so the figure is the
  collection's own cost) and as hybrid searches of a text (the real model embeds it, the keyword
  index answers too: what a user sees);
- the full server's resident memory once every collection answered, against the index files on disk
  (FAISS and keyword folders; also with the SQLite files) plus a server of one empty collection;
- start to first answer: spawning the full deployment's server to the first 200 of a search on a
  small collection, and (another spawn) on the large one, against an empty deployment's server
  (median of `--starts` alternating spawns of each).

    .venv/bin/python -m bench.collections [--small-collections 100] [--small-chunks 2000]
        [--large-chunks 1000000] [--rounds 10] [--starts 3] [--root DIR] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import faiss
import httpx
import numpy as np
import torch

from bench.common import cpu_line, print_table, serve_process
from bench.scale import build, rss_mib
from search.access import DEFAULT_COLLECTION
from search.collections import catalog
from search.collections.spec import CollectionSettings
from search.components import make_encoder, migrate, open_store
from search.embedding.encoder import Encoder
from search.settings import Settings

PROBE = "small-000"  # the small collection whose searches are timed
LARGE = "large"
QUERIES = 20  # per round and server
SERVE = ["--no-worker"]


def names(small: int) -> list[str]:
    """The small collections' names."""
    return [f"small-{i:03d}" for i in range(small)]


def deploy(folder: Path, sizes: dict[str, int], encoder: Encoder) -> None:
    """A deployment in `folder` with a collection of each size. Each is made once: a kept --root
    reuses those built to the size asked (a collection left half-built, or of another size, is
    made again), so an interrupted build resumes where it stopped."""
    server = Settings(data_dir=folder)
    migrate(server)
    deployment = open_store(server)
    began = time.perf_counter()
    for i, (name, n) in enumerate(sizes.items()):
        settings, created = catalog.create(server, deployment, name, CollectionSettings())
        done = settings.collection_dir / "built.json"
        if not created and done.exists() and json.loads(done.read_text()) == n:
            continue
        if not created:
            catalog.delete(server, deployment, name)
            settings, _ = catalog.create(server, deployment, name, CollectionSettings())
        built = build(settings, encoder, n)
        done.write_text(json.dumps(n))
        if n > 10_000 or i % 20 == 0:
            print(f"{folder.name}: {name} ({n:,} chunks, {built['index_type']}) built", flush=True)
    for info in catalog.listed(deployment):  # those of an earlier run with more collections
        if info.name not in sizes and info.name != DEFAULT_COLLECTION:
            catalog.delete(server, deployment, info.name)
    deployment.close()
    print(f"{folder.name}: {len(sizes)} collections ready in {time.perf_counter() - began:.0f} s", flush=True)


def files_mib(folder: Path) -> dict[str, float]:
    """Sizes on disk, MiB, of every collection's (`default` too) FAISS and keyword folders, and of
    the SQLite files."""
    server = Settings(data_dir=folder)
    deployment = open_store(server)
    try:
        every = [catalog.collection_settings(server, deployment, info.name) for info in catalog.listed(deployment)]
    finally:
        deployment.close()
    index = sum(_size(s.index_dir) + _size(s.keyword_dir) for s in every)
    sqlite = sum(p.stat().st_size for s in every for p in s.collection_dir.glob("semsearch.db*"))
    return {"index_mib": index / 2**20, "sqlite_mib": sqlite / 2**20}


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def search_ms(client: httpx.Client, url: str, collection: str, body: dict[str, Any]) -> float:
    """One POST /search on `collection`, in ms; it must answer 200 with `top_k` hits."""
    began = time.perf_counter()
    response = client.post(f"{url}/collections/{collection}/search", json=body)
    took = 1000 * (time.perf_counter() - began)
    assert response.status_code == 200, f"{collection}: {response.status_code} {response.text[:300]}"
    assert len(response.json()["results"]) == body["top_k"], f"{collection}: too few hits"
    return took


def bodies(dim: int, round_: int) -> dict[str, list[dict[str, Any]]]:
    """A round's searches: dense ones given a unit vector, hybrid ones given a text."""
    rng = np.random.default_rng(round_)
    vectors = rng.standard_normal((QUERIES, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return {
        "dense_vector": [{"vector": v.tolist(), "top_k": 10} for v in vectors],
        "hybrid_text": [
            {"query": f"synthetic document about topic {(round_ * QUERIES + i) % 97}", "top_k": 10}
            for i in range(QUERIES)
        ],
    }


def rounds(clients: dict[str, tuple[httpx.Client, str]], dim: int, n: int) -> dict[str, dict[str, float]]:
    """p50 ms of the probe's searches by mode and server, over `n` rounds alternating which goes first."""
    times: dict[str, dict[str, list[float]]] = {}
    order = list(clients)
    for r in range(n):
        for mode, batch in bodies(dim, r).items():
            for which in order if r % 2 == 0 else order[::-1]:
                client, url = clients[which]
                search_ms(client, url, PROBE, batch[0])  # the connection and the probe's pages warm
                took = [search_ms(client, url, PROBE, body) for body in batch]
                times.setdefault(mode, {}).setdefault(which, []).extend(took)
    return {mode: {k: statistics.median(v) for k, v in by.items()} for mode, by in times.items()}


def first_answer(folder: Path, collection: str) -> float:
    """Seconds from spawning the server of `folder` to its first 200 from a search on `collection`."""
    began = time.perf_counter()
    with serve_process(folder, wait_for=f"/collections/{collection}/search?q=first&k=1", args=SERVE):
        return time.perf_counter() - began


def file_backed_mib(pid: int) -> float:
    """The part of a process's resident memory that maps files (RssFile, MiB): here mostly SQLite's
    memory-mapped databases (search/storage/db.py), clean pages the kernel can drop and read again."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("RssFile:"):
            return int(line.split()[1]) / 1024
    return 0.0


def empty_server(folder: Path) -> tuple[float, float]:
    """A server over one empty collection: its resident memory, MiB, after one text search (one
    model), and the file-backed part of it."""
    with serve_process(folder, wait_for="/search?q=first&k=1", args=SERVE) as (_url, pid):
        time.sleep(2)
        return rss_mib(pid), file_backed_mib(pid)


def starts(empty: Path, full: Path, n: int) -> dict[str, float]:
    """Median seconds from spawning a server to its first answer, over `n` rounds of three spawns:
    an empty deployment's (the reference: imports and the model), the full one's answering on a small
    collection, and on the large one."""
    took: dict[str, list[float]] = {"empty": [], "small": [], "large": []}
    for _ in range(n):
        took["empty"].append(first_answer(empty, DEFAULT_COLLECTION))
        took["small"].append(first_answer(full, PROBE))
        took["large"].append(first_answer(full, LARGE))
    return {which: statistics.median(seconds) for which, seconds in took.items()}


def measure(root: Path, args: argparse.Namespace, encoder: Encoder) -> dict[str, Any]:
    """Every figure, with the deployments built under `root` first when missing."""
    full, alone = root / "full", root / "alone"
    sizes = {name: args.small_chunks for name in names(args.small_collections)} | {LARGE: args.large_chunks}
    deploy(alone, {PROBE: args.small_chunks}, encoder)
    deploy(full, sizes, encoder)
    out: dict[str, Any] = {"files": files_mib(full)}
    out["model_rss_mib"], out["model_rss_file_mib"] = empty_server(root / "empty")
    out["first_answer_s"] = starts(root / "empty", full, args.starts)
    wait_for = f"/collections/{PROBE}/search?q=first&k=1"
    with (
        serve_process(full, wait_for=wait_for, args=SERVE) as (full_url, full_pid),
        httpx.Client(timeout=300) as full_client,
        serve_process(alone, wait_for=wait_for, args=SERVE) as (alone_url, alone_pid),
        httpx.Client(timeout=300) as alone_client,
    ):
        clients = {"alone": (alone_client, alone_url), "full": (full_client, full_url)}
        out["probe_only"] = rounds(clients, encoder.dim, args.rounds)
        out["touch_ms"] = touch_all(full_client, full_url, list(sizes))
        out["all_open"] = rounds(clients, encoder.dim, args.rounds)
        time.sleep(2)
        out["rss_alone_mib"] = rss_mib(alone_pid)
        out["rss_full_mib"] = rss_mib(full_pid)
        out["rss_full_file_mib"] = file_backed_mib(full_pid)
    out["load_average"] = os.getloadavg()
    return out


def touch_all(client: httpx.Client, url: str, every: list[str]) -> dict[str, float]:
    """One hybrid search on every collection (each is opened by its first); the slowest small one's
    ms, their median, and the large one's."""
    body = {"query": "synthetic document about topic 3", "top_k": 10}
    took = {name: search_ms(client, url, name, body) for name in every}
    small = [ms for name, ms in took.items() if name != LARGE]
    return {"small_max": max(small), "small_median": statistics.median(small), "large": took[LARGE]}


def table(out: dict[str, Any]) -> list[list[Any]]:
    """The figures beside their references, ratios and the issue's targets."""
    rows: list[list[Any]] = []
    for phase in ("probe_only", "all_open"):
        for mode, p50 in out[phase].items():
            ratio = p50["full"] / p50["alone"]
            rows.append([f"p50 ms {mode}, {phase}", p50["full"], p50["alone"], ratio, "<= 1.5x alone", ratio <= 1.5])
    files, model = out["files"], out["model_rss_mib"]
    for label, mib in (("FAISS+keyword", files["index_mib"]), ("+SQLite", files["index_mib"] + files["sqlite_mib"])):
        ratio = out["rss_full_mib"] / (mib + model)
        reference = f"{mib:.0f} files + {model:.0f} model"
        rows.append([f"RSS MiB vs {label}", out["rss_full_mib"], reference, ratio, "<= 1.3x", ratio <= 1.3])
    anon = out["rss_full_mib"] - out["rss_full_file_mib"]
    model_anon = model - out["model_rss_file_mib"]
    ratio = anon / (files["index_mib"] + model_anon)
    reference = f"{files['index_mib']:.0f} files + {model_anon:.0f} model"
    rows.append(["RSS MiB less file-backed vs FAISS+keyword", anon, reference, ratio, "", ""])
    rows.append(["RSS MiB alone server", out["rss_alone_mib"], "", "", "", ""])
    first = out["first_answer_s"]
    for which, target in (("small", "<= 5 s"), ("large", "")):
        seconds = first[which]
        met: object = seconds <= 5 if target else ""
        reference = f"{first['empty']:.2f} empty"
        rows.append([f"start to 1st answer s, {which}", seconds, reference, seconds / first["empty"], target, met])
    touch = out["touch_ms"]
    rows.append(
        ["1st search ms (lazy open), small max", touch["small_max"], f"median {touch['small_median']:.1f}", "", "", ""]
    )
    rows.append(["1st search ms (lazy open), large", touch["large"], "", "", "", ""])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small-collections", type=int, default=100)
    parser.add_argument("--small-chunks", type=int, default=2000)
    parser.add_argument("--large-chunks", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=10, help=f"alternating rounds of {QUERIES} searches a server")
    parser.add_argument("--starts", type=int, default=3, help="spawns of each server for start to first answer")
    parser.add_argument("--root", type=Path, help="keep the deployments here (default: a temporary folder)")
    parser.add_argument("--json", action="store_true", help="end with one JSON line of every figure")
    args = parser.parse_args()
    print(cpu_line(), flush=True)
    encoder = make_encoder(Settings())  # as the servers make theirs: SEMSEARCH_* settings apply to both
    print(f"encoder: {encoder.model_name}, backend {encoder.backend}, dtype {encoder.dtype}", flush=True)
    print(f"threads: torch {torch.get_num_threads()}, faiss {faiss.omp_get_max_threads()}; database: SQLite")
    with tempfile.TemporaryDirectory(prefix="semsearch-collections-") as tmp:
        out = measure(args.root or Path(tmp), args, encoder)
    print(f"load average (1, 5, 15 min) as the measures ended: {out['load_average']}")
    print_table(
        f"collections: {args.small_collections} x {args.small_chunks:,} chunks + 1 x {args.large_chunks:,}; "
        f"searches on {PROBE}, full deployment's server against the lone collection's",
        ["measure", "value", "reference", "ratio", "target", "met"],
        table(out),
    )
    if args.json:
        print(json.dumps(out))


if __name__ == "__main__":
    main()
