"""Taking a snapshot of a live deployment: its SQL store as of one commit, the serving generation's
base file and the keyword index, and a manifest.

Consistency: the publish lock is held from before the keyword index is copied until the SQL copy's
state is fixed, so no merge replaces the base file and no compaction moves the log's floor meanwhile;
the keyword index is copied under its writer lock, before the SQL copy. Both index copies therefore
applied at most the SQL copy's seq, and at least its floor: a restored deployment catches them up
from the log in O(changes). The index files are opened under the locks and copied after they are
released (they are replaced, never changed in place, so an open file keeps what it held; copies, not
hard links, so that nothing done to a snapshot reaches the deployment). Every write acknowledged
before the snapshot began was committed before its SQL copy was, so it holds them; a document is
written with its chunks in one transaction, so it holds none half-written. Writers are never
stopped: SQLite writes go on beside the backup (WAL); only the worker's publishing waits while the
locks are held (on PostgreSQL, not during pg_dump: it reads the exported snapshot)."""

from __future__ import annotations

import logging
import shutil
import tempfile
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, func, select
from sqlalchemy.orm import Session

from indexer.write.keyword_writer import writer_lock_path
from indexer.write.locks import FileLock
from indexer.write.publisher import publish_lock_file, publish_locked
from indexer.write.snapshot.manifest import Manifest, SnapshotError
from indexer.write.snapshot.sql_copy import POSTGRES_FILE, SQLITE_FILE, exported_snapshot, pg_dump, sqlite_backup
from search.access import DEFAULT_COLLECTION
from search.collections.catalog import collection_settings as settings_of
from search.collections.placement import COLLECTIONS_FOLDER
from search.components import open_keyword, open_store
from search.settings import Settings
from search.storage import changes
from search.storage import collections as collection_rows
from search.storage.models import Chunk, Document
from search.storage.store import Store

log = logging.getLogger(__name__)


def take_snapshot(settings: Settings, out: Path) -> Manifest:
    """Write a snapshot of the deployment `settings` describe into the folder `out` (new, or empty).
    It is written under a temporary name beside `out` and renamed into place when complete."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise SnapshotError(f"{out} already exists and is not an empty folder: a snapshot is written into a new one")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        manifest = _take(settings.model_copy(update={"collection": DEFAULT_COLLECTION}), staging)
        for name in manifest.collections:  # the other collections the SQL copy lists, each its own snapshot
            own = collection_settings(settings, name)
            manifest.collections[name] = _take(own, staging / COLLECTIONS_FOLDER / name).as_dict()
        manifest.write(staging)
        if out.exists():
            out.rmdir()
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest


class _Pinned:
    """Index files opened under the locks, copied into the snapshot once they are released."""

    def __init__(self, stack: ExitStack, staging: Path) -> None:
        self.stack = stack
        self.staging = staging
        self.files: list[tuple[BinaryIO, Path]] = []

    def pin(self, source: Path, relative: str) -> None:
        self.files.append((self.stack.enter_context(source.open("rb")), self.staging / relative))

    def copy(self) -> None:
        for handle, target in self.files:
            target.parent.mkdir(parents=True, exist_ok=True)
            with target.open("wb") as out:
                shutil.copyfileobj(handle, out, 1 << 20)


def collection_settings(server: Settings, name: str) -> Settings:
    """The settings of collection `name` of the deployment `server` describes."""
    deployment = open_store(server.model_copy(update={"collection": DEFAULT_COLLECTION}))
    try:
        return settings_of(server, deployment, name)
    finally:
        deployment.close()


def _take(settings: Settings, staging: Path) -> Manifest:
    store = open_store(settings)
    try:
        with ExitStack() as stack:
            pinned = _Pinned(stack, staging)
            locks = stack.enter_context(ExitStack())
            locks.enter_context(publish_locked(store, publish_lock_file(settings.index_dir)))
            keyword_dir, keyword_seq = _pin_keyword(settings, pinned)
            if store.postgres:
                session, exported = stack.enter_context(exported_snapshot(store))
                manifest = _facts(session, "postgresql", store.deployment)
            else:
                sqlite_backup(store.url, staging / SQLITE_FILE)
                # Read with no pragmas: the copy stays one self-contained file (no -wal beside it).
                copy = create_engine(f"sqlite:///{staging / SQLITE_FILE}")
                stack.callback(copy.dispose)
                session = stack.enter_context(Session(copy))
                manifest = _facts(session, "sqlite", store.deployment)
            _pin_dense(session, store, settings.index_dir, pinned, manifest)
            locks.close()  # the SQL state is fixed and the files are open: publishing may go on
            pinned.copy()
            if store.postgres:
                pg_dump(store.url, exported, staging / POSTGRES_FILE)
    finally:
        store.close()
    manifest.keyword_dir, manifest.keyword_seq = keyword_dir, keyword_seq
    return manifest


def _facts(s: Session, database: str, deployment: bool) -> Manifest:
    """What the manifest says of the SQL state `s` reads (the deployment's: its other collections too)."""
    others = [info.name for info in collection_rows.listed(s) if info.name != DEFAULT_COLLECTION] if deployment else []
    return Manifest(
        collections={name: {} for name in others},
        database=database,
        schema_revision=MigrationContext.configure(s.connection()).get_current_revision() or "",
        seq=changes.head(s),
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        documents=int(s.scalar(select(func.count()).select_from(Document)) or 0),
        chunks=int(s.scalar(select(func.count()).select_from(Chunk)) or 0),
        embedding_space=None,
        dense_file=None,
        dense_seq=None,
        keyword_dir=None,
        keyword_seq=None,
    )


def _pin_dense(s: Session, store: Store, index_dir: Path, pinned: _Pinned, manifest: Manifest) -> None:
    """The base file of the generation serving in the SQL state `s` (unchanged while the publish
    lock is held); none before the first merge, or when the deployment lost it (readers and the
    restored worker then rebuild it from the vectors in SQL)."""
    generation = store.active_generation(s)
    if generation is None:
        return
    space = generation.space
    manifest.embedding_space = {
        "model": space.model,
        "pooling": space.pooling,
        "dim": space.dim,
        "max_length": space.max_length,
        "key": space.key,
    }
    source = index_dir / generation.path
    if not source.is_file():
        if generation.base_seq:
            log.warning("the serving generation's base file %s is missing: the snapshot holds none", source)
        return
    pinned.pin(source, f"index/{generation.path}")
    manifest.dense_file, manifest.dense_seq = f"index/{generation.path}", generation.base_seq


def _pin_keyword(settings: Settings, pinned: _Pinned) -> tuple[str | None, int | None]:
    """The committed keyword index's files, opened under its writer lock (they then stand still);
    (its folder in the snapshot, the seq it applied), or (None, None) when none was built."""
    index = open_keyword(settings)
    with FileLock(writer_lock_path(index)):
        if not index.exists():
            return None, None
        applied = index.applied_in(index.open())
        for path in sorted(index.path.rglob("*")):
            if path.is_file() and not (path.name.startswith(".tantivy-") and path.name.endswith(".lock")):
                pinned.pin(path, f"keyword/{index.path.name}/{path.relative_to(index.path).as_posix()}")
    return f"keyword/{index.path.name}", applied
