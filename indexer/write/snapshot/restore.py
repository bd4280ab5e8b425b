"""Restoring a snapshot into an empty data directory and an empty database (never over a deployment):
its manifest and checksums are checked first, a snapshot of a newer schema is refused, one of an older
schema is migrated after the restore. The index files come back as they were; their applied seq is at
most the SQL copy's, so catching up applies only the log after it (the keyword index is caught up
here, and built from SQL when the snapshot held none)."""

from __future__ import annotations

import shutil
from pathlib import Path

from alembic.script import ScriptDirectory

from indexer.write.keyword_writer import KeywordWriter
from indexer.write.snapshot.manifest import Manifest, SnapshotError, read
from indexer.write.snapshot.sql_copy import POSTGRES_FILE, SQLITE_FILE, pg_restore, require_empty, sqlite_path
from indexer.write.snapshot.take import collection_settings
from search.collections.placement import COLLECTIONS_FOLDER
from search.components import migrate, open_keyword, open_store
from search.settings import Settings
from search.storage.db import alembic_config
from search.storage.store import Store


def restore(settings: Settings, source: Path) -> Manifest:
    """Restore the snapshot in `source` into the data directory and database `settings` name; the
    schema is then brought to the newest. Returns the snapshot's manifest."""
    manifest = read(source)
    url = settings.resolved_database_url
    _check_target(settings, manifest)
    data_dir = settings.data_dir
    created = not data_dir.exists()
    try:
        _copy_indexes(source, data_dir, manifest)
        if manifest.database == "sqlite":
            target = sqlite_path(url)
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(f".{target.name}.restoring")
            shutil.copyfile(source / SQLITE_FILE, partial)
            partial.rename(target)
        else:
            pg_restore(url, source / POSTGRES_FILE)  # one transaction: all or nothing
    except BaseException:
        _undo(data_dir, created)
        raise
    migrate(settings)
    _catch_up_keyword(settings)
    for name, own in manifest.collections.items():  # each its own snapshot, into its own place
        _restore_collection(settings, source / COLLECTIONS_FOLDER / name, name, Manifest(**own))
    return manifest


def _restore_collection(server: Settings, source: Path, name: str, manifest: Manifest) -> None:
    """Restore collection `name` (its row came back with the deployment's database) from its folder
    of the snapshot: its database (a SQLite file, or its PostgreSQL schema) and its index files."""
    settings = collection_settings(server, name)
    if manifest.database == "sqlite":
        _copy_indexes(source, settings.collection_dir, manifest)
        target = sqlite_path(settings.resolved_database_url)
        partial = target.with_name(f".{target.name}.restoring")
        shutil.copyfile(source / SQLITE_FILE, partial)
        partial.rename(target)
    else:
        store = Store(settings.resolved_database_url, upgrade=False, deployment=False)
        try:
            require_empty(store)
        finally:
            store.close()
        _copy_indexes(source, settings.collection_dir, manifest)
        pg_restore(settings.deployment_database_url, source / POSTGRES_FILE)  # the dump makes its schema
    migrate(settings)
    _catch_up_keyword(settings)


def _catch_up_keyword(settings: Settings) -> None:
    """Apply the log after the keyword index's seq (O(changes)); build it from SQL when the snapshot
    held none. The dense index needs nothing: readers apply the log after its base file themselves."""
    store = open_store(settings)
    writer = KeywordWriter(open_keyword(settings))
    try:
        writer.catch_up(store)
    finally:
        writer.release()
        store.close()


def _check_target(settings: Settings, manifest: Manifest) -> None:
    """Refuse a snapshot of a newer schema, of the other kind of database, and a target that is not empty."""
    url = settings.resolved_database_url
    known = {s.revision for s in ScriptDirectory.from_config(alembic_config(url)).walk_revisions()}
    if manifest.schema_revision not in known:
        raise SnapshotError(
            f"the snapshot's schema revision {manifest.schema_revision!r} is unknown to this semsearch: it was "
            "taken by a newer version. Restore it with that version (or a newer one)"
        )
    kind = "postgresql" if url.startswith("postgresql") else "sqlite"
    if kind != manifest.database:
        raise SnapshotError(
            f"the snapshot holds a {manifest.database} database; the settings name a {kind} one "
            "(SEMSEARCH_DATABASE_URL): a snapshot restores into the kind of database it was taken from"
        )
    data_dir = settings.data_dir
    if data_dir.exists() and (not data_dir.is_dir() or any(data_dir.iterdir())):
        raise SnapshotError(
            f"the data directory {data_dir} is not empty: a snapshot restores only into an empty (or new) one"
        )
    if kind == "sqlite":
        if sqlite_path(url).exists():
            raise SnapshotError(f"the database file {sqlite_path(url)} exists: a snapshot restores only into a new one")
        return
    store = Store(url, upgrade=False)
    try:
        require_empty(store)
    finally:
        store.close()


def _copy_indexes(source: Path, data_dir: Path, manifest: Manifest) -> None:
    """The base file into data_dir/index, the keyword index into data_dir/keyword."""
    data_dir.mkdir(parents=True, exist_ok=True)
    for relative in (manifest.dense_file, manifest.keyword_dir):
        if relative is None:
            continue
        if Path(relative).is_absolute() or ".." in Path(relative).parts:
            raise SnapshotError(f"the snapshot's manifest names a file outside it: {relative!r}")
        origin, target = source / relative, data_dir / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        if origin.is_dir():
            shutil.copytree(origin, target)
        else:
            shutil.copyfile(origin, target)


def _undo(data_dir: Path, created: bool) -> None:
    """Remove what a failed restore wrote into the data directory (it was empty or absent before)."""
    if created:
        shutil.rmtree(data_dir, ignore_errors=True)
        return
    for path in data_dir.iterdir() if data_dir.is_dir() else ():
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
