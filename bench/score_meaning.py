"""Whether a score means something on its own: the top score of queries about nothing in the corpus,
against the scores of the first relevant hits of SciFact's judged test queries, per fusion method.

Needs a data directory that already holds SciFact (`semsearch eval ../shared/data/scifact --data-dir
DIR` builds one). A threshold can tell "nothing relevant" only where nonsense scores below most first
relevant hits; with min-max fusion every query's top hit scores about 1.0, so none can.

    python -m bench.score_meaning --data-dir DIR [--scifact ../shared/data/scifact]
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from bench.common import cpu_line, print_table
from indexer.cli.evaluate import load_qrels, load_queries
from search.components import open_hybrid
from search.query.hits import FusionConfig
from search.settings import Settings

# About nothing SciFact holds (biomedical claims), in its language and not.
NONSENSE = [
    "quantum chromodynamics of gluons xyzzy",
    "best pizza toppings in naples",
    "how to tune a guitar string",
    "football world cup final score",
    "xyzzy plugh frobnicate",
]


def _first_relevant(hits: list[tuple[str, float]], relevant: dict[str, int]) -> float | None:
    return next((score for doc, score in hits if relevant.get(doc, 0) > 0), None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--scifact", type=Path, default=Path("../shared/data/scifact"))
    args = parser.parse_args()
    settings = Settings(data_dir=args.data_dir)
    queries = load_queries(args.scifact / "queries.jsonl")
    qrels = load_qrels(args.scifact / "qrels" / "test.tsv")
    hybrid = open_hybrid(settings)
    print(cpu_line())
    encoder = hybrid.dense.encoder
    print(f"encoder: {encoder.backend} in {encoder.dtype} on {encoder.device}")
    rows = []
    for method in ("bounded", "convex", "rrf"):
        hybrid.fusion = FusionConfig(method=method)
        firsts = []
        for qid, relevant in sorted(qrels.items()):
            hits = [(h.id, h.score) for h in hybrid.search(queries[qid], k=10)]
            first = _first_relevant(hits, relevant)
            if first is not None:
                firsts.append(first)
        nonsense = [hybrid.search(q, k=1)[0].score for q in NONSENSE]
        median = statistics.median(firsts)
        below = sum(score < median for score in nonsense)
        rows.append(
            [
                method,
                f"{median:.4f}",
                f"{statistics.quantiles(firsts, n=10)[0]:.4f}",
                f"{max(nonsense):.4f}",
                f"{below} of {len(nonsense)}",
                str(len(firsts)),
            ]
        )
    print_table(
        "the first relevant hit's score (SciFact test queries, top 10) against nonsense queries' top score",
        [
            "fusion",
            "first relevant hit: median score",
            "10th percentile",
            "nonsense: top score, highest",
            "nonsense below the median",
            "queries with a relevant hit in 10",
        ],
        rows,
    )
    for query in NONSENSE:
        hybrid.fusion = FusionConfig(method="bounded")
        print(f"bounded, {query!r}: top score {hybrid.search(query, k=1)[0].score:.4f}")


if __name__ == "__main__":
    main()
