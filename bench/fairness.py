"""The worker's fairness: how long a small `PUT ?wait=true` takes to become searchable when written just
after a 1,000,000-character document, against the same write with nothing ahead of it (the reference,
measured in the same run). Runs `semsearch serve` (with its worker) over an empty data dir with the
default model.

    python -m bench.fairness [--chars 1000000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import httpx

from bench.common import cpu_line, print_table, scifact_docs, serve_process
from search.components import make_encoder
from search.settings import Settings


def _large_text(chars: int) -> str:
    parts, size = [], 0
    for doc in scifact_docs():
        parts.append(doc["text"])
        size += len(doc["text"]) + 1
        if size >= chars:
            break
    return " ".join(parts)[:chars]


def _small_write(client: httpx.Client, doc_id: str) -> tuple[float, bool]:
    """Seconds a small `PUT ?wait=true` takes, and whether a keyword search then finds it."""
    text = f"the zyxquv{doc_id} marker sentence of a small document"
    start = time.perf_counter()
    put = client.put(f"/documents/{doc_id}", params={"wait": "true", "timeout": 60}, json={"text": text})
    took = time.perf_counter() - start
    put.raise_for_status()
    hits = client.post("/search", json={"query": f"zyxquv{doc_id}", "mode": "keyword"}).json()["results"]
    return took, [h["id"] for h in hits] == [doc_id]


def main() -> None:
    """Print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chars", type=int, default=1_000_000)
    args = parser.parse_args()
    print(cpu_line())
    encoder = make_encoder(Settings())
    print(f"encoder: {encoder.backend} in {str(encoder.dtype).removeprefix('torch.')} on {encoder.device}")
    del encoder
    large = _large_text(args.chars)
    with (
        tempfile.TemporaryDirectory() as folder,
        serve_process(Path(folder)) as (url, _pid),
        httpx.Client(base_url=url, timeout=120) as client,
    ):
        alone, alone_found = _small_write(client, "alone")
        start = time.perf_counter()
        client.put("/documents/large", json={"text": large}).raise_for_status()
        time.sleep(1.0)  # the worker has begun embedding it
        behind, behind_found = _small_write(client, "behind")
        while client.get("/documents/large").json()["status"] != "indexed":
            time.sleep(0.2)
        large_took = time.perf_counter() - start
        chunks = client.get("/stats").json()["chunks"]
    print_table(
        f"small write behind a {len(large):,}-character document",
        ["write", "seconds", "found", "ratio to alone"],
        [
            ["alone (reference)", alone, alone_found, 1.0],
            ["behind the large document", behind, behind_found, behind / alone],
            ["the large document itself", large_took, True, large_took / alone],
        ],
    )
    print(f"chunks stored: {chunks}")


if __name__ == "__main__":
    main()
