"""int8 (NNCF-quantized OpenVINO) against float32, bf16 and sentence-transformers fp32, in one run.

Prints the CPU and its flags, then on the same SciFact documents (title + " " + text):
- docs/s of sentence-transformers fp32 (the reference) and of `Encoder` in float32, bfloat16 (where the CPU
  computes it natively) and int8, each as the median over alternating rounds, with the median of each
  round's ratio to the reference measured in that round (a shared machine's load hits every path alike);
- the smallest cosine of each path's vectors to our float32 vectors;
- with --quality, SciFact nDCG@10 and Recall@100 in dense and hybrid mode for float32 and int8 through
  `semsearch eval`'s own code (indexer/cli/evaluate.py), one kept data directory per dtype.

    .venv/bin/python -m bench.int8 [--docs 600] [--rounds 3] [--quality --data-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from functools import partial
from pathlib import Path

import numpy as np

from bench.common import SCIFACT, cpu_line, print_table, scifact_docs, timed
from bench.encoder import reference_model
from indexer.cli.evaluate import evaluate
from search.embedding.batching import cpu_has_native_bf16
from search.embedding.encoder import Encoder
from search.settings import Settings


def load() -> str:
    """The 1-minute load average, printed beside each figure of a shared machine."""
    return f"{os.getloadavg()[0]:.1f}"


def speed_rows(texts: list[str], rounds: int) -> list[list[object]]:
    """docs/s, ratio to sentence-transformers fp32 and smallest cosine to our float32, per path."""
    st = reference_model("cpu", half=False)
    dtypes = ["float32", *(["bfloat16"] if cpu_has_native_bf16() else []), "int8"]
    encoders = {d: Encoder(dtype=d, device="cpu", backend="openvino") for d in dtypes}
    paths = {"sentence-transformers fp32": partial(st.encode, texts, batch_size=32, normalize_embeddings=True)}
    paths |= {f"semsearch Encoder [{e.backend}, {d}]": partial(e.encode, texts) for d, e in encoders.items()}
    st.encode(texts[:64], batch_size=32)  # warm-up; the median over rounds absorbs the rest of the set-up
    for encoder in encoders.values():
        encoder.encode(texts[:64])
    seconds: dict[str, list[float]] = {name: [] for name in paths}
    vectors: dict[str, np.ndarray] = {}
    loads = []
    for _ in range(rounds):
        loads.append(load())
        for name, run in paths.items():
            vectors[name], took = timed(run)
            seconds[name].append(took)
    reference, ours = next(iter(paths)), f"semsearch Encoder [{encoders['float32'].backend}, float32]"
    rows: list[list[object]] = []
    for name, times in seconds.items():
        ratios = [ref / t for ref, t in zip(seconds[reference], times, strict=True)]
        cosine = (np.asarray(vectors[name], dtype=np.float32) * vectors[ours]).sum(axis=1).min()
        rows.append([name, len(texts) / statistics.median(times), statistics.median(ratios), f"{cosine:.6f}"])
    rows.append(["(load average at each round)", " ".join(loads), "", ""])
    return rows


def quality_rows(data_dir: Path) -> list[list[object]]:
    """nDCG@10 and Recall@100 of float32 and int8, dense and hybrid (chunked, the defaults otherwise)."""
    rows: list[list[object]] = []
    for dtype in ("float32", "int8"):
        settings = Settings(dtype=dtype, device="cpu", backend="openvino")
        for mode in ("dense", "hybrid"):
            before = load()
            result = evaluate(settings, SCIFACT, data_dir=data_dir / dtype, mode=mode)
            rows.append([dtype, mode, result["ndcg@10"], result["recall@100"], f"{before} -> {load()}"])
    return rows


def main() -> None:
    """Measure and print the tables."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=600, help="SciFact documents to encode")
    parser.add_argument("--rounds", type=int, default=3, help="alternating timed rounds of every path")
    parser.add_argument("--quality", action="store_true", help="also index SciFact and score both modes")
    parser.add_argument("--data-dir", type=Path, default=Path("bench-int8-data"), help="kept indexes (--quality)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    texts = [f"{d['title']} {d['text']}" for d in scifact_docs(args.docs)]
    print(cpu_line())
    print(f"{len(texts)} SciFact documents, {args.rounds} alternating rounds")
    out = {"speed": speed_rows(texts, args.rounds)}
    print_table(
        "Encoder, CPU (ratio = docs/s over sentence-transformers fp32, median of rounds)",
        ["path", "docs/s", "ratio", "min cos to our float32"],
        out["speed"],
    )
    if args.quality:
        out["quality"] = quality_rows(args.data_dir)
        header = ["dtype", "mode", "nDCG@10", "Recall@100", "load average"]
        print_table("SciFact test split (300 queries), chunked", header, out["quality"])
    if args.json:
        print(json.dumps(out, default=str))


if __name__ == "__main__":
    main()
