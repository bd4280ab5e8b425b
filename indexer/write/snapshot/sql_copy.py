"""The SQL store's part of a snapshot: a copy as of one commit, and its restore.

SQLite: the online backup API from a connection to the live file (one step, so one read transaction:
the file as of one commit, while writers go on in WAL mode). PostgreSQL: `pg_dump` in its custom
format, run on a snapshot exported from a REPEATABLE READ transaction, so that the dump and the facts
the manifest records (change-log seq, generation) are one and the same state; `pg_restore` restores
it. pg_dump is found on PATH, else in Debian's /usr/lib/postgresql/<version>/bin."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import URL, inspect
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from indexer.write.snapshot.manifest import SnapshotError
from search.collections.placement import SCHEMA_PREFIX
from search.storage.db import own_schema
from search.storage.store import Store

SQLITE_FILE = "database/semsearch.db"
POSTGRES_FILE = "database/semsearch.dump"
_DEBIAN_BIN = Path("/usr/lib/postgresql")


def sqlite_path(url: str) -> Path:
    """The database file a sqlite:/// URL names."""
    database = make_url(url).database
    if not database or database == ":memory:":
        raise SnapshotError(f"{url} names no database file")
    return Path(database)


def sqlite_backup(url: str, out: Path) -> None:
    """Copy the live SQLite database at `url` to `out` with the online backup API."""
    out.parent.mkdir(parents=True, exist_ok=True)
    source = sqlite3.connect(sqlite_path(url), timeout=30)
    try:
        target = sqlite3.connect(out)
        try:
            source.backup(target)  # every page in one step: one read transaction, one commit's state
            target.execute("PRAGMA journal_mode=DELETE")  # one self-contained file, no -wal beside it
        finally:
            target.close()
    finally:
        source.close()


@contextmanager
def exported_snapshot(store: Store) -> Iterator[tuple[Session, str]]:
    """A REPEATABLE READ transaction on PostgreSQL and the name of its exported snapshot, which
    `pg_dump --snapshot` reads while the transaction stays open."""
    with store.engine.connect() as connection:
        connection = connection.execution_options(isolation_level="REPEATABLE READ")
        with connection.begin():
            name = str(connection.exec_driver_sql("SELECT pg_export_snapshot()").scalar())
            with Session(bind=connection) as session:
                yield session, name


def find_tool(name: str) -> str:
    """pg_dump or pg_restore: on PATH, else the newest in Debian's /usr/lib/postgresql/*/bin."""
    found = shutil.which(name)
    if found:
        return found
    versions = sorted(_DEBIAN_BIN.glob(f"*/bin/{name}"), key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0)
    if versions:
        return str(versions[-1])
    raise SnapshotError(
        f"{name} was not found (on PATH or in {_DEBIAN_BIN}/*/bin): snapshots of PostgreSQL need the PostgreSQL "
        "client programs (Debian: apt-get install postgresql-client-15)"
    )


def _libpq(url: str) -> tuple[str, dict[str, str]]:
    """`url` as a libpq connection URL (no password in it) and the environment carrying the password."""
    parsed: URL = make_url(url)
    env = dict(os.environ)
    if parsed.password is not None:
        env["PGPASSWORD"] = str(parsed.password)
    plain = parsed.set(drivername="postgresql", password=None)
    return plain.render_as_string(hide_password=False), env


def pg_dump(url: str, snapshot: str, out: Path) -> None:
    """Dump the database at `url` as of the exported `snapshot` into `out` (custom format): the
    deployment's own tables, or the schema of a collection's URL (search/collections/placement.py).
    Each collection is a snapshot of its own, so the deployment's dump leaves their schemas out."""
    out.parent.mkdir(parents=True, exist_ok=True)
    dbname, env = _libpq(url)
    command = [find_tool("pg_dump"), "--format=custom", "--no-owner", "--no-privileges"]
    schema = own_schema(url)
    scope = f"--schema={schema}" if schema is not None else f"--exclude-schema={SCHEMA_PREFIX}*"
    _run([*command, scope, f"--snapshot={snapshot}", f"--file={out}", f"--dbname={dbname}"], env, "pg_dump")


def pg_restore(url: str, dump: Path) -> None:
    """Restore `dump` into the (empty) database at `url`, all or nothing."""
    dbname, env = _libpq(url)
    command = [find_tool("pg_restore"), "--no-owner", "--no-privileges", "--exit-on-error", "--single-transaction"]
    _run([*command, f"--dbname={dbname}", str(dump)], env, "pg_restore")


def _run(command: list[str], env: dict[str, str], what: str) -> None:
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SnapshotError(f"{what} failed (exit status {done.returncode}): {done.stderr.strip()[-2000:]}")


def require_empty(store: Store) -> None:
    """Refuse a target database (or a collection's schema) that already holds tables."""
    schema = own_schema(store.url)
    inspector = inspect(store.engine)
    if schema is not None and schema not in inspector.get_schema_names():
        return
    tables = inspector.get_table_names(schema=schema)
    if tables:
        where = make_url(store.url).render_as_string(hide_password=True)
        raise SnapshotError(
            f"the database {where} is not empty (it holds {len(tables)} tables, e.g. {sorted(tables)[0]}): "
            "a snapshot restores only into an empty database"
        )
