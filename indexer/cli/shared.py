"""What several commands share: the SQLite writer lock and printing a command's result."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from indexer.ingest.files import Skipped
    from indexer.ingest.sources import Rejected
    from indexer.write.locks import FileLock
    from search.settings import Settings


def writer_lock(settings: Settings, what: str) -> FileLock | None:
    """On SQLite one process embeds at a time; PostgreSQL needs no such lock (rows are claimed)."""
    from indexer.write.locks import single_writer_lock

    if settings.resolved_database_url.startswith("sqlite"):
        return single_writer_lock(settings.index_dir, what)
    return None


def report_rejected(record: Rejected | Skipped) -> None:
    """One line on stderr for each record rejected and each file skipped, as it happens."""
    from indexer.ingest.files import Skipped

    print(f"{'skipped' if isinstance(record, Skipped) else 'rejected'} {record}", file=sys.stderr)


def print_fields(args: argparse.Namespace, data: Mapping[str, object]) -> None:
    """A command's result: one JSON object with --json, else `key=value` pairs on one line."""
    if args.json:
        print_json(data)
    else:
        print(" ".join(f"{k}={v}" for k, v in data.items()))


def print_json(data: Any) -> None:
    """JSON on stdout as UTF-8 text (not \\u escapes), whatever the locale's encoding."""
    if (sys.stdout.encoding or "").lower().replace("-", "") != "utf8" and hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(encoding="utf-8")
    print(json.dumps(data, ensure_ascii=False))


def migrate_schema(settings: Settings) -> None:
    """A writing command brings the schema up to date once, as it starts; the stores it then opens
    (and every read-only command's) only check it."""
    from search.components import migrate

    migrate(settings)


def stale(command: str, failures: Mapping[str, str]) -> int:
    """Say which derived indexes failed to catch up (each mends itself at its next catch-up, or with
    `semsearch check --repair`); the exit status: 1 when any did."""
    for name, error in failures.items():
        print(f"semsearch {command}: the {name} index did not catch up with SQL: {error}", file=sys.stderr)
    return 1 if failures else 0
