"""Encoder backends side by side: sentence-transformers fp32, our torch path, our OpenVINO path.

On a shared, noisy machine absolute times say little, so the candidates run interleaved on the same
SciFact texts, round after round (the order reversed every other round), and each round's time is
divided by the torch path's time in the same round. Printed per candidate: median docs/s, the median
and range of those paired ratios in wall time and in process CPU time (less sensitive to other
processes on the cores), and the smallest cosine to sentence-transformers' float32 vectors.

    .venv/bin/python -m bench.backends [--docs 1000] [--rounds 3] [--float32]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from functools import partial

import numpy as np
import torch

from bench.common import print_table, scifact_docs
from bench.encoder import reference_model
from search.embedding.encoder import Encoder
from search.settings import Backend

Candidate = Callable[[], np.ndarray]


def candidates(texts: list[str], float32: bool) -> dict[str, Candidate]:
    """Name -> a call that embeds `texts` (each already warmed up on the same texts' batch shapes)."""
    st = reference_model("cpu", half=False)
    out: dict[str, Candidate] = {
        "sentence-transformers fp32": lambda: st.encode(texts, batch_size=32, normalize_embeddings=True)
    }
    configs: list[tuple[Backend, str]] = [("torch", "auto"), ("openvino", "auto")]
    if float32:
        configs += [("torch", "float32"), ("openvino", "float32")]
    for backend, dtype in configs:
        encoder = Encoder(backend=backend, dtype=dtype, device="cpu")
        out[f"Encoder {backend} [{encoder.dtype}]"] = partial(encoder.encode, texts)
    for fn in out.values():
        fn()  # first pass over these batch shapes: kernel set-up must not land in one round only
    return out


def measure(cands: dict[str, Candidate], rounds: int) -> tuple[dict[str, np.ndarray], ...]:
    """Wall and CPU seconds of every candidate in every round, and its vectors (from the last round)."""
    wall = {name: np.zeros(rounds) for name in cands}
    cpu = {name: np.zeros(rounds) for name in cands}
    vectors: dict[str, np.ndarray] = {}
    for r in range(rounds):
        names = list(cands) if r % 2 == 0 else list(reversed(cands))
        for name in names:
            c0, t0 = time.process_time(), time.perf_counter()
            vectors[name] = np.asarray(cands[name](), dtype=np.float32)
            wall[name][r], cpu[name][r] = time.perf_counter() - t0, time.process_time() - c0
    return wall, cpu, vectors


def main() -> None:
    """Measure and print the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=1000, help="SciFact documents to encode")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--float32", action="store_true", help="also both backends in float32")
    args = parser.parse_args()
    texts = [f"{d['title']} {d['text']}" for d in scifact_docs(args.docs)]
    cands = candidates(texts, args.float32)
    wall, cpu, vectors = measure(cands, args.rounds)
    base = next(name for name in cands if name.startswith("Encoder torch"))
    reference = vectors["sentence-transformers fp32"]
    rows = []
    for name in cands:
        rw, rc = wall[base] / wall[name], cpu[base] / cpu[name]
        rows.append(
            [
                name,
                len(texts) / float(np.median(wall[name])),
                f"{np.median(rw):.2f} [{rw.min():.2f}-{rw.max():.2f}]",
                f"{np.median(rc):.2f} [{rc.min():.2f}-{rc.max():.2f}]",
                f"{(vectors[name] * reference).sum(axis=1).min():.6f}",
            ]
        )
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {len(texts)} docs, {args.rounds} rounds")
    header = ["path", "docs/s (median)", f"wall ratio to {base}", "CPU ratio", "min cos to ST fp32"]
    print_table("Backends, paired per round: median [min-max]", header, rows)


if __name__ == "__main__":
    main()
