"""How the keyword library was chosen: tantivy against bm25s on BEIR SciFact (300 test queries), over
whole documents and over the project's chunks (a document scoring as its best chunk), for nDCG@10,
Recall@100 and indexing speed. bm25s is not a dependency: `pip install bm25s PyStemmer` first.

    .venv/bin/python -m bench.keyword_libs
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import common
from bench.common import print_table, scifact_docs
from indexer.cli.evaluate import load_qrels, load_queries, score_run
from indexer.ingest.chunking import Chunker
from search.components import make_encoder
from search.keyword.analyzer import Analyzer
from search.settings import Settings
from search.storage.records import DocumentIn

Units = list[tuple[str, str]]  # (document id, text indexed)
Ranked = list[list[tuple[int, float]]]  # per query: (unit index, score), best first


def units_of(chunked: bool) -> Units:
    """SciFact as (document id, title + text) per document, or per chunk as `semsearch index` cuts them."""
    docs = [DocumentIn(str(d["_id"]), d["text"], d.get("title", "")) for d in scifact_docs()]
    if not chunked:
        return [(d.external_id, f"{d.title}\n{d.text}") for d in docs]
    chunker = Chunker(make_encoder(Settings()))
    out: Units = []
    for start in range(0, len(docs), 512):
        part = docs[start : start + 512]
        for doc, chunks in zip(part, chunker.split(part), strict=True):
            out += [(doc.external_id, f"{doc.title}\n{c.text}") for c in chunks]
    return out


def run_tantivy(units: Units, queries: list[str]) -> tuple[Ranked, float]:
    """The analyzer semsearch uses, BM25 as tantivy has it (k1 1.2, b 0.75)."""
    import tantivy

    analyzer = Analyzer("english")
    schema = (
        tantivy.SchemaBuilder()
        .add_unsigned_field("u", fast=True)
        .add_text_field("text", tokenizer_name=analyzer.name, index_option="freq")
        .build()
    )
    index = tantivy.Index(schema, path=tempfile.mkdtemp(prefix="bench-tantivy-"))
    index.register_tokenizer(analyzer.name, analyzer.tantivy)
    started = time.perf_counter()
    writer = index.writer(64_000_000, 1)
    for n, (_, text) in enumerate(units):
        doc = tantivy.Document()
        doc.add_unsigned("u", n)
        doc.add_text("text", analyzer.index_text(text))
        writer.add_document(doc)
    writer.commit()
    writer.wait_merging_threads()
    seconds = time.perf_counter() - started
    index.reload()
    searcher = index.searcher()
    ranked: Ranked = []
    for query in queries:
        terms = analyzer.query_terms(query)
        clauses = [(tantivy.Occur.Should, tantivy.Query.term_query(schema, "text", t)) for t in terms]
        hits = searcher.search(tantivy.Query.boolean_query(clauses), 400, count=False).hits
        ids = searcher.fast_field_values("u", [a for _, a in hits])
        ranked.append([(int(i), float(s)) for (s, _), i in zip(hits, ids, strict=True) if i is not None])
    return ranked, seconds


def run_bm25s(units: Units, queries: list[str], k1: float, b: float) -> tuple[Ranked, float]:
    """bm25s's Lucene variant with its English stopwords and PyStemmer's Snowball English stemmer."""
    import bm25s
    import Stemmer

    stemmer = Stemmer.Stemmer("english")
    started = time.perf_counter()
    tokens = bm25s.tokenize([t for _, t in units], stopwords="en", stemmer=stemmer, show_progress=False)
    retriever = bm25s.BM25(method="lucene", k1=k1, b=b)
    retriever.index(tokens, show_progress=False)
    seconds = time.perf_counter() - started
    asked = bm25s.tokenize(queries, stopwords="en", stemmer=stemmer, show_progress=False)
    found, scores = retriever.retrieve(asked, k=400, show_progress=False, n_threads=1)
    return [list(zip(found[i].tolist(), scores[i].tolist(), strict=True)) for i in range(len(queries))], seconds


def score(units: Units, qids: list[str], ranked: Ranked) -> dict[str, float]:
    """nDCG@10 and Recall@100, a document scoring as its best unit."""
    run: dict[str, dict[str, float]] = {}
    for qid, hits in zip(qids, ranked, strict=True):
        best: dict[str, float] = {}
        for unit, _ in hits:
            best.setdefault(units[unit][0], float(100 - len(best)))  # by rank: our order, not tie-breaks
            if len(best) == 100:
                break
        run[qid] = best
    return score_run(load_qrels(common.SCIFACT / "qrels" / "test.tsv"), run)


def main() -> None:
    """One row per library, parameters and unit."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scifact", type=Path, default=common.SCIFACT, help="the BEIR SciFact folder")
    common.SCIFACT = parser.parse_args().scifact
    queries = load_queries(common.SCIFACT / "queries.jsonl")
    qrels = load_qrels(common.SCIFACT / "qrels" / "test.tsv")
    qids = sorted(qrels)
    texts = [queries[q] for q in qids]
    libraries: list[tuple[str, Callable[[Units, list[str]], tuple[Ranked, float]]]] = [
        ("tantivy 0.27 (k1 1.2, b 0.75)", run_tantivy),
        ("bm25s lucene (k1 1.2, b 0.75)", lambda u, q: run_bm25s(u, q, 1.2, 0.75)),
        ("bm25s lucene (k1 0.9, b 0.4)", lambda u, q: run_bm25s(u, q, 0.9, 0.4)),
    ]
    rows: list[list[Any]] = []
    for chunked in (False, True):
        units = units_of(chunked)
        for name, run in libraries:
            ranked, seconds = run(units, texts)
            metrics = score(units, qids, ranked)
            unit = f"chunks ({len(units)})" if chunked else f"documents ({len(units)})"
            rows.append([name, unit, metrics["ndcg@10"], metrics["recall@100"], seconds, len(units) / seconds])
    header = ["library", "indexed", "nDCG@10", "Recall@100", "index s", "units/s"]
    print_table("Keyword libraries on SciFact (300 test queries)", header, rows)


if __name__ == "__main__":
    main()
