"""Approximate indexes against exact Flat search on 1M vectors of dimension 384, in one run.

The query side is real: the SciFact queries embedded by the default encoder. The corpus is a
reproducible synthetic one shaped like real sentence embeddings: cluster centres drawn around real
SciFact vectors, points scattered around them with the covariance of the real vectors, then
L2-normalised (uniform noise would make every index look bad and every recall meaningless).

For each index type: build seconds, save seconds (what each publish pays), bytes per vector,
recall@10 against exact search, single-query latency and batch QPS, each also as a ratio to Flat.

    .venv/bin/python -m bench.ann [--n 1000000] [--queries 1000]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import print_table, scifact_docs, scifact_queries, timed
from search.dense.index import VectorIndex
from search.embedding.encoder import Encoder


def real_vectors(encoder: Encoder, n_docs: int) -> tuple[np.ndarray, np.ndarray]:
    """(query vectors, document vectors) of SciFact, embedded by the default encoder."""
    queries = encoder.encode(scifact_queries())
    docs = encoder.encode([f"{d['title']} {d['text']}" for d in scifact_docs(n_docs)])
    return queries, docs


def synthetic_corpus(seed_vectors: np.ndarray, n: int, clusters: int = 4096, seed: int = 0) -> np.ndarray:
    """`n` unit vectors in `clusters` clusters shaped by the covariance of `seed_vectors`."""
    rng = np.random.default_rng(seed)
    centred = seed_vectors - seed_vectors.mean(axis=0)
    cov = centred.T @ centred / len(centred) + 1e-6 * np.eye(seed_vectors.shape[1])
    chol = np.linalg.cholesky(cov).astype(np.float32)
    picks = rng.integers(0, len(seed_vectors), clusters)
    centres = seed_vectors[picks] + 0.6 * (rng.standard_normal((clusters, seed_vectors.shape[1]), np.float32) @ chol.T)
    out = np.empty((n, seed_vectors.shape[1]), dtype=np.float32)
    for start in range(0, n, 100_000):
        size = min(100_000, n - start)
        which = rng.integers(0, clusters, size)
        noise = rng.standard_normal((size, seed_vectors.shape[1]), np.float32) @ chol.T
        block = centres[which] + 0.5 * noise
        out[start : start + size] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def build(factory: str, corpus: np.ndarray) -> tuple[VectorIndex, float, float, float]:
    """An index of `corpus` (ids 1..n): the index, its build seconds, its bytes per vector on disk and
    the seconds one save takes (what every publish of a worker pays at this size)."""
    index = VectorIndex(corpus.shape[1], factory)
    _, seconds = timed(lambda: index.add(np.arange(len(corpus), dtype=np.int64) + 1, corpus))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "index.faiss"
        _, save_seconds = timed(lambda: index.save(path))
        size = path.stat().st_size
    return index, seconds, size / len(corpus), save_seconds


def measure(index: VectorIndex, label: str, queries: np.ndarray, truth: np.ndarray) -> dict[str, Any]:
    """Recall@10 against exact search, single-query latency (200 queries one by one) and batch QPS."""
    (_, found), batch = timed(lambda: index.search(queries, 10))
    recall = float(np.mean([len(set(found[i]) & set(truth[i])) / 10 for i in range(len(queries))]))
    singles = queries[:200]
    start = time.perf_counter()
    for q in singles:
        index.search(q, 10)
    latency = (time.perf_counter() - start) / len(singles)
    return {"index": label, "recall@10": recall, "latency_ms": latency * 1000, "qps": len(queries) / batch}


def run_all(corpus: np.ndarray, queries: np.ndarray, truth: np.ndarray) -> list[dict[str, Any]]:
    """Flat, `auto` (at its own nprobe and two others, one build) and HNSW32 with SQ8."""
    results = []
    for factory, nprobes in (("Flat", [None]), ("auto", [None, 16, 256]), ("HNSW32,SQ8", [None])):
        index, seconds, per_vector, save_seconds = build(factory, corpus)
        for nprobe in nprobes:
            if nprobe is not None:
                if index.nprobe is None:  # `auto` chose Flat at this size: nothing to vary
                    continue
                index.set_nprobe(nprobe)
            label = index.resolved_factory + (f" nprobe={nprobe}" if nprobe else "")
            if factory == "auto" and nprobe is None:
                label = f"auto -> {label}" + (f" nprobe={index.nprobe}" if index.nprobe else "")
            row = measure(index, label, queries, truth)
            results.append({**row, "build_s": seconds, "bytes_per_vector": per_vector, "save_s": save_seconds})
        del index
    return results


def main() -> None:
    """Build the corpus, measure every index type, print one table with ratios to Flat."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--seed-docs", type=int, default=1500, help="SciFact documents shaping the corpus")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    encoder = Encoder()
    (query_vectors, doc_vectors), t_embed = timed(lambda: real_vectors(encoder, args.seed_docs))
    queries = query_vectors[: args.queries]
    corpus, t_gen = timed(lambda: synthetic_corpus(np.concatenate([query_vectors, doc_vectors]), args.n))
    print(f"{args.n} synthetic vectors in {t_gen:.1f} s; {len(queries)} real queries (embedding took {t_embed:.1f} s)")
    exact = VectorIndex(corpus.shape[1], "Flat")
    exact.add(np.arange(len(corpus), dtype=np.int64) + 1, corpus)
    truth = exact.search(queries, 10)[1]
    del exact
    results = run_all(corpus, queries, truth)
    flat = results[0]
    rows = [
        [
            r["index"],
            r["build_s"],
            r["save_s"],
            r["bytes_per_vector"],
            r["recall@10"],
            r["latency_ms"],
            flat["latency_ms"] / r["latency_ms"],
            r["qps"],
            r["qps"] / flat["qps"],
        ]
        for r in results
    ]
    header = ["index", "build s", "save s", "bytes/vec", "recall@10", "1-query ms", "x Flat", "batch QPS", "x Flat"]
    print_table(f"ANN on {args.n} x {corpus.shape[1]} (ratios against exact Flat search)", header, rows)
    if args.json:
        print(json.dumps(results))


if __name__ == "__main__":
    main()
