"""BEIR-style evaluation: index a corpus, search every judged query, score nDCG@10 and Recall@100."""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

import pytrec_eval

from indexer.ingest.sources import read_sources
from indexer.write.pipeline import open_indexer
from search.components import migrate, open_keyword
from search.query.hits import FusionConfig, check_mode
from search.query.hybrid import HybridSearcher
from search.query.searcher import Searcher
from search.settings import Settings


def load_queries(path: Path) -> dict[str, str]:
    """Query id -> text from a BEIR queries.jsonl."""
    with path.open(encoding="utf-8") as fh:
        return {str(q["_id"]): q["text"] for q in map(json.loads, fh) if q}


def load_qrels(path: Path) -> dict[str, dict[str, int]]:
    """query id -> {document id: relevance} from a BEIR qrels TSV with a header line."""
    qrels: dict[str, dict[str, int]] = {}
    with path.open(encoding="utf-8") as fh:
        next(fh, None)
        for line in fh:
            if line.strip():
                qid, did, score = line.rstrip("\n").split("\t")
                qrels.setdefault(qid, {})[did] = int(score)
    return qrels


def score_run(qrels: dict[str, dict[str, int]], run: dict[str, dict[str, float]]) -> dict[str, float]:
    """Mean nDCG@10 and Recall@100 as BEIR computes them (pytrec_eval, linear gains)."""
    # BEIR drops a retrieved document whose id equals the query's id before scoring.
    run = {qid: {d: s for d, s in docs.items() if d != qid} for qid, docs in run.items()}
    evaluator = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10", "recall.100"})
    per_query = evaluator.evaluate(run)
    n = len(qrels)
    return {
        "ndcg@10": sum(m["ndcg_cut_10"] for m in per_query.values()) / n,
        "recall@100": sum(m["recall_100"] for m in per_query.values()) / n,
    }


def evaluate(settings: Settings, beir_dir: Path, data_dir: Path | None = None, mode: str = "hybrid") -> dict[str, Any]:
    """Index `beir_dir`'s corpus (in a temporary data directory unless one is given) and score its
    test split, searching in `mode` (hybrid, dense or keyword)."""
    check_mode(mode)
    queries = load_queries(beir_dir / "queries.jsonl")
    qrels = load_qrels(beir_dir / "qrels" / "test.tsv")
    missing = sorted(set(qrels) - set(queries))
    if missing:
        raise ValueError(f"{len(missing)} judged queries are missing from queries.jsonl, e.g. {missing[0]!r}")
    with tempfile.TemporaryDirectory(prefix="semsearch-eval-") as tmp:
        where = data_dir or Path(tmp)
        # A temporary evaluation never touches the configured database: it gets its own SQLite file.
        url = settings.database_url if data_dir else None
        run_settings = settings.model_copy(update={"data_dir": where, "database_url": url})
        started = time.perf_counter()
        migrate(run_settings)  # it indexes, so it migrates: a kept --data-dir may hold an older schema
        indexer = open_indexer(run_settings)
        summary = indexer.run(read_sources([beir_dir / "corpus.jsonl"]))
        if indexer.derived.failures:  # scores over a stale index would mislead
            raise RuntimeError(f"derived indexes did not catch up with SQL: {indexer.derived.failures}")
        keyword = open_keyword(run_settings)
        dense = Searcher(indexer.encoder, indexer.index, indexer.store)
        searcher = HybridSearcher(dense, keyword, FusionConfig.from_settings(run_settings))
        qids = sorted(qrels)
        run = {}
        for qid in qids:
            hits = searcher.search(queries[qid], k=100, mode=mode)
            # Scored by rank: pytrec_eval orders by score and breaks ties by document id, which would
            # reorder the ties that rank fusion often makes; our order is the one to judge.
            run[qid] = {hit.id: float(len(hits) - rank) for rank, hit in enumerate(hits)}
        indexer.store.close()
    metrics = score_run(qrels, run)
    return {
        **{k: round(v, 4) for k, v in metrics.items()},
        "mode": mode,
        "queries": len(qids),
        "documents": summary.documents,
        "chunks": summary.chunks,
        "seconds": round(time.perf_counter() - started, 1),
    }
