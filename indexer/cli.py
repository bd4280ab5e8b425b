"""The `semsearch` command: index, delete, check, search, eval, serve."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading

from pydantic import ValidationError

from indexer import maintenance
from indexer.cli_args import build_parser, settings_from
from indexer.evaluate import evaluate
from indexer.locks import FileLock, LockHeldError, single_writer_lock
from indexer.pipeline import open_indexer
from indexer.progress import Progress, count_records
from indexer.ray_engine import RayMissingError, require_ray
from indexer.rebuild import rebuild
from indexer.sources import Rejected, read_sources
from indexer.worker import BackgroundWorker, open_worker
from search.catalog import IndexMismatchError
from search.components import open_searcher, open_store
from search.settings import Settings, settings_env
from search.vectors import enqueue

# uvicorn kills a worker process that does not answer its health check within this many seconds (5 by
# default) and starts another. A worker answers only once it has imported this module (torch, transformers):
# 7 s of CPU on a 2-core machine, more while it is busy, so with the default no worker ever came up there.
WORKER_HEALTHCHECK_SECONDS = 120


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
        records = read_sources(args.paths)
        summary = indexer.run(records, on_reject=_report, on_progress=progress, delete_missing=args.delete_missing)
    finally:
        progress.close()
    data = summary.as_dict()
    if args.json:
        print(json.dumps(data))
    else:
        print(
            f"indexed {data['documents']} documents ({data['added']} added, {data['updated']} updated, "
            f"{data['unchanged']} unchanged), {data['chunks']} chunks embedded, {data['rejected']} rejected, "
            f"{data['deleted']} deleted in {data['seconds']:.1f} s ({data['docs_per_s']} docs/s)"
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
            uvicorn.run(
                "api.app:create_app",
                factory=True,
                host=args.host,
                port=args.port,
                workers=args.workers,
                timeout_worker_healthcheck=WORKER_HEALTHCHECK_SECONDS,
            )
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
