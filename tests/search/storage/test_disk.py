"""A full disk told as what it is (search.storage.outage, search.storage.disk), on real errors where
they can be made (SQLite's SQLITE_FULL, a PostgreSQL server's SQLSTATE 53100, an OSError of a real
write) and on the errors the libraries raise otherwise (tantivy's, FAISS's, psycopg's classes): the
database's disk or the data directory's, never an outage, a conflict or an unknown commit."""

from __future__ import annotations

import errno
import sqlite3
from pathlib import Path

import psycopg
import psycopg.errors
import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from search.storage.db import make_engine
from search.storage.outage import DATA_DIR_FULL, CommitUnknownError, Failure, classify, error_text, logged_here
from search.storage.records import DocumentIn
from search.storage.retry import retry_write
from search.storage.store import Store
from search.work.queue import enqueue

SQLITE_FULL = Failure("disk_full", "the SQLite file cannot grow")
POSTGRES_FULL = Failure("disk_full", "the PostgreSQL server has no space left")


@pytest.mark.parametrize(
    ("error", "failure"),
    [
        (sqlite3.OperationalError("database or disk is full"), SQLITE_FULL),
        (psycopg.errors.DiskFull('could not extend file "base/1/2": No space left on device'), POSTGRES_FULL),
        (psycopg.errors.IoError('could not write to file "pg_wal/xlogtemp": No space left on device'), POSTGRES_FULL),
        (OSError(errno.ENOSPC, "No space left on device"), DATA_DIR_FULL),
        (OSError(errno.EDQUOT, "Disk quota exceeded"), DATA_DIR_FULL),
        (ValueError("An IO error occurred: 'No space left on device (os error 28)'"), DATA_DIR_FULL),  # tantivy
        (RuntimeError("write error in /x/gen-000001.faiss: 1 != 2 (No space left on device)"), DATA_DIR_FULL),
    ],
)
def test_a_full_disk_is_classified_wrapped_or_not(error: Exception, failure: Failure) -> None:
    assert classify(error) == failure
    assert classify(OperationalError("INSERT", {}, error)) == failure
    try:
        raise RuntimeError("wrapped") from error
    except RuntimeError as exc:
        assert classify(exc) == failure


def test_the_disk_is_named() -> None:
    assert psycopg.errors.DiskFull.sqlstate == "53100"
    assert SQLITE_FULL.describe() == "the database's disk is full (the SQLite file cannot grow)"
    assert POSTGRES_FULL.describe() == "the database's disk is full (the PostgreSQL server has no space left)"
    assert DATA_DIR_FULL.describe() == "the data directory's disk is full (no space left for the index files)"
    tantivy = ValueError("An IO error occurred: 'No space left on device (os error 28)'")
    assert error_text(tantivy) == (
        "the data directory's disk is full (no space left for the index files): "
        "ValueError: An IO error occurred: 'No space left on device (os error 28)'"
    )
    # The database's episodes are logged by its outage record; the data directory's by whoever meets them.
    assert logged_here(sqlite3.OperationalError("database or disk is full")) and not logged_here(tantivy)
    assert classify(OSError(errno.EACCES, "Permission denied")) is None


def test_a_real_sqlite_full_and_a_real_enospc(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "capped.db")
    db.execute("CREATE TABLE t (x)")
    (pages,) = db.execute("PRAGMA page_count").fetchone()
    db.execute(f"PRAGMA max_page_count={pages}")
    with pytest.raises(sqlite3.OperationalError) as full:
        db.execute("INSERT INTO t VALUES (?)", ["x" * 100_000])
    assert classify(full.value) == SQLITE_FULL
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full here")
    with pytest.raises(OSError) as enospc, open("/dev/full", "w") as fh:  # noqa: PTH123
        fh.write("x")
        fh.flush()
    assert enospc.value.errno == errno.ENOSPC and classify(enospc.value) == DATA_DIR_FULL


@pytest.mark.postgres
def test_a_real_postgres_disk_full(postgres_url: str) -> None:
    engine = make_engine(postgres_url)
    raise_it = "DO $$ BEGIN RAISE EXCEPTION 'No space left on device' USING ERRCODE = 'disk_full'; END $$"
    with pytest.raises(OperationalError) as full, engine.connect() as c:
        c.execute(text(raise_it))
    assert isinstance(full.value.orig, psycopg.errors.DiskFull) and full.value.orig.sqlstate == "53100"
    assert classify(full.value) == POSTGRES_FULL
    engine.dispose()


def test_a_full_disk_is_neither_retried_nor_an_unknown_commit(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    with store.engine.connect() as c:
        pages = c.exec_driver_sql("PRAGMA page_count").scalar()
    store.engine.dispose()

    def capped(dbapi_connection: sqlite3.Connection, _record: object) -> None:
        dbapi_connection.execute(f"PRAGMA max_page_count={pages}")

    from sqlalchemy import event

    event.listen(store.engine, "connect", capped)
    calls = []

    def write() -> object:
        calls.append(1)
        return enqueue(store, [DocumentIn("big", "cat " * 50_000)])

    with pytest.raises(OperationalError) as full:
        retry_write(write)
    assert len(calls) == 1 and not isinstance(full.value, CommitUnknownError)
    assert classify(full.value) == SQLITE_FULL
    store.close()
