"""`semsearch serve`: the API, by default with the indexing worker on a thread beside it."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from indexer.cli.shared import migrate_schema, writer_lock

if TYPE_CHECKING:
    from fastapi import FastAPI

    from search.settings import Settings
    from search.work.state import WorkerState

# uvicorn kills a worker process that does not answer its health check within this many seconds (5 by
# default) and starts another. A worker answers only once it has imported the app and loaded its encoder:
# seconds of CPU on a busy 2-core machine (7 s when the app still imported torch), past the default there.
WORKER_HEALTHCHECK_SECONDS = 120


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    """Serve the API until interrupted, by default with the indexing worker on a thread beside it."""
    import os

    from api.server.capacity import connection_limits, raise_file_limit
    from api.server.serving import serve
    from indexer.write.fleet import Fleet
    from indexer.write.worker import BackgroundWorker
    from search.settings import settings_env

    raise_file_limit()  # first: the cap on connections follows it, and worker processes inherit it
    migrate_schema(settings)  # once, here: the worker, the app and its worker processes only check the schema
    background, fleet = None, None
    if not args.no_worker:
        # Every collection's worker, each holding its collection's SQLite writer lock.
        fleet = Fleet(settings, lock=lambda own: writer_lock(own, "semsearch serve (with its indexing worker)"))
        fleet.refresh()  # the default collection's lock refused ends the command, as before collections
        background = BackgroundWorker(fleet)
        background.start()
    limits = connection_limits(settings.header_timeout_seconds, settings.max_connections)
    try:
        if args.workers > 1:
            # Worker processes build their app from the environment: hand them these settings there.
            os.environ.update(settings_env(settings))
            serve(
                "indexer.cli.serve:serving_app",
                limits,
                factory=True,
                host=args.host,
                port=args.port,
                workers=args.workers,
                timeout_worker_healthcheck=WORKER_HEALTHCHECK_SECONDS,
            )
        else:
            state = fleet.state if fleet is not None else None
            serve(serving_app(settings, state), limits, host=args.host, port=args.port, log_level="info")
    finally:
        if background is not None and fleet is not None:
            background.stop()
            fleet.close()
    return 0


def serving_app(settings: Settings | None = None, worker_state: WorkerState | None = None) -> FastAPI:
    """The API as `serve` runs it (each of its worker processes calls this with no arguments: the
    settings come from the environment): it keeps the keyword index of its data directory caught up
    with the change log itself wherever no worker does (a replica; see indexer/write/keyword_follower.py)."""
    from api.server.app import create_app
    from indexer.write.keyword_follower import KeywordFollower
    from search.settings import Settings

    settings = settings or Settings()
    app = create_app(
        settings,
        worker_state,
        KeywordFollower(settings.reload_seconds),
        snapshot_manifest,
        lambda: KeywordFollower(settings.reload_seconds),  # each other collection's, as it is opened
    )
    app.state.freeze_heap = True  # the process serves this app until it ends
    return app


def snapshot_manifest(settings: Settings, out: Path) -> dict[str, Any]:
    """Take a snapshot into `out` and answer its manifest (what POST /snapshots runs, in a thread)."""
    from indexer.write.snapshot.take import take_snapshot

    return take_snapshot(settings, out).as_dict()
