"""POST /snapshots: an administrator's snapshot of this deployment, written into SEMSEARCH_SNAPSHOT_DIR.

Taking one is the indexer's work (indexer/write/snapshot), handed to the app by `semsearch serve` as
a `SnapshotTaker`, like the keyword keeper. It runs in a thread (it copies files and the database),
one at a time per snapshot directory: a lock file there, taken without waiting, makes a second
request a 409 in this process or any other serving the same directory."""

from __future__ import annotations

import asyncio
import fcntl
import os
import secrets
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel

from api.server.bodies import BoundedRoute
from api.server.deps import SettingsDep
from api.server.schemas import ErrorBody
from search.settings import Settings

LOCK = ".snapshot.lock"


class SnapshotTaker(Protocol):
    """Writes a snapshot of the deployment `settings` describe into the new folder `out`; returns its manifest."""

    def __call__(self, settings: Settings, out: Path) -> Mapping[str, Any]: ...


class SnapshotOut(BaseModel):
    """A snapshot just written: its folder's name in SEMSEARCH_SNAPSHOT_DIR and its manifest."""

    name: str
    manifest: dict[str, Any]


router = APIRouter(route_class=BoundedRoute)


class _BusyError(Exception):
    """Another snapshot is being written into the directory."""


@contextmanager
def _one_at_a_time(folder: Path) -> Iterator[None]:
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise _BusyError from None
        yield
    finally:
        os.close(fd)  # drops the lock


@router.post(
    "/snapshots",
    response_model=SnapshotOut,
    status_code=201,
    summary="Take a snapshot of this deployment",
    responses={404: {"model": ErrorBody}, 409: {"model": ErrorBody}, 500: {"model": ErrorBody}},
)
async def create_snapshot(request: Request, settings: SettingsDep) -> SnapshotOut:
    """A consistent copy of the deployment (its SQL store, the index files it applied, a manifest)
    written into a new folder of SEMSEARCH_SNAPSHOT_DIR while writes go on; `semsearch restore`
    restores it. 409 while another snapshot is being written there."""
    take: SnapshotTaker | None = request.app.state.take_snapshot
    if settings.snapshot_dir is None or take is None:
        # 404 as Elasticsearch answers a snapshot into a repository it has not been given: nothing to write into.
        raise HTTPException(
            404, "snapshots are off: set SEMSEARCH_SNAPSHOT_DIR to the folder they are written into (and restart)"
        )
    name = f"snapshot-{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"
    try:
        with _one_at_a_time(settings.snapshot_dir):
            manifest = await asyncio.to_thread(take, settings, settings.snapshot_dir / name)
    except _BusyError:
        raise HTTPException(409, "another snapshot is being written; try again when it is done") from None
    except ValueError as exc:  # a snapshot that cannot be taken here (e.g. pg_dump missing): it says why
        raise HTTPException(500, f"the snapshot could not be taken: {exc}") from exc
    return SnapshotOut(name=name, manifest=dict(manifest))
