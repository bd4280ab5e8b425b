"""The maintenance commands: rebuild (or hand the rebuild to the process indexing), delete, check."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from indexer.cli.shared import migrate_schema, print_fields, print_json, stale, writer_lock

if TYPE_CHECKING:
    from search.settings import Settings


def cmd_rebuild(args: argparse.Namespace, settings: Settings) -> int:
    """Build a new generation (index type, model or pooling from the flags) and switch readers to it."""
    from indexer.write.derived import beside_dense
    from indexer.write.locks import LockHeldError
    from indexer.write.ray_engine import require_ray
    from indexer.write.rebuild import rebuild
    from search.components import open_store

    if args.engine == "ray":
        require_ray()  # a missing extra is reported before the lock or the database is touched
    migrate_schema(settings)
    try:
        _lock = writer_lock(settings, "semsearch rebuild")
    except LockHeldError:
        if args.engine == "ray":
            raise
        return _hand_over_rebuild(args, settings)
    summary = rebuild(settings, engine=args.engine, address=args.address, actors=args.ray_actors)
    data: dict[str, object] = {**summary.as_dict()}
    store = open_store(settings)
    for index in beside_dense(settings):  # the dense one is the new generation just built
        data[f"{index.name}_chunks"] = index.rebuild(store)
    print_fields(args, data)
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
    print_fields(args, done.result)
    return 0


def cmd_delete(args: argparse.Namespace, settings: Settings) -> int:
    """Delete documents by id; exit status 1 when some id was not found or a derived index did not
    catch up."""
    from indexer.write import maintenance
    from indexer.write.pipeline import open_indexer

    migrate_schema(settings)
    indexer = open_indexer(settings)
    found, chunks = maintenance.delete(indexer.store, args.ids)
    # Readers drop deleted rows at once; this drops their terms and vectors from the derived indexes.
    failures = indexer.derived.catch_up()
    existed = set(found)
    missing = [i for i in dict.fromkeys(args.ids) if i not in existed]
    if args.json:
        print_json({"deleted": len(found), "chunks": chunks, "not_found": missing})
    else:
        print(f"deleted {len(found)} documents ({chunks} chunks)")
        for doc_id in missing:
            print(f"not found: {doc_id}", file=sys.stderr)
    return max(1 if missing else 0, stale("delete", failures))


def cmd_check(args: argparse.Namespace, settings: Settings) -> int:
    """Verify rows against vectors and the keyword index against the chunks, and that no derived index
    is behind the change log; `--repair` runs the full pass (embeds what lacks a vector, writes the base
    file afresh from SQL, mends and catches up the keyword index). Exit status 1 while inconsistent.
    With --all-collections, each collection in turn (JSON: an object by collection name)."""
    if not args.all_collections:
        ok, data = _check(args, settings)
        if args.json:
            print_json(data)
        return 0 if ok else 1
    from indexer.cli.collections import every_collection

    results = {}
    for own in every_collection(settings):
        if not args.json:
            print(f"collection {own.collection}:")
        results[own.collection] = _check(args, own)
    if args.json:
        print_json({name: data for name, (_, data) in results.items()})
    return 0 if all(ok for ok, _ in results.values()) else 1


def _check(args: argparse.Namespace, settings: Settings) -> tuple[bool, dict[str, object]]:
    """Check (or repair) one collection: (consistent, its report); the report printed unless --json."""
    from indexer.write.pipeline import open_indexer

    if args.repair:
        migrate_schema(settings)
    indexer = open_indexer(settings)
    if args.repair:
        indexer.resume()  # first the documents an interrupted run left pending
    reports = indexer.derived.repair() if args.repair else indexer.derived.check()
    dense = reports.pop("dense")  # its fields at the top level, each other index's under its name
    if not args.json:
        print(" ".join(f"{k}={v}" for k, v in dense.as_dict().items()))
        for name, report in reports.items():
            print(f"{name}: " + " ".join(f"{k}={v}" for k, v in report.as_dict().items()))
    for name, report in {"dense": dense, **reports}.items():
        if report.lag is not None:  # its catch-ups failed (a full disk), or it is catching up now
            print(
                f"semsearch check: the {name} index is {report.lag}: `semsearch check --repair` catches it up",
                file=sys.stderr,
            )
    ok = dense.ok and all(r.ok for r in reports.values())
    return ok, {**dense.as_dict(), **{name: r.as_dict() for name, r in reports.items()}}


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    """Bring the database to the newest schema (writing commands and `serve` do it as they start)."""
    from search.components import migrate

    print_fields(args, {"schema": migrate(settings)})
    return 0
