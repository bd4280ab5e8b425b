"""The `semsearch` command: index, delete, check, migrate, search, eval, serve."""

from __future__ import annotations

# Only what parsing needs is imported here: `semsearch --help` must answer at once, and each command
# imports the heavy parts (the encoder, faiss, SQLAlchemy, the web stack) it uses itself.
import argparse
import json
import logging
import sys
from collections.abc import Mapping
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from indexer.cli.args import build_parser, settings_from

if TYPE_CHECKING:
    from indexer.ingest.sources import Rejected
    from indexer.write.locks import FileLock
    from search.settings import Settings

# uvicorn kills a worker process that does not answer its health check within this many seconds (5 by
# default) and starts another. A worker answers only once it has imported the app and loaded its encoder:
# seconds of CPU on a busy 2-core machine (7 s when the app still imported torch), past the default there.
WORKER_HEALTHCHECK_SECONDS = 120


def _writer_lock(settings: Settings, what: str) -> FileLock | None:
    """On SQLite one process embeds at a time; PostgreSQL needs no such lock (rows are claimed)."""
    from indexer.write.locks import single_writer_lock

    if settings.resolved_database_url.startswith("sqlite"):
        return single_writer_lock(settings.index_dir, what)
    return None


def _migrate(settings: Settings) -> None:
    """A writing command brings the schema up to date once, as it starts; the stores it then opens
    (and every read-only command's) only check it."""
    from search.components import migrate

    migrate(settings)


def _report(rejected: Rejected) -> None:
    print(f"rejected {rejected}", file=sys.stderr)


def _print_fields(args: argparse.Namespace, data: Mapping[str, object]) -> None:
    """A command's result: one JSON object with --json, else `key=value` pairs on one line."""
    if args.json:
        _print_json(data)
    else:
        print(" ".join(f"{k}={v}" for k, v in data.items()))


def _stale(command: str, failures: Mapping[str, str]) -> int:
    """Say which derived indexes failed to catch up (each mends itself at its next catch-up, or with
    `semsearch check --repair`); the exit status: 1 when any did."""
    for name, error in failures.items():
        print(f"semsearch {command}: the {name} index did not catch up with SQL: {error}", file=sys.stderr)
    return 1 if failures else 0


def _print_json(data: Any) -> None:
    """JSON on stdout as UTF-8 text (not \\u escapes), whatever the locale's encoding."""
    if (sys.stdout.encoding or "").lower().replace("-", "") != "utf8" and hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(encoding="utf-8")
    print(json.dumps(data, ensure_ascii=False))


def cmd_index(args: argparse.Namespace, settings: Settings) -> int:
    """Index the given paths; exit status 1 when any record was rejected or a derived index did not
    catch up."""
    from indexer.cli.progress import Progress, count_records
    from indexer.ingest.sources import read_sources
    from indexer.write.pipeline import open_indexer

    _lock = _writer_lock(settings, "semsearch index")
    _migrate(settings)
    indexer = open_indexer(settings)

    progress = Progress(sys.stderr, count_records(args.paths) if sys.stderr.isatty() else None)
    try:
        records = read_sources(args.paths)
        summary = indexer.run(records, on_reject=_report, on_progress=progress, delete_missing=args.delete_missing)
    finally:
        progress.close()
    data = summary.as_dict()
    if args.json:
        _print_json(data)
    else:
        print(
            f"indexed {data['documents']} documents ({data['added']} added, {data['updated']} updated, "
            f"{data['unchanged']} unchanged), {data['chunks']} chunks embedded, {data['rejected']} rejected, "
            f"{data['deleted']} deleted in {data['seconds']:.1f} s ({data['docs_per_s']} docs/s)"
        )
    return max(1 if summary.rejected else 0, _stale("index", indexer.derived.failures))


def cmd_add(args: argparse.Namespace, settings: Settings) -> int:
    """Queue documents for the worker; exit status 1 when any record was rejected."""
    from indexer.ingest.sources import Rejected, read_sources
    from search.components import open_store
    from search.work.queue import enqueue

    _migrate(settings)
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
    _print_fields(args, data)
    return 1 if rejected else 0


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    """Embed queued documents until interrupted (or, with --until-empty, until none is left)."""
    import signal
    import threading

    from indexer.write.worker import open_worker

    _lock = _writer_lock(settings, "semsearch worker")
    _migrate(settings)
    worker = open_worker(settings)
    if args.until_empty:
        worker.start_up()
        done = worker.drain()
        if args.json:
            _print_json({"embedded": done})
        else:
            print(f"embedded {done} documents")
        return _stale("worker", worker.derived.failures)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    worker.run(stop)
    return 0


def cmd_rebuild(args: argparse.Namespace, settings: Settings) -> int:
    """Build a new generation (index type, model or pooling from the flags) and switch readers to it."""
    from indexer.write.derived import beside_dense
    from indexer.write.locks import LockHeldError
    from indexer.write.ray_engine import require_ray
    from indexer.write.rebuild import rebuild
    from search.components import open_store

    if args.engine == "ray":
        require_ray()  # a missing extra is reported before the lock or the database is touched
    _migrate(settings)
    try:
        _lock = _writer_lock(settings, "semsearch rebuild")
    except LockHeldError:
        if args.engine == "ray":
            raise
        return _hand_over_rebuild(args, settings)
    summary = rebuild(settings, engine=args.engine, address=args.address, actors=args.ray_actors)
    data: dict[str, object] = {**summary.as_dict()}
    store = open_store(settings)
    for index in beside_dense(settings):  # the dense one is the new generation just built
        data[f"{index.name}_chunks"] = index.rebuild(store)
    _print_fields(args, data)
    return 0


def _hand_over_rebuild(args: argparse.Namespace, settings: Settings) -> int:
    """SQLite, and another process (`semsearch serve`'s worker) holds the indexing slot: queue the
    rebuild for it and follow the job until it is done (readers keep answering throughout)."""
    from indexer.write.rebuild import REBUILD_FIELDS
    from search.components import open_store
    from search.storage.models import JobStatus
    from search.work import jobs

    params = {name: getattr(settings, name) for name in REBUILD_FIELDS if name in settings.model_fields_set}
    store = open_store(settings)
    job_id = jobs.submit(store, "rebuild", params)
    print(f"another process is indexing: rebuild handed to it as job {job_id}; following it", file=sys.stderr)
    done = jobs.follow(store, job_id, timeout=7 * 24 * 3600)
    if done.state != JobStatus.DONE:
        print(f"rebuild job {job_id} {done.state}: {done.result.get('error', '')}", file=sys.stderr)
        return 1
    _print_fields(args, done.result)
    return 0


def cmd_delete(args: argparse.Namespace, settings: Settings) -> int:
    """Delete documents by id; exit status 1 when some id was not found or a derived index did not
    catch up."""
    from indexer.write import maintenance
    from indexer.write.pipeline import open_indexer

    _migrate(settings)
    indexer = open_indexer(settings)
    found, chunks = maintenance.delete(indexer.store, args.ids)
    # Readers drop deleted rows at once; this drops their terms and vectors from the derived indexes.
    failures = indexer.derived.catch_up()
    existed = set(found)
    missing = [i for i in dict.fromkeys(args.ids) if i not in existed]
    if args.json:
        _print_json({"deleted": len(found), "chunks": chunks, "not_found": missing})
    else:
        print(f"deleted {len(found)} documents ({chunks} chunks)")
        for doc_id in missing:
            print(f"not found: {doc_id}", file=sys.stderr)
    return max(1 if missing else 0, _stale("delete", failures))


def cmd_check(args: argparse.Namespace, settings: Settings) -> int:
    """Verify rows against vectors and the keyword index against the chunks; `--repair` runs the full
    pass (embeds what lacks a vector, writes the base file afresh from SQL, mends the keyword index).
    Exit status 1 while inconsistent."""
    from indexer.write.pipeline import open_indexer

    if args.repair:
        _migrate(settings)
    indexer = open_indexer(settings)
    if args.repair:
        indexer.resume()  # first the documents an interrupted run left pending
    reports = indexer.derived.repair() if args.repair else indexer.derived.check()
    dense = reports.pop("dense")  # its fields at the top level, each other index's under its name
    if args.json:
        _print_json({**dense.as_dict(), **{name: r.as_dict() for name, r in reports.items()}})
    else:
        print(" ".join(f"{k}={v}" for k, v in dense.as_dict().items()))
        for name, report in reports.items():
            print(f"{name}: " + " ".join(f"{k}={v}" for k, v in report.as_dict().items()))
    return 0 if dense.ok and all(r.ok for r in reports.values()) else 1


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    """Bring the database to the newest schema (writing commands and `serve` do it as they start)."""
    from search.components import migrate

    _print_fields(args, {"schema": migrate(settings)})
    return 0


def _filter_arg(text: str | None) -> dict[str, Any] | None:
    """The --filter flag as a JSON object (its meaning is checked by the searcher, naming the problem)."""
    if text is None:
        return None
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"--filter is not valid JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise ValueError(f'--filter must be a JSON object of field: condition, e.g. {{"kind": "animal"}}, got {text!r}')
    return raw


def cmd_search(args: argparse.Namespace, settings: Settings) -> int:
    """Print the best documents for a query (among those whose metadata passes --filter)."""
    from search.components import open_hybrid

    if not 1 <= args.k <= 1000:
        raise ValueError(f"-k must be between 1 and 1000, got {args.k}")
    metadata_filter = _filter_arg(args.filter)
    hits = open_hybrid(settings).search(args.query, k=args.k, filter=metadata_filter, mode=args.mode)
    if args.json:
        _print_json([asdict(hit) for hit in hits])
        return 0
    if not hits:
        hint = "none passes the filter" if metadata_filter else "is anything indexed? run `semsearch index PATH` first"
        print(f"no results ({hint})")
    for rank, hit in enumerate(hits, start=1):
        snippet = " ".join(hit.text.split())[:200]
        said = ", ".join(
            f"{name} #{s.rank} {s.score:.4f}" for name, s in (("dense", hit.dense), ("keyword", hit.keyword)) if s
        )
        print(f"{rank:>3}. {hit.score:.4f}  {hit.id}  {hit.title}  [{said}]\n       {snippet}")
    return 0


def cmd_eval(args: argparse.Namespace, settings: Settings) -> int:
    """Evaluate on a BEIR directory; `--data-dir` keeps the index it builds."""
    from indexer.cli.evaluate import evaluate

    result = evaluate(settings, args.directory, data_dir=args.data_dir, mode=args.mode)
    _print_fields(args, result)
    return 0


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    """Serve the API until interrupted, by default with the indexing worker on a thread beside it."""
    import os

    import uvicorn

    from api.server.app import create_app
    from indexer.write.worker import BackgroundWorker, open_worker
    from search.settings import settings_env

    _migrate(settings)  # once, here: the worker, the app and its worker processes only check the schema
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
                "api.server.app:create_app",
                factory=True,
                host=args.host,
                port=args.port,
                workers=args.workers,
                timeout_worker_healthcheck=WORKER_HEALTHCHECK_SECONDS,
            )
        else:
            state = background.worker.state if background is not None else None
            uvicorn.run(create_app(settings, state), host=args.host, port=args.port, log_level="info")
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
    "migrate": cmd_migrate,
    "search": cmd_search,
    "eval": cmd_eval,
    "serve": cmd_serve,
}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `semsearch` console script."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    # The errors a user can act on (bad settings, input, index, lock or schema) end in one line, not a traceback.
    from pydantic import ValidationError

    from indexer.write.locks import LockHeldError
    from indexer.write.ray_engine import RayMissingError
    from search.dense.catalog import IndexMismatchError
    from search.storage.schema import SchemaBehindError

    actionable = (ValueError, FileNotFoundError, IndexMismatchError, LockHeldError, RayMissingError, SchemaBehindError)
    try:
        settings = settings_from(args)
        return _COMMANDS[args.command](args, settings)
    except ValidationError as exc:
        print(f"semsearch: invalid settings: {exc}", file=sys.stderr)
    except actionable as exc:
        print(f"semsearch {args.command}: {exc}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
