"""Keyword and hybrid retrieval speed: keyword indexing docs/s beside the encoder's, and query latency
p50/p99 of dense, keyword and hybrid search at SciFact scale and on a synthetic corpus of `--n` chunks.

Every figure is a ratio to a reference measured in the same run: keyword indexing against the
encoder embedding the same documents, keyword and hybrid latency against dense latency (the modes
are interleaved query by query, so machine load weighs on all three alike). Latency is the whole
in-process path of `HybridSearcher.search`: the query's embedding (dense, hybrid), the FAISS and
tantivy searches with `candidates` documents each, the SQL join of the chunk rows, fusion.

The dense side holds random unit vectors (FAISS search costs the same whatever they say): embedding
10,344 SciFact chunks would take this benchmark minutes for nothing it measures.

    .venv/bin/python -m bench.keyword [--n 1000000] [--queries 300] [--skip-synthetic] [--json]
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench import common
from bench.common import print_table, scifact_docs, scifact_queries, timed
from indexer.ingest.chunking import Chunker
from indexer.write.keyword_writer import KeywordWriter
from indexer.write.publisher import Publisher
from search.components import make_encoder, open_hybrid, open_keyword, open_store
from search.dense.catalog import IndexCatalog
from search.dense.index import VectorIndex, auto_factory
from search.dense.segments import SegmentView
from search.embedding.encoder import Encoder
from search.query.hits import MODES, FusionConfig
from search.query.hybrid import HybridSearcher
from search.query.searcher import Searcher
from search.settings import Settings
from search.storage import changes
from search.storage.records import ChunkIn, DocumentIn
from search.storage.store import Store
from search.storage.vectors import VectorRows


def cpu_flags() -> str:
    """The SIMD flags that matter to the encoder and FAISS."""
    flags = Path("/proc/cpuinfo").read_text().split("flags", 2)[1].split("\n", 1)[0].split()
    wanted = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")
    return " ".join(f for f in wanted if f in flags) or "none of avx2/avx512"


def load(settings: Settings, encoder: Encoder, docs: list[DocumentIn]) -> Store:
    """Rows of `docs` (chunked as `semsearch index` would), a random unit vector per chunk in SQL, a
    base file holding them (factory `auto`: Flat at SciFact's size, IVF at a million)."""
    store = open_store(settings)
    chunker = Chunker(encoder, settings.chunk_size, settings.chunk_overlap)
    rows = VectorRows(store, encoder.space.key, encoder.dim)
    rng = np.random.default_rng(0)
    for start in range(0, len(docs), 5000):
        part = docs[start : start + 5000]
        written = store.write_documents(list(zip(part, chunker.split(part), strict=True)))
        vectors = rng.standard_normal((len(written.new_chunk_ids), encoder.dim)).astype(np.float32)
        rows.write(written.new_chunk_ids, vectors / np.linalg.norm(vectors, axis=1, keepdims=True))
    Publisher(IndexCatalog(store, settings.index_dir), encoder, "auto").sync(force=True)
    return store


def latencies(searcher: HybridSearcher, queries: list[str], warm: int = 10) -> dict[str, np.ndarray]:
    """Milliseconds per query and mode, the modes interleaved (rotated) query by query."""
    times: dict[str, list[float]] = {mode: [] for mode in MODES}
    for n, query in enumerate(queries):
        for shift in range(len(MODES)):
            mode = MODES[(n + shift) % len(MODES)]
            started = time.perf_counter()
            searcher.search(query, k=10, mode=mode)
            seconds = time.perf_counter() - started
            if n >= warm:
                times[mode].append(seconds * 1000)
    return {mode: np.asarray(t) for mode, t in times.items()}


def latency_rows(label: str, times: dict[str, np.ndarray]) -> list[list[Any]]:
    """[corpus, mode, queries, p50, p99, p50 vs dense]."""
    dense = float(np.percentile(times["dense"], 50))
    return [
        [label, mode, len(t), float(np.percentile(t, 50)), float(np.percentile(t, 99)), np.percentile(t, 50) / dense]
        for mode, t in times.items()
    ]


def scifact(encoder: Encoder, n_queries: int, tmp: Path) -> dict[str, Any]:
    """Indexing speed and latency over all of SciFact."""
    settings = Settings(data_dir=tmp / "scifact")
    docs = [DocumentIn(str(d["_id"]), d["text"], d.get("title", "")) for d in scifact_docs()]
    store = load(settings, encoder, docs)
    chunks = store.counts()["chunks"]
    keyword = open_keyword(settings)
    _, kw_seconds = timed(lambda: KeywordWriter(keyword).catch_up(store))
    sample = docs[:300]
    _, enc_seconds = timed(lambda: encoder.encode([f"{d.title} {d.text}" for d in sample]))
    encoder_rate, keyword_rate = len(sample) / enc_seconds, len(docs) / kw_seconds
    indexing = [
        ["encoder (Encoder().encode, title + text)", len(sample), encoder_rate, 1.0],
        [f"keyword index from SQL ({chunks} chunks)", len(docs), keyword_rate, keyword_rate / encoder_rate],
    ]
    times = latencies(open_hybrid(settings, encoder, store), scifact_queries()[:n_queries])
    store.close()
    return {"indexing": indexing, "latency": latency_rows(f"SciFact ({chunks} chunks)", times)}


def synthetic_docs(n: int, vocabulary: int = 50_000, words: int = 60) -> tuple[list[DocumentIn], list[str]]:
    """`n` one-chunk documents of Zipf-distributed made-up words, and queries of 2-4 such words."""
    rng = random.Random(1)
    letters = "abcdefghijklmnopqrstuvwxyz"
    vocab = ["".join(rng.choices(letters, k=rng.randint(3, 9))) for _ in range(vocabulary)]
    weights = [1 / (r + 1) for r in range(vocabulary)]
    docs = [DocumentIn(f"s{i}", " ".join(rng.choices(vocab, weights, k=words)), "") for i in range(n)]
    queries = [" ".join(rng.choices(vocab, weights, k=rng.randint(2, 4))) for _ in range(1000)]
    return docs, queries


def synthetic(encoder: Encoder, n: int, n_queries: int, tmp: Path) -> dict[str, Any]:
    """Keyword indexing and latency of the three modes over `n` synthetic chunks. Their vectors go
    straight into an index of the type `auto` picks at that size (not through SQL: a million would
    be 1.5 GB of rows for nothing measured here)."""
    settings = Settings(data_dir=tmp / "synthetic")
    docs, queries = synthetic_docs(n)
    store = open_store(settings)
    started = time.perf_counter()
    ids: list[int] = []
    for start in range(0, n, 10_000):
        part = docs[start : start + 10_000]
        ids += store.write_documents([(d, [ChunkIn(0, d.text, 0, len(d.text))]) for d in part]).new_chunk_ids
    load_seconds = time.perf_counter() - started
    keyword = open_keyword(settings)
    _, kw_seconds = timed(lambda: KeywordWriter(keyword).catch_up(store))
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((n, encoder.dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index = VectorIndex(encoder.dim, auto_factory(n))
    _, ann_seconds = timed(lambda: index.add(np.asarray(ids, dtype=np.int64), vectors))
    print(f"synthetic: {n} rows in {load_seconds:.0f} s, keyword index {kw_seconds:.1f} s, ANN {ann_seconds:.0f} s")
    with store.session() as s:
        dense = Searcher(encoder, SegmentView(index, changes.head(s)), store)
    times = latencies(HybridSearcher(dense, keyword, FusionConfig()), queries[:n_queries])
    store.close()
    label = f"synthetic ({n} chunks, {index.resolved_factory})"
    return {"keyword_docs_per_s": n / kw_seconds, "latency": latency_rows(label, times)}


def main() -> None:
    """Run the parts asked for and print their tables (and a JSON line with --json)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=1_000_000, help="synthetic chunks (default 1,000,000)")
    parser.add_argument("--queries", type=int, default=300, help="queries per mode (default 300)")
    parser.add_argument("--skip-synthetic", action="store_true")
    parser.add_argument("--json", action="store_true", help="end with one JSON line of every figure")
    parser.add_argument("--scifact", type=Path, default=common.SCIFACT, help="the BEIR SciFact folder")
    args = parser.parse_args()
    common.SCIFACT = args.scifact
    encoder = make_encoder(Settings())
    print(f"CPU flags: {cpu_flags()}; encoder {encoder.backend} {encoder.dtype}")
    with tempfile.TemporaryDirectory(prefix="bench-keyword-") as tmp:
        result = {"scifact": scifact(encoder, args.queries, Path(tmp))}
        if not args.skip_synthetic:
            result["synthetic"] = synthetic(encoder, args.n, args.queries, Path(tmp))
    print_table(
        "Indexing (SciFact, 5,183 documents)", ["path", "docs", "docs/s", "vs encoder"], result["scifact"]["indexing"]
    )
    rows = result["scifact"]["latency"] + (result["synthetic"]["latency"] if "synthetic" in result else [])
    print_table("Query latency, top_k 10", ["corpus", "mode", "queries", "p50 ms", "p99 ms", "p50 vs dense"], rows)
    if args.json:
        print(json.dumps(result, default=float))


if __name__ == "__main__":
    main()
