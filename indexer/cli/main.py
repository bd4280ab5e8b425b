"""The `semsearch` command: index, add, worker, search and eval here; rebuild, delete and check in
maintenance.py, serve in serve.py, keys in keys.py, snapshot and restore in snapshot.py."""

from __future__ import annotations

# Only what parsing needs is imported here: `semsearch --help` must answer at once, and each command
# imports the heavy parts (the encoder, faiss, SQLAlchemy, the web stack) it uses itself.
import argparse
import json
import logging
import math
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from indexer.cli.args import build_parser, settings_from
from indexer.cli.collections import cmd_collections, in_collection
from indexer.cli.keys import cmd_keys
from indexer.cli.maintenance import cmd_check, cmd_delete, cmd_migrate, cmd_rebuild
from indexer.cli.serve import cmd_serve
from indexer.cli.shared import migrate_schema, print_fields, print_json, report_rejected, stale, writer_lock
from indexer.cli.snapshot import cmd_restore, cmd_snapshot

if TYPE_CHECKING:
    from indexer.ingest.files import Skipped
    from indexer.ingest.sources import Rejected
    from search.settings import Settings


def cmd_index(args: argparse.Namespace, settings: Settings) -> int:
    """Index the given paths; exit status 1 when any record was rejected (a file of a known type that
    could not be read among them) or a derived index did not catch up. Files of unknown types are
    skipped and listed, not errors."""
    from indexer.cli.progress import Progress, count_records
    from indexer.ingest.sources import read_sources
    from indexer.write.pipeline import open_indexer

    _lock = writer_lock(settings, "semsearch index")
    migrate_schema(settings)
    indexer = open_indexer(settings)

    progress = Progress(sys.stderr, count_records(args.paths) if sys.stderr.isatty() else None)
    try:
        records = read_sources(args.paths, include=args.include, exclude=args.exclude)
        # Rejections are said as they happen; skipped files are listed under the summary.
        summary = indexer.run(
            records, on_reject=_report_rejections, on_progress=progress, delete_missing=args.delete_missing
        )
    finally:
        progress.close()
    data = summary.as_dict()
    if args.json:
        print_json(data)
    else:
        print(
            f"indexed {data['documents']} documents ({data['added']} added, {data['updated']} updated, "
            f"{data['unchanged']} unchanged), {data['chunks']} chunks embedded, {data['rejected']} rejected, "
            f"{data['skipped']} skipped, {data['deleted']} deleted in {data['seconds']:.1f} s "
            f"({data['docs_per_s']} docs/s)"
        )
        for skipped in summary.skipped:
            print(f"  skipped {skipped}")
    return max(1 if summary.rejected else 0, stale("index", indexer.derived.failures))


def _report_rejections(record: Rejected | Skipped) -> None:
    from indexer.ingest.sources import Rejected

    if isinstance(record, Rejected):
        report_rejected(record)


def cmd_add(args: argparse.Namespace, settings: Settings) -> int:
    """Queue documents for the worker; exit status 1 when any record was rejected."""
    from indexer.ingest.files import Skipped
    from indexer.ingest.sources import Rejected, read_sources
    from search.components import open_store
    from search.work.queue import enqueue

    migrate_schema(settings)
    store = open_store(settings)
    docs, rejected, skipped = [], 0, []
    written = {"added": 0, "updated": 0, "unchanged": 0}
    for record in [*read_sources(args.paths, include=args.include, exclude=args.exclude), None]:
        if isinstance(record, Skipped):
            skipped.append({"path": str(record.path), "reason": record.reason})
            report_rejected(record)
        elif isinstance(record, Rejected):
            rejected += 1
            report_rejected(record)
        elif record is not None:
            docs.append(record)
        if len(docs) >= 1000 or (record is None and docs):
            result, same = enqueue(store, docs)
            written["added"] += len(result.added)
            written["updated"] += len(result.updated)
            written["unchanged"] += len(same)
            docs = []
    data: dict[str, object] = {**written, "rejected": rejected, "skipped": len(skipped)}
    print_fields(args, {**data, "skipped_files": skipped} if args.json else data)
    return 1 if rejected else 0


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    """Embed queued documents until interrupted (or, with --until-empty, until none is left): of every
    collection, or of the one --collection names."""
    import signal
    import threading

    from indexer.write.fleet import Fleet
    from indexer.write.worker import open_worker

    migrate_schema(settings)
    one = args.collection is not None
    if one:
        _lock = writer_lock(settings, "semsearch worker")
        worker = open_worker(settings)
    else:
        fleet = Fleet(settings, lock=lambda own: writer_lock(own, "semsearch worker"))
        fleet.refresh()  # the default collection's lock refused ends the command
    if args.until_empty:
        if one:
            worker.start_up()
            done, failures = worker.drain(), worker.derived.failures
        else:
            done = fleet.drain()
            failures = {
                f"{name} {index}": error
                for name, w in fleet.workers.items()
                for index, error in w.derived.failures.items()
            }
        if args.json:
            print_json({"embedded": done})
        else:
            print(f"embedded {done} documents")
        return stale("worker", failures)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    (worker if one else fleet).run(stop)
    return 0


def _filter_arg(text: str | None) -> dict[str, Any] | None:
    """The --filter flag as a JSON object (its meaning is checked by the searcher, naming the problem)."""
    from search.json_input import loads
    from search.validation import FieldError

    if text is None:
        return None
    try:
        raw = loads(text, "--filter")
    except FieldError:  # nested too deep: the message names the flag
        raise
    except ValueError as exc:
        raise ValueError(f"--filter is not valid JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise ValueError(f'--filter must be a JSON object of field: condition, e.g. {{"kind": "animal"}}, got {text!r}')
    return raw


def cmd_search(args: argparse.Namespace, settings: Settings) -> int:
    """Print the best documents for a query (among those whose metadata passes --filter)."""
    from indexer.write.keyword_follower import catch_up_once
    from search.components import open_hybrid
    from search.query.hits import at_least
    from search.query.paging import Pager, view

    if not 1 <= args.k <= 1000:
        raise ValueError(f"-k must be between 1 and 1000, got {args.k}")
    if args.min_score is not None and not math.isfinite(args.min_score):
        raise ValueError(f"--min-score must be a finite number, got {args.min_score}")
    metadata_filter = _filter_arg(args.filter)
    shown = view(args.k, args.offset, args.sort, args.facet, settings.search_max_hits)
    hybrid = open_hybrid(settings)
    # The data directory's keyword index may be behind the log (a replica's, or one no worker writes).
    failed = None if args.mode == "dense" else catch_up_once(hybrid.store, hybrid.keyword)
    if failed is not None:
        print(f"semsearch search: the keyword index did not catch up with SQL: {failed}", file=sys.stderr)
    pager = Pager.over(hybrid.store, shown)
    found = hybrid.search(args.query, k=shown.depth, filter=metadata_filter, mode=args.mode, arrange=pager)
    hits = at_least(found, args.min_score)
    facets = {name: [asdict(f) for f in values] for name, values in (pager.facets or [{}])[0].items()}
    if args.json:
        # With --facet, an object: the hits alone stay the list they always were.
        print_json(
            {"results": [asdict(hit) for hit in hits], "facets": facets} if facets else [asdict(h) for h in hits]
        )
        return 0
    if not hits:
        hint = "none passes the filter" if metadata_filter else "is anything indexed? run `semsearch index PATH` first"
        hint = f"none past the first {args.offset}" if args.offset else hint
        print(f"no results ({hint})")
    for rank, hit in enumerate(hits, start=args.offset + 1):
        snippet = " ".join(hit.text.split())[:200]
        said = ", ".join(
            f"{name} #{s.rank} {s.score:.4f}" for name, s in (("dense", hit.dense), ("keyword", hit.keyword)) if s
        )
        page = f" (page {hit.page})" if hit.page is not None else ""
        print(f"{rank:>3}. {hit.score:.4f}  {hit.id}{page}  {hit.title}  [{said}]\n       {snippet}")
    for name, values in facets.items():
        print(f"{name}: " + (", ".join(f"{json.dumps(f['value'])} ({f['count']})" for f in values) or "(no values)"))
    return 0


def cmd_eval(args: argparse.Namespace, settings: Settings) -> int:
    """Evaluate on a BEIR directory; `--data-dir` keeps the index it builds."""
    from indexer.cli.evaluate import evaluate

    result = evaluate(settings, args.directory, data_dir=args.data_dir, mode=args.mode)
    print_fields(args, result)
    return 0


_COMMANDS = {
    "index": cmd_index,
    "add": cmd_add,
    "worker": cmd_worker,
    "rebuild": cmd_rebuild,
    "delete": cmd_delete,
    "check": cmd_check,
    "migrate": cmd_migrate,
    "snapshot": cmd_snapshot,
    "restore": cmd_restore,
    "search": cmd_search,
    "eval": cmd_eval,
    "serve": cmd_serve,
    "keys": cmd_keys,
    "collections": cmd_collections,
}


# After a command's line saying the database failed (search.storage.outage), what to do about it.
_WHAT_NEXT = {
    "disk_full": "free space on it and run the command again (what was stored before it filled is kept)",
    "unavailable": "run the command again once it answers",
    "busy": "run the command again",
}


@contextmanager
def _told_once(args: argparse.Namespace) -> Iterator[None]:
    """A command that ends when the database's disk fills ends with a line saying so: the log line of
    the episode (search.storage.disk) is for the processes that go on, `serve` and `worker`."""
    record = logging.getLogger("search.storage.disk")
    level = record.level
    if args.command not in ("serve", "worker") and not args.verbose:
        record.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        record.setLevel(level)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `semsearch` console script."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    # The errors a user can act on (bad settings, input, index, lock or schema, the database unavailable
    # or its disk full, a full disk of the data directory) end in one line, not a traceback.
    from pydantic import ValidationError

    from indexer.write.locks import LockHeldError
    from indexer.write.ray_engine import RayMissingError
    from search.dense.catalog import IndexMismatchError
    from search.storage.outage import classify
    from search.storage.schema import SchemaBehindError

    actionable = (ValueError, FileNotFoundError, IndexMismatchError, LockHeldError, RayMissingError, SchemaBehindError)
    try:
        settings = in_collection(args, settings_from(args))
        with _told_once(args):
            return _COMMANDS[args.command](args, settings)
    except ValidationError as exc:
        print(f"semsearch: invalid settings: {exc}", file=sys.stderr)
    except Exception as exc:
        failure = classify(exc)
        if failure is not None:
            print(f"semsearch {args.command}: {failure.describe()}; {_WHAT_NEXT[failure.kind]}", file=sys.stderr)
        elif isinstance(exc, actionable):
            print(f"semsearch {args.command}: {exc}", file=sys.stderr)
        else:
            raise
    return 2


if __name__ == "__main__":
    sys.exit(main())
