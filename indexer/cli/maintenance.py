"""The maintenance commands: rebuild (or hand the rebuild to the process indexing), delete, check."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from indexer.cli.shared import print_fields, print_json, writer_lock

if TYPE_CHECKING:
    from search.settings import Settings


def cmd_rebuild(args: argparse.Namespace, settings: Settings) -> int:
    """Build a new generation (index type, model or pooling from the flags) and switch readers to it."""
    from indexer.write.locks import LockHeldError
    from indexer.write.ray_engine import require_ray
    from indexer.write.rebuild import rebuild
    from search.components import open_keyword, open_store

    if args.engine == "ray":
        require_ray()  # a missing extra is reported before the lock or the database is touched
    try:
        _lock = writer_lock(settings, "semsearch rebuild")
    except LockHeldError:
        if args.engine == "ray":
            raise
        return _hand_over_rebuild(args, settings)
    summary = rebuild(settings, engine=args.engine, address=args.address, actors=args.ray_actors)
    data: dict[str, object] = {
        **summary.as_dict(),
        "keyword_chunks": open_keyword(settings).rebuild(open_store(settings)),
    }
    print_fields(args, data)
    return 0


def _hand_over_rebuild(args: argparse.Namespace, settings: Settings) -> int:
    """SQLite, and another process (`semsearch serve`'s worker) holds the indexing slot: queue the
    rebuild for it and follow the job until it is done (readers keep answering throughout)."""
    from indexer.write.rebuild import REBUILD_FIELDS
    from search.components import open_store
    from search.storage import jobs

    params = {name: getattr(settings, name) for name in REBUILD_FIELDS if name in settings.model_fields_set}
    store = open_store(settings)
    job_id = jobs.submit(store, "rebuild", params)
    print(f"another process is indexing: rebuild handed to it as job {job_id}; following it", file=sys.stderr)
    done = jobs.follow(store, job_id, timeout=7 * 24 * 3600)
    if done.state != jobs.DONE:
        print(f"rebuild job {job_id} {done.state}: {done.result.get('error', '')}", file=sys.stderr)
        return 1
    print_fields(args, done.result)
    return 0


def cmd_delete(args: argparse.Namespace, settings: Settings) -> int:
    """Delete documents by id; exit status 1 when some id was not found."""
    from indexer.write import maintenance
    from indexer.write.pipeline import open_indexer
    from search.components import open_keyword

    indexer = open_indexer(settings)
    found, chunks = maintenance.delete(indexer, args.ids)
    open_keyword(settings).catch_up(indexer.store)  # readers drop deleted rows at once; this drops their terms
    existed = set(found)
    missing = [i for i in dict.fromkeys(args.ids) if i not in existed]
    if args.json:
        print_json({"deleted": len(found), "chunks": chunks, "not_found": missing})
    else:
        print(f"deleted {len(found)} documents ({chunks} chunks)")
        for doc_id in missing:
            print(f"not found: {doc_id}", file=sys.stderr)
    return 1 if missing else 0


def cmd_check(args: argparse.Namespace, settings: Settings) -> int:
    """Verify rows against vectors and the keyword index against the chunks; `--repair` runs the full
    pass (embeds what lacks a vector, writes the base file afresh from SQL, mends the keyword index).
    Exit status 1 while inconsistent."""
    from indexer.write import maintenance
    from indexer.write.pipeline import open_indexer
    from search.components import open_keyword

    indexer = open_indexer(settings)
    state = maintenance.repair(indexer) if args.repair else maintenance.check(indexer)
    keyword = open_keyword(settings)
    words = keyword.repair(indexer.store) if args.repair else keyword.check(indexer.store)
    if args.json:
        print_json({**state.as_dict(), "keyword": words.as_dict()})
    else:
        print(" ".join(f"{k}={v}" for k, v in state.as_dict().items()))
        print("keyword: " + " ".join(f"{k}={v}" for k, v in words.as_dict().items()))
    return 0 if state.ok and words.ok else 1
