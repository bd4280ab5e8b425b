"""`make bench-scale`: what a write, a filter and a start cost at N chunks and at N/10, in one run.

For each size: N synthetic documents (one chunk each, metadata `bucket` = i % 1000 and `half` = i even)
go through the bulk write path with precomputed unit vectors (no model time), and are merged into a
base file (`auto`). Then, with the real model: `semsearch index` of 10 documents and `semsearch delete`
in-process (model load aside), and against `semsearch serve` in its own process: start to first
answer, resident memory idle, GET /search p50 with no filter and with 0.1% and 50% filters, and PUT
`?wait=true` write-to-searchable p50. Each figure is printed beside its ratio between the sizes and
the issue's target.

    .venv/bin/python -m bench.scale [--n 1000000] [--json] [--root DIR] [--database-url URL]

With `--database-url` (a PostgreSQL server, e.g. postgresql+psycopg://postgres@127.0.0.1:5432) each
size gets a database of its own on it (`semsearch_scale_<n>`, created when missing, kept with --root);
the default is SQLite files in the data directories.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from bench.common import cpu_line, print_table, serve_process
from indexer.write.pipeline import open_indexer
from search.components import make_encoder
from search.embedding.encoder import Encoder
from search.settings import Settings
from search.storage.records import ChunkIn, DocumentIn
from search.storage.store import Store
from search.storage.vectors import Embedded, VectorRows

BATCH = 10_000


def load(settings: Settings, encoder: Encoder, n: int) -> float:
    """Write `n` documents with precomputed vectors; returns the write path's documents/s (the
    document and chunk rows, before any embedding)."""
    store = Store(settings.resolved_database_url)
    rows = VectorRows(store, encoder.space.key, encoder.dim)
    rng = np.random.default_rng(0)
    write_seconds = 0.0
    for start in range(0, n, BATCH):
        docs = []
        for i in range(start, min(n, start + BATCH)):
            text = f"synthetic document {i} about topic {i % 97}"
            meta = {"bucket": i % 1000, "half": i % 2 == 0}
            docs.append((DocumentIn(f"d{i}", text, "", meta), [ChunkIn(0, text, 0, len(text))]))
        began = time.perf_counter()
        result = store.write_documents(docs)
        write_seconds += time.perf_counter() - began
        vectors = rng.standard_normal((len(docs), encoder.dim)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        items = [
            Embedded(doc_id, d.content_hash, ids, [], vectors[j : j + 1])
            for j, ((d, _), (doc_id, ids)) in enumerate(zip(docs, result.written, strict=True))
        ]
        with store.session() as s:
            rows.commit_embedded(s, items)
    store.close()
    return n / write_seconds


def build(settings: Settings, encoder: Encoder, n: int) -> dict[str, Any]:
    """`n` synthetic documents written (`load`) and merged into a base index, the keyword index caught
    up: the write path's documents/s, the seconds it all took and the base index's type."""
    began = time.perf_counter()
    out: dict[str, Any] = {"write_docs_per_s": load(settings, encoder, n)}
    indexer = open_indexer(settings, encoder)
    merged = indexer.publisher.sync(force=True)
    assert merged is not None
    indexer.publish()  # the other derived indexes (keyword) catch up too, as `semsearch index` ends
    indexer.store.close()
    out["load_s"] = time.perf_counter() - began
    out["index_type"] = merged.index_type
    return out


def cli_costs(settings: Settings, encoder: Encoder) -> tuple[float, float]:
    """Seconds for indexing 10 new documents and for deleting one, in-process (the model is loaded)."""
    indexer = open_indexer(settings, encoder)
    docs = [
        DocumentIn(f"new{i}-{time.time_ns()}", f"a brand new text number {i} on gene expression") for i in range(10)
    ]
    began = time.perf_counter()
    indexer.run(docs)
    indexed = time.perf_counter() - began
    began = time.perf_counter()
    indexer.store.delete_documents([docs[0].external_id])
    indexer.publish()
    deleted = time.perf_counter() - began
    indexer.store.close()
    return indexed, deleted


def rss_mib(pid: int) -> float:
    """Resident memory of a process, MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def p50_ms(client: httpx.Client, url: str, params: dict[str, str], matches: int, n: int = 30) -> float:
    """Median latency of GET /search, in ms, over `n` distinct queries (after one warm-up); each must
    return 10 hits, or all `matches` where fewer pass its filter."""
    client.get(f"{url}/search", params={"q": "warm up", **params})
    times = []
    for i in range(n):
        began = time.perf_counter()
        response = client.get(f"{url}/search", params={"q": f"gene expression topic {i}", "k": "10", **params})
        times.append(time.perf_counter() - began)
        response.raise_for_status()
        found = len(response.json()["results"])
        assert found == min(10, matches), f"{found} hits for {params}: top_k must be filled"
    return 1000 * statistics.median(times)


def serve_costs(folder: Path, n: int, database_url: str | None = None) -> dict[str, float]:
    """Start to first answer, idle RSS, search p50s and PUT-to-searchable p50 against `semsearch serve`."""
    out: dict[str, float] = {}
    began = time.perf_counter()
    args = ["--database-url", database_url] if database_url else []
    server = serve_process(folder, wait_for="/search?q=first&k=1", args=args)
    with server as (url, pid), httpx.Client(timeout=120) as client:
        out["start_s"] = time.perf_counter() - began
        time.sleep(2)
        out["rss_mib"] = rss_mib(pid)
        out["search_ms"] = p50_ms(client, url, {}, n)
        out["filter_0.1%_ms"] = p50_ms(client, url, {"filter": json.dumps({"bucket": 7})}, n // 1000)
        out["filter_50%_ms"] = p50_ms(client, url, {"filter": json.dumps({"half": True})}, n // 2)
        puts = []
        for i in range(5):
            began = time.perf_counter()
            body = {"text": f"written at {time.time_ns()}, number {i}, about enzymes", "metadata": {"bucket": 3}}
            response = client.put(f"{url}/documents/put{i}?wait=true", json=body)
            puts.append(time.perf_counter() - began)
            assert response.status_code == 200, response.text
        out["put_wait_s"] = statistics.median(puts)
        out["rss_after_mib"] = rss_mib(pid)
    return out


def database(server: str | None, name: str, fresh: bool = False) -> str | None:
    """The URL of database `name` on the PostgreSQL `server`, created when missing (dropped first
    when `fresh`); None (SQLite) without a server."""
    if server is None:
        return None
    import psycopg

    admin = server.replace("postgresql+psycopg", "postgresql") + "/postgres"
    with psycopg.connect(admin, autocommit=True) as c:
        if fresh:
            c.execute(f'DROP DATABASE IF EXISTS "{name}"')
        if c.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None:
            c.execute(f'CREATE DATABASE "{name}"')
    return f"{server}/{name}"


def measure(n: int, encoder: Encoder, root: Path, server: str | None = None) -> dict[str, float]:
    """Every figure at one corpus size."""
    folder = root / (f"pg-n{n}" if server else f"n{n}")
    url = database(server, f"semsearch_scale_{n}")
    settings = Settings(data_dir=folder, database_url=url)
    loaded = folder / "loaded.json"  # written once the corpus is in: a kept --root reuses it
    out: dict[str, float]
    if loaded.exists():
        out = json.loads(loaded.read_text())
    else:
        out = build(settings, encoder, n)
        print(f"n={n}: loaded, base {out.pop('index_type')}", flush=True)
        loaded.write_text(json.dumps(out))
    out["index_mib"] = sum(p.stat().st_size for p in settings.index_dir.glob("*.faiss")) / 2**20
    out["index_10_s"], out["delete_s"] = cli_costs(settings, encoder)
    out.update(serve_costs(folder, n, url))
    print(f"n={n}: {json.dumps({k: round(v, 3) for k, v in out.items()})}", flush=True)
    return out


Check = Callable[[float, float], bool] | None
TARGETS: dict[str, tuple[str, Check]] = {
    "write_docs_per_s": (">= 5000/s", lambda big, small: big >= 5000),
    "put_wait_s": ("<= 1.5 s and <= 1.5x N/10", lambda big, small: big <= 1.5 and big <= 1.5 * small),
    "index_10_s": ("<= 2x empty store", None),
    "delete_s": ("", None),
    "start_s": ("<= 5 s", lambda big, small: big <= 5),
    "search_ms": ("", None),
    "filter_0.1%_ms": ("<= 50 ms", lambda big, small: big <= 50),
    "filter_50%_ms": ("<= 2x unfiltered", None),
    "rss_mib": ("<= 1.3x files + model", None),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1_000_000, help="the large corpus (the small one is n/10)")
    parser.add_argument("--json", action="store_true", help="end with one JSON line of every figure")
    parser.add_argument(
        "--root", type=Path, help="keep the corpora here (default: a temporary folder); a rerun reuses them"
    )
    parser.add_argument("--database-url", help="a PostgreSQL server's URL (no database name): measure there")
    args = parser.parse_args()
    print(cpu_line(), flush=True)
    encoder = make_encoder(Settings())  # as the server makes its own: SEMSEARCH_* settings apply to both
    print(f"encoder: {encoder.model_name}, backend {encoder.backend}, dtype {encoder.dtype}", flush=True)
    print(f"database: {'PostgreSQL ' + args.database_url if args.database_url else 'SQLite'}", flush=True)
    with tempfile.TemporaryDirectory(prefix="semsearch-scale-") as tmp:
        root = args.root or Path(tmp)
        empty = measure_empty(encoder, root, args.database_url)
        small = measure(args.n // 10, encoder, root, args.database_url)
        big = measure(args.n, encoder, root, args.database_url)
    rows: list[list[Any]] = []
    for key, (target, check) in TARGETS.items():
        met: object = "" if check is None else check(big[key], small[key])
        if key == "index_10_s":
            met = big[key] <= 2 * empty["index_10_s"]
            target = f"<= 2x empty ({empty['index_10_s']:.2f} s)"
        if key == "filter_50%_ms":
            met = big[key] <= 2 * big["search_ms"]
        if key == "rss_mib":
            met = big[key] <= 1.3 * (big["index_mib"] + empty["rss_mib"])
            target = f"<= 1.3x ({big['index_mib']:.0f} MiB files + {empty['rss_mib']:.0f} MiB empty server)"
        rows.append([key, small[key], big[key], big[key] / small[key] if small[key] else "", target, met])
    print_table(
        f"scale: N/10 = {args.n // 10:,} vs N = {args.n:,} chunks",
        ["measure", "N/10", "N", "ratio", "target", "met"],
        rows,
    )
    if args.json:
        print(json.dumps({"empty": empty, "small": small, "big": big}))


def measure_empty(encoder: Encoder, root: Path, server: str | None = None) -> dict[str, float]:
    """The references on an empty store: indexing 10 documents, and a server's memory with no index."""
    url = database(server, "semsearch_scale_empty", fresh=True)  # empty also when --root is kept
    settings = Settings(data_dir=root / ("pg-empty" if server else "empty"), database_url=url)
    shutil.rmtree(settings.data_dir, ignore_errors=True)
    index_10, _ = cli_costs(settings, encoder)
    args = ["--database-url", url] if url else []
    with serve_process(settings.data_dir, wait_for="/search?q=first&k=1", args=args) as (_url, pid):
        time.sleep(2)
        return {"index_10_s": index_10, "rss_mib": rss_mib(pid)}


if __name__ == "__main__":
    main()
