"""Encoder throughput against sentence-transformers, measured side by side in one run.

Prints, on the same SciFact documents (title + " " + text, max_length 256):
- sentence-transformers `encode` in float32 (the reference) and the default `Encoder` (and, on a CPU,
  each backend, torch and OpenVINO), as docs/s, their ratio, and the smallest cosine between our
  vectors and the reference's;
- `semsearch index` end to end (reading, chunking, tokenising, embedding, SQL and index writes)
  against the bare encoder on the same chunk inputs;
- resident memory while streaming many short texts (it should stay flat);
- on a CUDA machine, the same comparison against sentence-transformers in float16.

    .venv/bin/python -m bench.encoder [--docs 1000] [--stream 200000] [--parts encoder,gpu,pipeline,memory]
        [--rounds 3] [--paths defaults,float32,torch backend,openvino backend]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.common import cpu_line, print_table, rss_mb, scifact_docs, timed
from indexer.ingest.chunking import Chunker
from indexer.write.pipeline import Indexer
from search.dense.catalog import IndexCatalog
from search.embedding.encoder import Encoder, resolve_model
from search.embedding.space import chunk_input
from search.settings import Backend
from search.storage.records import DocumentIn
from search.storage.store import Store


def reference_model(device: str, half: bool) -> Any:
    """sentence-transformers on the bundled all-MiniLM-L6-v2."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(resolve_model("all-MiniLM-L6-v2"), device=device)
    return model.half() if half else model


def runtime_line() -> str:
    """What decides the kernels on both sides: the ISA caps in the environment and torch's own dispatch
    (the CPU's flags are `cpu_line`'s)."""
    caps = " ".join(f"{k}={os.environ[k]}" for k in _ISA_VARIABLES if k in os.environ) or "no ISA caps"
    capability = torch.backends.cpu.get_cpu_capability()
    return f"{caps}; torch {torch.__version__} dispatch {capability}, {torch.get_num_threads()} threads"


# Environment variables that cap the instruction set: oneDNN's (OpenVINO and torch), ATen's, MKL's.
_ISA_VARIABLES = ("ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY", "MKL_ENABLE_INSTRUCTIONS", "SEMSEARCH_DTYPE")


def encoder_rows(texts: list[str], device: str, rounds: int = 1, paths: Sequence[str] = ()) -> list[list[object]]:
    """Reference vs each encoder path of `paths` (all of PATHS by default) on `texts`, timed in `rounds`
    alternating rounds: docs/s is the median over rounds, the ratio the median of each round's ratio
    (the load of a shared machine hits both sides of a round alike); the rounds' ratios follow."""
    half = device == "cuda"
    st = reference_model(device, half)
    st.encode(texts[:32], normalize_embeddings=True)  # warm-up
    chosen = [p for p in PATHS if p in (paths or PATHS) and (device == "cpu" or p in ("defaults", "float32"))]
    encoders = {label: Encoder(dtype=PATHS[label][0](), device=device, backend=PATHS[label][1]) for label in chosen}
    for label, encoder in encoders.items():
        encoder.encode(texts[:32])
        print(f"{label}: {encoder.backend}, {encoder.dtype}; {encoder.runtime}", flush=True)
    seconds: dict[str, list[float]] = {label: [] for label in ["reference", *encoders]}
    vectors: dict[str, np.ndarray] = {}
    for r in range(rounds):
        ref, took = timed(lambda: st.encode(texts, batch_size=32, normalize_embeddings=True))
        seconds["reference"].append(took)
        for label, encoder in encoders.items():
            vectors[label], took = timed(partial(encoder.encode, texts))
            seconds[label].append(took)
        print(f"round {r + 1}: load average {os.getloadavg()[0]:.2f}", flush=True)
    ref_f32 = ref.astype(np.float32)
    ref_times = seconds["reference"]
    name = f"sentence-transformers ({'fp16' if half else 'fp32'})"
    rows: list[list[object]] = [[name, len(texts) / statistics.median(ref_times), 1.0, "1.000000", ""]]
    for label, encoder in encoders.items():
        ratios = [ref / t for ref, t in zip(ref_times, seconds[label], strict=True)]
        cosine = float((vectors[label] * ref_f32).sum(axis=1).min())
        name = f"semsearch Encoder ({label}) [{encoder.backend}, {encoder.dtype}]"
        docs_s = len(texts) / statistics.median(seconds[label])
        rows.append([name, docs_s, statistics.median(ratios), f"{cosine:.6f}", " ".join(f"{x:.2f}" for x in ratios)])
    return rows


# label -> (dtype, backend). `defaults` is what a deployment gets: SEMSEARCH_DTYPE where set, else auto.
PATHS: dict[str, tuple[Callable[[], str], Backend]] = {
    "defaults": (lambda: os.environ.get("SEMSEARCH_DTYPE", "auto"), "auto"),
    "float32": (lambda: "float32", "auto"),
    # Both CPU runtimes in the default dtype: auto picks OpenVINO where it is installed.
    "torch backend": (lambda: "auto", "torch"),
    "openvino backend": (lambda: "auto", "openvino"),
}


def pipeline_rows(docs: list[dict[str, str]]) -> list[list[object]]:
    """`semsearch index` end to end against the bare encoder on the very same chunk inputs.

    Each is run twice, alternating, and the faster run counts: the first pass over new batch shapes
    pays for oneDNN's kernel set-up, which must not land on one side only."""
    encoder = Encoder()
    records = [DocumentIn(str(d["_id"]), d["text"], d["title"]) for d in docs]
    chunker = Chunker(encoder)
    inputs = [chunk_input(r.title, c.text) for r, cs in zip(records, chunker.split(records), strict=True) for c in cs]
    bare, pipe = [], []
    for _ in range(2):
        bare.append(timed(lambda: encoder.encode(inputs))[1])
        with tempfile.TemporaryDirectory() as tmp:
            store = Store(f"sqlite:///{tmp}/bench.db")
            indexer = Indexer(encoder, store, IndexCatalog(store, Path(tmp) / "index"), chunker)
            summary, seconds = timed(partial(indexer.run, records))
            pipe.append(seconds)
            store.close()
    return [
        ["bare Encoder on the chunk inputs", len(docs) / min(bare), 1.0, len(inputs)],
        ["semsearch index, end to end", len(docs) / min(pipe), min(bare) / min(pipe), summary.chunks],
    ]


def stream_rows(n: int, window: int = 4096) -> list[list[object]]:
    """Resident memory while `iter_encode` streams `n` short texts (vectors are dropped as they come),
    `n` rounded down to whole windows of `window` texts.

    Read after each window. The first windows grow memory while the runtime sets up
    kernels and pools for the batch shapes it meets; anything kept per batch would then go on growing
    in proportion to the texts, so the growth over the second half is what tells a stream from a leak."""
    encoder = Encoder()
    words = ["the", "cell", "protein", "gene", "cancer", "risk", "study", "dose", "vaccine", "virus"]
    words += ["blood", "patients"]
    # Every text distinct and 16 tokens long, and whole windows only: the batch shapes are the same from
    # the first window to the last, so the runtime's set-up for a new shape cannot pass for growth late
    # in the stream (a number written in digits grows a token, and a short last window is a new shape).
    n = max(window, n // window * window)
    texts = [
        " ".join(words[(i + j) % 12] for j in range(8)) + " " + " ".join(words[(i // 12**k) % 12] for k in range(6))
        for i in range(n)
    ]
    samples = [rss_mb() for _ in encoder.iter_encode(texts, window=window)]
    tenth, half, last = (samples[min(len(samples) - 1, int(f * len(samples)))] for f in (0.1, 0.5, 1.0))
    return [["streaming short texts", n, tenth, half, last, last - half]]


PARTS = ("encoder", "gpu", "pipeline", "memory")


def main() -> None:
    """Run the measurements asked for (all by default) and print their tables."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=1000, help="SciFact documents to encode")
    parser.add_argument("--stream", type=int, default=200_000, help="short texts for the memory check")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, of: {', '.join(PARTS)}")
    parser.add_argument("--rounds", type=int, default=1, help="alternating timed rounds of the encoder part")
    parser.add_argument("--paths", default=",".join(PATHS), help=f"encoder paths, comma-separated: {', '.join(PATHS)}")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    paths = args.paths.split(",")
    if set(paths) - set(PATHS):
        parser.error(f"unknown paths {sorted(set(paths) - set(PATHS))}; choose from {', '.join(PATHS)}")
    parts = set(args.parts.split(","))
    if parts - set(PARTS):
        parser.error(f"unknown parts {sorted(parts - set(PARTS))}; choose from {', '.join(PARTS)}")
    docs = scifact_docs(args.docs)
    texts = [f"{d['title']} {d['text']}" for d in docs]
    print(cpu_line())
    print(runtime_line())
    print(f"{len(texts)} SciFact documents, {args.rounds} alternating rounds")
    out: dict[str, list[list[object]]] = {}
    if "encoder" in parts:
        out["encoder"] = encoder_rows(texts, "cpu", args.rounds, paths)
        title = "Encoder, CPU (ratio = docs/s over sentence-transformers fp32; medians over rounds)"
        print_table(title, ["path", "docs/s", "ratio", "min cos", "each round's ratio"], out["encoder"])
    if "gpu" in parts and torch.cuda.is_available():
        out["gpu"] = encoder_rows(scifact_docs_texts(), "cuda", args.rounds, paths)
        title = "Encoder, CUDA (ratio over sentence-transformers fp16)"
        print_table(title, ["path", "docs/s", "ratio", "min cos", "each round's ratio"], out["gpu"])
    if "pipeline" in parts:
        out["pipeline"] = pipeline_rows(docs)
        print_table("Pipeline (ratio = over the bare encoder)", ["path", "docs/s", "ratio", "chunks"], out["pipeline"])
    if "memory" in parts:
        out["memory"] = stream_rows(args.stream)
        header = ["run", "texts", "at 10%", "at 50%", "at the end", "second-half growth"]
        print_table("Memory (MiB resident while streaming)", header, out["memory"])
    if args.json:
        print(json.dumps(out, default=str))


def scifact_docs_texts() -> list[str]:
    """Every SciFact document as embedded (for the GPU, where all of them take seconds)."""
    return [f"{d['title']} {d['text']}" for d in scifact_docs()]


if __name__ == "__main__":
    main()
