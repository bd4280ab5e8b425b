"""The `semsearch` command: index, delete, check, search, eval, serve."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from indexer import maintenance
from indexer.evaluate import evaluate
from indexer.locks import FileLock, LockHeldError, single_writer_lock
from indexer.pipeline import open_indexer
from indexer.progress import Progress, count_records
from indexer.ray_engine import RayMissingError, require_ray
from indexer.rebuild import ENGINES, rebuild
from indexer.sources import Rejected, read_sources
from indexer.worker import BackgroundWorker, open_worker
from search.catalog import IndexMismatchError
from search.components import open_searcher, open_store
from search.settings import Settings, settings_env
from search.vectors import enqueue

# CLI flag -> Settings field; a flag that is given overrides the SEMSEARCH_* variable.
_OVERRIDES = {
    "data_dir": "data_dir",
    "database_url": "database_url",
    "model": "model",
    "pooling": "pooling",
    "max_length": "max_length",
    "device": "device",
    "dtype": "dtype",
    "factory": "index_factory",
    "batch_tokens": "batch_tokens",
}


def _common(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("settings (override SEMSEARCH_* variables)")
    group.add_argument("--data-dir", type=Path)
    group.add_argument("--database-url")
    group.add_argument("--model")
    group.add_argument("--pooling", choices=["mean", "cls", "pooler"])
    group.add_argument("--max-length", type=int)
    group.add_argument("--device")
    group.add_argument("--dtype", choices=["auto", "float32", "float16", "bfloat16"])
    group.add_argument("--factory", help="FAISS index-factory string, e.g. Flat, IVF1024,SQ8, HNSW32,Flat")
    group.add_argument("--batch-tokens", type=int, help="token budget of one encoder batch")
    group.add_argument("--no-chunking", action="store_true", help="embed each document whole (truncated)")
    group.add_argument("--json", action="store_true", help="print the result as JSON")
    group.add_argument("-v", "--verbose", action="store_true")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(prog="semsearch", description="Self-hosted semantic search.")
    sub = parser.add_subparsers(dest="command", required=True)
    p_index = sub.add_parser("index", help="index JSON Lines files, BEIR corpora or folders of .txt/.md")
    p_index.add_argument("paths", nargs="+", type=Path)
    _common(p_index)
    p_add = sub.add_parser("add", help="queue documents for the worker (no embedding here)")
    p_add.add_argument("paths", nargs="+", type=Path)
    _common(p_add)
    p_worker = sub.add_parser("worker", help="embed queued documents and publish them, until stopped")
    p_worker.add_argument("--until-empty", action="store_true", help="stop once the queue is empty")
    _common(p_worker)
    p_rebuild = sub.add_parser("rebuild", help="build a new index generation and switch readers to it")
    p_rebuild.add_argument(
        "--engine",
        choices=ENGINES,
        default="local",
        help="where chunks are embedded (ray: pip install semsearch[ray])",
    )
    p_rebuild.add_argument("--address", help="Ray cluster address (default: a Ray instance on this machine)")
    p_rebuild.add_argument(
        "--ray-actors", type=int, help="CPU embedding actors on a cluster without GPUs (default: one per CPU)"
    )
    _common(p_rebuild)
    p_delete = sub.add_parser("delete", help="delete documents by id")
    p_delete.add_argument("ids", nargs="+")
    _common(p_delete)
    p_check = sub.add_parser("check", help="verify that every chunk has one vector and no vector lacks a chunk")
    p_check.add_argument("--repair", action="store_true", help="fix what the check finds")
    _common(p_check)
    p_search = sub.add_parser("search", help="search the index")
    p_search.add_argument("query")
    p_search.add_argument("-k", type=int, default=10, help="number of results (default 10)")
    _common(p_search)
    p_eval = sub.add_parser("eval", help="nDCG@10 and Recall@100 on a BEIR-format directory")
    p_eval.add_argument("directory", type=Path)
    _common(p_eval)
    p_serve = sub.add_parser("serve", help="serve the HTTP query API")
    p_serve.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1: this machine only)")
    p_serve.add_argument("--port", type=int, default=8000)
    p_serve.add_argument("--workers", type=int, default=1, help="HTTP worker processes (default 1)")
    p_serve.add_argument(
        "--no-worker", action="store_true", help="do not run the indexing worker here (run `semsearch worker`)"
    )
    _common(p_serve)
    return parser


def settings_from(args: argparse.Namespace) -> Settings:
    """Settings from the environment, with the flags that were given on top."""
    overrides: dict[str, Any] = {
        field: getattr(args, flag) for flag, field in _OVERRIDES.items() if getattr(args, flag, None) is not None
    }
    if getattr(args, "no_chunking", False):
        overrides["chunking"] = False
    return Settings(**overrides)


def _writer_lock(settings: Settings, what: str) -> FileLock | None:
    """On SQLite one process embeds at a time; PostgreSQL needs no such lock (rows are claimed)."""
    if settings.resolved_database_url.startswith("sqlite"):
        return single_writer_lock(settings.index_dir, what)
    return None


def _report(rejected: Rejected) -> None:
    print(f"rejected {rejected}", file=sys.stderr)


def cmd_index(args: argparse.Namespace, settings: Settings) -> int:
    """Index the given paths; exit status 1 when any record was rejected."""
    _lock = _writer_lock(settings, "semsearch index")
    indexer = open_indexer(settings)

    progress = Progress(sys.stderr, count_records(args.paths) if sys.stderr.isatty() else None)
    try:
        summary = indexer.run(read_sources(args.paths), on_reject=_report, on_progress=progress)
    finally:
        progress.close()
    data = summary.as_dict()
    if args.json:
        print(json.dumps(data))
    else:
        print(
            f"indexed {data['documents']} documents ({data['added']} added, {data['updated']} updated, "
            f"{data['unchanged']} unchanged), {data['chunks']} chunks embedded, {data['rejected']} rejected "
            f"in {data['seconds']:.1f} s ({data['docs_per_s']} docs/s)"
        )
    return 1 if summary.rejected else 0


def cmd_add(args: argparse.Namespace, settings: Settings) -> int:
    """Queue documents for the worker; exit status 1 when any record was rejected."""
    store = open_store(settings)
    docs, rejected = [], 0
    written = {"added": 0, "updated": 0, "unchanged": 0}
    for record in [*read_sources(args.paths), None]:
        if isinstance(record, Rejected):
            rejected += 1
            _report(record)
        elif record is not None:
            docs.append(record)
        if len(docs) >= 1000 or (record is None and docs):
            result, same = enqueue(store, docs)
            written["added"] += len(result.added)
            written["updated"] += len(result.updated)
            written["unchanged"] += len(same)
            docs = []
    data = {**written, "rejected": rejected}
    print(json.dumps(data) if args.json else " ".join(f"{k}={v}" for k, v in data.items()))
    return 1 if rejected else 0


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    """Embed queued documents until interrupted (or, with --until-empty, until none is left)."""
    _lock = _writer_lock(settings, "semsearch worker")
    worker = open_worker(settings)
    if args.until_empty:
        worker.start_up()
        done = worker.drain()
        print(json.dumps({"embedded": done}) if args.json else f"embedded {done} documents")
        return 0
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    worker.run(stop)
    return 0


def cmd_rebuild(args: argparse.Namespace, settings: Settings) -> int:
    """Build a new generation (index type, model or pooling from the flags) and switch readers to it."""
    if args.engine == "ray":
        require_ray()  # a missing extra is reported before the lock or the database is touched
    _lock = _writer_lock(settings, "semsearch rebuild")
    summary = rebuild(settings, engine=args.engine, address=args.address, actors=args.ray_actors)
    data = summary.as_dict()
    print(json.dumps(data) if args.json else " ".join(f"{k}={v}" for k, v in data.items()))
    return 0


def cmd_delete(args: argparse.Namespace, settings: Settings) -> int:
    """Delete documents by id; exit status 1 when some id was not found."""
    found, chunks = maintenance.delete(open_indexer(settings), args.ids)
    existed = set(found)
    missing = [i for i in dict.fromkeys(args.ids) if i not in existed]
    if args.json:
        print(json.dumps({"deleted": len(found), "chunks": chunks, "not_found": missing}))
    else:
        print(f"deleted {len(found)} documents ({chunks} chunks)")
        for doc_id in missing:
            print(f"not found: {doc_id}", file=sys.stderr)
    return 1 if missing else 0


def cmd_check(args: argparse.Namespace, settings: Settings) -> int:
    """Verify rows against vectors; `--repair` fixes what it finds. Exit status 1 while inconsistent."""
    indexer = open_indexer(settings)
    state = maintenance.check(indexer)
    if args.repair and not state.ok:
        state = maintenance.repair(indexer)
    if args.json:
        print(json.dumps(state.as_dict()))
    else:
        print(" ".join(f"{k}={v}" for k, v in state.as_dict().items()))
    return 0 if state.ok else 1


def cmd_search(args: argparse.Namespace, settings: Settings) -> int:
    """Print the best documents for a query."""
    if not 1 <= args.k <= 1000:
        raise ValueError(f"-k must be between 1 and 1000, got {args.k}")
    hits = open_searcher(settings).search(args.query, k=args.k)
    if args.json:
        print(json.dumps([hit.__dict__ for hit in hits]))
        return 0
    if not hits:
        print("no results (is anything indexed? run `semsearch index PATH` first)")
    for rank, hit in enumerate(hits, start=1):
        snippet = " ".join(hit.text.split())[:200]
        print(f"{rank:>3}. {hit.score:.4f}  {hit.id}  {hit.title}\n       {snippet}")
    return 0


def cmd_eval(args: argparse.Namespace, settings: Settings) -> int:
    """Evaluate on a BEIR directory; `--data-dir` keeps the index it builds."""
    result = evaluate(settings, args.directory, data_dir=args.data_dir)
    if args.json:
        print(json.dumps(result))
    else:
        print(" ".join(f"{k}={v}" for k, v in result.items()))
    return 0


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    """Serve the API until interrupted, by default with the indexing worker on a thread beside it."""
    import uvicorn  # imported here: only `serve` needs the web stack

    from api.app import create_app

    background = None
    if not args.no_worker:
        _lock = _writer_lock(settings, "semsearch serve (with its indexing worker)")
        background = BackgroundWorker(open_worker(settings))
        background.start()
    try:
        if args.workers > 1:
            # Worker processes build their app from the environment: hand them these settings there.
            os.environ.update(settings_env(settings))
            uvicorn.run("api.app:create_app", factory=True, host=args.host, port=args.port, workers=args.workers)
        else:
            uvicorn.run(create_app(settings), host=args.host, port=args.port, log_level="info")
    finally:
        if background is not None:
            background.stop()
    return 0


_COMMANDS = {
    "index": cmd_index,
    "add": cmd_add,
    "worker": cmd_worker,
    "rebuild": cmd_rebuild,
    "delete": cmd_delete,
    "check": cmd_check,
    "search": cmd_search,
    "eval": cmd_eval,
    "serve": cmd_serve,
}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `semsearch` console script."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    try:
        settings = settings_from(args)
        return _COMMANDS[args.command](args, settings)
    except ValidationError as exc:
        print(f"semsearch: invalid settings: {exc}", file=sys.stderr)
    except (ValueError, FileNotFoundError, IndexMismatchError, LockHeldError, RayMissingError) as exc:
        print(f"semsearch {args.command}: {exc}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
