"""`make bench`: every CPU benchmark in one go, then one summary table of ratios against the references.

Each benchmark runs in a process of its own (so one's threads, caches and memory never weigh on the
other's figures) and prints its detailed tables as it goes; the summary gathers, from their `--json`
lines, each ratio the speed issue sets a target for, with that target beside it.

    .venv/bin/python -m bench [--docs 1000] [--stream 200000] [--n 1000000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from typing import Any

from bench.common import print_table


def run_json(module: str, args: list[str]) -> dict[str, Any] | list[Any]:
    """Run `python -m module --json args`, echoing its output as it comes; return its last line's JSON."""
    command = [sys.executable, "-u", "-m", module, "--json", *args]
    last = ""
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True, bufsize=1) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            if last:
                print(last, end="", flush=True)
            last = line
    if proc.returncode:
        raise SystemExit(f"{module} failed with exit status {proc.returncode}")
    result: dict[str, Any] | list[Any] = json.loads(last)
    return result


def summary_rows(encoder: dict[str, Any], ann: list[dict[str, Any]]) -> list[list[object]]:
    """[measure, value, ratio, target, met] for each figure the issue names."""
    rows: list[list[object]] = []
    reference, default = encoder["encoder"][0], encoder["encoder"][1]
    ratio, cosine = float(default[2]), float(default[3])
    rows.append(["Encoder() docs/s vs sentence-transformers fp32", f"{default[1]:.1f} vs {reference[1]:.1f}", ratio])
    rows[-1] += [">= 3x", ratio >= 3]
    rows.append(["  smallest cosine to the fp32 vectors", f"{cosine:.6f}", "", ">= 0.999", cosine >= 0.999])
    bare, pipe = encoder["pipeline"]
    rows.append(["semsearch index vs the bare encoder", f"{pipe[1]:.1f} vs {bare[1]:.1f} docs/s", float(pipe[2])])
    rows[-1] += [">= 0.9x", float(pipe[2]) >= 0.9]
    if encoder.get("gpu"):
        gpu_ref, gpu = encoder["gpu"][0], encoder["gpu"][1]
        rows.append(["CUDA Encoder() vs sentence-transformers fp16", f"{gpu[1]:.1f} vs {gpu_ref[1]:.1f}", gpu[2]])
        rows[-1] += [">= 1.5x", float(gpu[2]) >= 1.5]
    _, texts, _tenth, half, last, growth = encoder["memory"][0]
    rows.append([f"resident memory, 2nd half of {texts} short texts", f"{half:.0f} -> {last:.0f} MiB", ""])
    # Keeping even one batch's vectors (512 x 384 floats, 0.75 MiB) per batch would add over 70 MiB
    # in the second half of 100,000 texts; a stream moves by allocator noise only.
    rows[-1] += ["flat (< 2%)", growth < 0.02 * half]
    flat = ann[0]
    auto = next(r for r in ann if str(r["index"]).startswith("auto"))
    speedup = flat["latency_ms"] / auto["latency_ms"]
    recall = float(auto["recall@10"])
    rows.append([f"ANN {auto['index']}: recall@10", f"{recall:.3f}", "", ">= 0.95", recall >= 0.95])
    rows.append(["  single query vs exact Flat", f"{auto['latency_ms']:.2f} ms", speedup, ">= 20x", speedup >= 20])
    per_vector = auto["bytes_per_vector"]
    rows.append(["  bytes per vector", f"{per_vector:.0f}", "", "<= 512", per_vector <= 512])
    rows.append(["  build seconds", f"{auto['build_s']:.1f}", "", "<= 300", auto["build_s"] <= 300])
    return [[*row[:4], "yes" if row[4] else "NO"] for row in rows]


def main() -> None:
    """Run the encoder and ANN benchmarks, then print the summary table and the wall time."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=1000, help="SciFact documents for the encoder benchmark")
    parser.add_argument("--stream", type=int, default=200_000, help="short texts for the memory check")
    parser.add_argument("--n", type=int, default=1_000_000, help="vectors for the ANN benchmark")
    args = parser.parse_args()
    start = time.perf_counter()
    encoder = run_json("bench.encoder", ["--docs", str(args.docs), "--stream", str(args.stream)])
    ann = run_json("bench.ann", ["--n", str(args.n)])
    assert isinstance(encoder, dict) and isinstance(ann, list)
    minutes = (time.perf_counter() - start) / 60
    header = ["measure", "value", "ratio", "target", "met"]
    print_table(f"Summary ({minutes:.1f} minutes in all)", header, summary_rows(encoder, ann))


if __name__ == "__main__":
    main()
