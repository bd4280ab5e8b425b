"""Recall of the `auto` index on hard data: tight synthetic clusters, raw and after the product's re-rank.

The corpus: 4,096 Gaussian centres drawn N(0, 1) in 384 dimensions, each point its centre plus
N(0, 0.35^2) noise per dimension, L2-normalised; the queries are fresh points drawn the same way
(not corpus members). Seeded, so every run sees the same vectors. No encoder is involved.

On such clusters the neighbours of a query are nearly equidistant, and 8-bit scalar codes (SQ8)
blur their order: the codes, not the lists visited, bound recall. The dense searcher therefore
fetches k * 4 candidates from a coded index and re-scores them exactly with their float32 vectors
from SQL (`Searcher._candidates` in search/query/searcher.py); `rerank` here mirrors it, taking the float
vectors from the in-memory corpus, which holds the same float32 values SQL holds.

Reported: recall@10 of the raw index search, recall@10 after re-ranking 40 (what the searcher
fetches for k = 10) and 100 candidates, bytes per vector of the saved index, build seconds.

    .venv/bin/python -m bench.recall [--n 1000000] [--queries 1000] [--fetch 40,100] [--json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import cpu_line, print_table, timed
from search.dense.index import VectorIndex

DIM = 384
CENTRES = 4096
SIGMA = 0.35
K = 10
RECALL_TARGET = 0.95
BYTES_TARGET = 512
_BLOCK = 100_000


def cluster_points(centres: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """`n` unit vectors, each a random centre plus N(0, SIGMA^2) noise per dimension, made in blocks."""
    out = np.empty((n, centres.shape[1]), dtype=np.float32)
    for start in range(0, n, _BLOCK):
        size = min(_BLOCK, n - start)
        block = centres[rng.integers(0, len(centres), size)]
        block += SIGMA * rng.standard_normal((size, centres.shape[1]), np.float32)
        out[start : start + size] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def tight_clusters(n: int, queries: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(corpus, queries): both drawn around the same CENTRES centres, from separate seeded streams."""
    centres = np.random.default_rng(seed).standard_normal((CENTRES, DIM), np.float32)
    corpus = cluster_points(centres, n, np.random.default_rng(seed + 1))
    return corpus, cluster_points(centres, queries, np.random.default_rng(seed + 2))


def exact_top(corpus: np.ndarray, queries: np.ndarray, k: int = K) -> np.ndarray:
    """Ids (1..n) of the exact top-`k` by inner product (a Flat index, freed afterwards)."""
    exact = VectorIndex(corpus.shape[1], "Flat")
    exact.add(np.arange(len(corpus), dtype=np.int64) + 1, corpus)
    return exact.search(queries, k)[1]


def rerank(corpus: np.ndarray, query: np.ndarray, ids: np.ndarray, k: int = K) -> np.ndarray:
    """The best `k` of candidate `ids` re-scored exactly, as `Searcher._candidates` does it (there the
    float vectors come from SQL; here from `corpus`, id i at row i - 1)."""
    found = ids[ids >= 0]
    exact = corpus[found - 1] @ query
    order = np.argsort(-exact, kind="stable")
    return found[order][:k]


def searched_reranked(index: VectorIndex, corpus: np.ndarray, queries: np.ndarray, fetch: int) -> np.ndarray:
    """Top-K ids per query: `fetch` candidates from one batch search of `index`, each row re-ranked."""
    ids = index.search(queries, fetch)[1]
    return np.stack([rerank(corpus, q, row) for q, row in zip(queries, ids, strict=True)])


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean share of each row of `truth` (top-k ids) present in the same row of `found`."""
    return float(np.mean([len(set(f.tolist()) & set(t.tolist())) / len(t) for f, t in zip(found, truth, strict=True)]))


def build_auto(corpus: np.ndarray) -> tuple[VectorIndex, float, float]:
    """The index `auto` picks for `corpus` (ids 1..n), its build seconds and bytes per vector on disk."""
    index = VectorIndex(corpus.shape[1], "auto")
    _, seconds = timed(lambda: index.add(np.arange(len(corpus), dtype=np.int64) + 1, corpus))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "index.faiss"
        index.save(path)
        size = path.stat().st_size
    return index, seconds, size / len(corpus)


def measure(
    index: VectorIndex, corpus: np.ndarray, queries: np.ndarray, truth: np.ndarray, fetches: list[int]
) -> dict[str, Any]:
    """Recall@10 of the raw search and after re-ranking each candidate count in `fetches`, with the
    seconds each batch search (and its re-rank) took."""
    (_, raw), raw_s = timed(lambda: index.search(queries, K))
    out: dict[str, Any] = {"recall_raw": recall(raw, truth), "search_raw_s": raw_s, "rerank": {}}
    for fetch in fetches:
        top, seconds = timed(partial(searched_reranked, index, corpus, queries, fetch))
        out["rerank"][fetch] = {"recall": recall(top, truth), "seconds": seconds}
    return out


def table_rows(result: dict[str, Any]) -> list[list[Any]]:
    """[measure, value, target, met] for the recall lines, the bytes per vector and the notes."""
    label = result["factory"] + (f" nprobe={result['nprobe']}" if result["nprobe"] else "")
    target = f">= {RECALL_TARGET}"
    raw = result["recall_raw"]
    rows: list[list[Any]] = [[f"recall@10, raw {label} top {K}", raw, target, _yes(raw >= RECALL_TARGET)]]
    for fetch, figures in result["rerank"].items():
        note = " (as Searcher: k*4)" if fetch == K * 4 else ""
        value = figures["recall"]
        rows.append([f"recall@10, re-rank {fetch} candidates{note}", value, target, _yes(value >= RECALL_TARGET)])
    per_vector = result["bytes_per_vector"]
    small = _yes(per_vector <= BYTES_TARGET)
    rows.append(["bytes per vector (saved index / n)", per_vector, f"<= {BYTES_TARGET}", small])
    rows.append(["build seconds (train + add)", result["build_s"], "", ""])
    rows.append(["dtype / backend (no encoder: synthetic vectors)", "float32 / faiss CPU", "", ""])
    return rows


def evaluate(corpus: np.ndarray, queries: np.ndarray, truth: np.ndarray, fetches: list[int]) -> dict[str, Any]:
    """Build the `auto` index and gather every figure, with whether the searcher's re-rank (k*4
    candidates) and the index size meet their targets."""
    index, build_s, per_vector = build_auto(corpus)
    result: dict[str, Any] = {"n": len(corpus), "dim": corpus.shape[1], "queries": len(queries)}
    result |= {"factory": index.resolved_factory, "nprobe": index.nprobe, "build_s": build_s}
    result |= {"bytes_per_vector": per_vector, "note": "no encoder: synthetic vectors, float32"}
    result |= measure(index, corpus, queries, truth, fetches)
    searcher = result["rerank"].get(K * 4, {}).get("recall", 0.0)
    result["met"] = {"recall_rerank_40": searcher >= RECALL_TARGET, "bytes_per_vector": per_vector <= BYTES_TARGET}
    return result


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def main() -> None:
    """Make the corpus, the ground truth and the `auto` index; print one table against the targets."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--fetch", default="40,100", help="candidate counts to re-rank, comma-separated")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    fetches = [int(f) for f in args.fetch.split(",") if f]
    print(cpu_line())
    (corpus, queries), t_gen = timed(lambda: tight_clusters(args.n, args.queries, args.seed))
    print(f"{args.n} corpus + {len(queries)} query vectors ({CENTRES} centres, sigma {SIGMA}) in {t_gen:.1f} s")
    truth, t_truth = timed(lambda: exact_top(corpus, queries))
    print(f"exact top-{K} ground truth (Flat) in {t_truth:.1f} s")
    result = evaluate(corpus, queries, truth, fetches)
    title = f"auto on {args.n} x {DIM} tight clusters ({CENTRES} centres, sigma {SIGMA}), {len(queries)} queries"
    print_table(title, ["measure", "value", "target", "met"], table_rows(result))
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
