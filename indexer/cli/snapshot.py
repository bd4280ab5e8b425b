"""`semsearch snapshot OUT` and `semsearch restore IN`: a consistent copy of a live deployment, and
its restore into an empty one (indexer/write/snapshot)."""

from __future__ import annotations

import argparse
import time
from typing import TYPE_CHECKING

from indexer.cli.shared import print_fields

if TYPE_CHECKING:
    from search.settings import Settings


def cmd_snapshot(args: argparse.Namespace, settings: Settings) -> int:
    """Write a snapshot of the running deployment into a new folder; writers need not stop."""
    from indexer.write.snapshot.take import take_snapshot

    started = time.monotonic()
    manifest = take_snapshot(settings, args.out)
    print_fields(args, _summary(manifest.as_dict(), str(args.out), time.monotonic() - started))
    return 0


def cmd_restore(args: argparse.Namespace, settings: Settings) -> int:
    """Restore a snapshot into an empty data directory and database."""
    from indexer.write.snapshot.restore import restore

    started = time.monotonic()
    manifest = restore(settings, args.snapshot)
    print_fields(args, _summary(manifest.as_dict(), str(settings.data_dir), time.monotonic() - started))
    return 0


def _summary(manifest: dict[str, object], where: str, seconds: float) -> dict[str, object]:
    keys = ("database", "schema_revision", "seq", "documents", "chunks", "dense_file", "keyword_dir")
    others = manifest.get("collections") or {}
    collections = ",".join(sorted(others)) if isinstance(others, dict) else ""
    return {"path": where, **{k: manifest[k] for k in keys}, "collections": collections, "seconds": round(seconds, 2)}
