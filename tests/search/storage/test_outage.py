"""Database errors told apart (search.storage.outage): the database unavailable, busy, or neither;
on real errors of both databases where they can be made, and on the driver's own error classes
where they cannot (a server starting up); a write whose COMMIT failed is said to be unknown; write
retries never retry an outage; each outage is logged once when it starts and once when it ends."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import psycopg
import psycopg.errors
import pytest
from postgres_server import free_port
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from search.storage import outage
from search.storage.db import make_engine
from search.storage.outage import CommitUnknownError, Failure, classify
from search.storage.records import DocumentIn
from search.storage.retry import WriteConflictError, retry_write
from search.storage.store import Store
from search.work.queue import enqueue


def _wrapped(orig: BaseException) -> OperationalError:
    """As SQLAlchemy hands a driver's error to the caller."""
    return OperationalError("SELECT 1", {}, orig)


def _kind(exc: BaseException) -> str | None:
    failure = classify(exc)
    return None if failure is None else failure.kind


@pytest.mark.parametrize(
    ("error", "kind", "reason"),
    [
        (
            psycopg.OperationalError("connection failed: connection to server failed: Connection refused"),
            "unavailable",
            "connection refused",
        ),
        (
            psycopg.OperationalError("connection failed: FATAL:  the database system is starting up"),
            "unavailable",
            "the server is starting up",
        ),
        (
            psycopg.errors.CannotConnectNow("the database system is shutting down"),
            "unavailable",
            "the server is shutting down",
        ),
        (
            psycopg.errors.CannotConnectNow("the database system is in recovery mode"),
            "unavailable",
            "the server is recovering",
        ),
        (
            psycopg.errors.AdminShutdown("terminating connection due to administrator command"),
            "unavailable",
            "the server ended the connection",
        ),
        (
            psycopg.errors.CrashShutdown("terminating connection because of crash of another server process"),
            "unavailable",
            "the server crashed",
        ),
        (
            psycopg.OperationalError("consuming input failed: server closed the connection unexpectedly"),
            "unavailable",
            "connection lost",
        ),
        (psycopg.OperationalError("connection timeout expired"), "unavailable", "timed out"),
        (psycopg.InterfaceError("the connection is closed"), "unavailable", "connection lost"),
        (psycopg.errors.TooManyConnections("sorry, too many clients already"), "unavailable", "too many connections"),
        (psycopg.errors.DeadlockDetected("deadlock detected"), "busy", "a deadlock with a concurrent transaction"),
        (
            psycopg.errors.SerializationFailure("could not serialize access"),
            "busy",
            "a serialization conflict with a concurrent transaction",
        ),
        (psycopg.errors.QueryCanceled("canceling statement due to statement timeout"), "busy", "a statement timeout"),
        (sqlite3.OperationalError("database is locked"), "busy", "the SQLite database is locked by another writer"),
        (sqlite3.OperationalError("unable to open database file"), "unavailable", "the SQLite file cannot be opened"),
        (sqlite3.OperationalError("disk I/O error"), "unavailable", "a disk I/O error"),
    ],
)
def test_driver_errors_are_classified_wrapped_or_not(error: Exception, kind: str, reason: str) -> None:
    assert classify(error) == Failure(kind, reason)  # type: ignore[arg-type]
    assert classify(_wrapped(error)) == Failure(kind, reason)  # type: ignore[arg-type]
    # Through a wrapper of ours too (the write retries, a commit's outcome), by its cause.
    try:
        raise RuntimeError("wrapped") from _wrapped(error)
    except RuntimeError as exc:
        assert classify(exc) == Failure(kind, reason)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "error",
    [
        psycopg.errors.UndefinedTable('relation "documents" does not exist'),
        psycopg.errors.UniqueViolation("duplicate key value violates unique constraint"),
        psycopg.errors.SyntaxError("syntax error at or near"),
        psycopg.errors.InternalError_("something internal"),
        sqlite3.OperationalError("no such table: documents"),
        sqlite3.IntegrityError("UNIQUE constraint failed: documents.external_id"),
        ValueError("not a database error"),
    ],
)
def test_faults_of_the_program_or_schema_are_neither(error: Exception) -> None:
    assert classify(error) is None
    assert classify(_wrapped(error)) is None


def test_a_refused_postgres_connection_is_unavailable_and_its_reason_names_no_host() -> None:
    port = free_port()  # nothing listens there
    engine = make_engine(f"postgresql+psycopg://secretuser:secretpass@127.0.0.1:{port}/db")
    with pytest.raises(OperationalError) as caught, engine.connect():
        pass
    assert str(port) in str(caught.value)  # the driver's text names the host and port ...
    failure = classify(caught.value)
    assert failure == Failure("unavailable", "connection refused")
    for secret in (str(port), "127.0.0.1", "secretuser", "secretpass"):  # ... the failure's words do not
        assert secret not in failure.describe() and secret not in outage.describe(caught.value)
    engine.dispose()


@pytest.mark.postgres
def test_a_terminated_postgres_session_is_unavailable(postgres_url: str) -> None:
    engine = make_engine(postgres_url)
    with engine.connect() as victim, engine.connect() as other:
        pid = victim.execute(text("SELECT pg_backend_pid()")).scalar_one()
        other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        with pytest.raises(OperationalError) as caught:
            victim.execute(text("SELECT 1"))
    assert classify(caught.value) == Failure("unavailable", "the server ended the connection")
    engine.dispose()


def test_real_sqlite_errors(tmp_path: Path) -> None:
    path = tmp_path / "locked.db"
    holder = sqlite3.connect(path, timeout=0)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("INSERT INTO t VALUES (1)")
    writer = sqlite3.connect(path, timeout=0)
    with pytest.raises(sqlite3.OperationalError) as locked:
        writer.execute("INSERT INTO t VALUES (2)")
    assert _kind(locked.value) == "busy"
    with pytest.raises(sqlite3.OperationalError) as missing:
        writer.execute("SELECT * FROM nowhere")
    assert classify(missing.value) is None
    holder.rollback()
    (tmp_path / "file").write_text("")
    with pytest.raises(sqlite3.OperationalError) as unopenable:
        sqlite3.connect(tmp_path / "file" / "x.db")
    assert _kind(unopenable.value) == "unavailable"


def test_an_outage_is_logged_once_when_it_starts_and_once_when_it_ends(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "not-yet"
    engine = make_engine(f"sqlite:///{folder / 'x.db'}")  # its folder is missing: it cannot be opened
    caplog.set_level(logging.INFO, logger=outage.__name__)
    for _ in range(5):
        with pytest.raises(OperationalError), engine.connect():
            pass
    assert outage.outage_of(engine).down
    folder.mkdir()
    with engine.connect() as c:  # a success within QUIET_SECONDS of the last failure ends nothing
        c.execute(text("SELECT 1"))
    assert outage.outage_of(engine).down
    monkeypatch.setattr(outage, "QUIET_SECONDS", 0.0)
    for _ in range(3):
        with engine.connect() as c:
            c.execute(text("SELECT 1"))
    assert not outage.outage_of(engine).down
    lines = [r.getMessage() for r in caplog.records if r.name == outage.__name__]
    assert len(lines) == 2, lines
    assert "the database is unavailable (the SQLite file cannot be opened)" in lines[0]
    assert "answers again" in lines[1]
    engine.dispose()


def test_write_retries_do_not_retry_an_outage() -> None:
    calls = []

    def down() -> None:
        calls.append(1)
        raise _wrapped(psycopg.OperationalError("connection failed: Connection refused"))

    with pytest.raises(OperationalError):
        retry_write(down)
    assert len(calls) == 1  # not 8 attempts, and not a "conflict"


def test_write_retries_name_a_lock_that_outlasts_them() -> None:
    def locked() -> None:
        raise _wrapped(sqlite3.OperationalError("database is locked"))

    with pytest.raises(WriteConflictError, match=r"database is busy \(the SQLite database is locked"):
        retry_write(locked)

    def racing() -> None:
        raise IntegrityError("INSERT", {}, sqlite3.IntegrityError("UNIQUE constraint failed"))

    with pytest.raises(WriteConflictError, match=r"8 times in a row \(it conflicted with concurrent writes"):
        retry_write(racing)


def _break_commit(store: Store, error: Exception, monkeypatch: pytest.MonkeyPatch) -> None:
    """The next COMMIT fails with `error`, as the driver raises it when the server goes away then."""

    def failing_commit(_connection: object) -> None:
        raise error

    monkeypatch.setattr(store.engine.dialect, "do_commit", failing_commit)


def test_a_write_whose_commit_failed_is_said_to_be_unknown(database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    store = Store(database_url)
    lost = (
        psycopg.OperationalError("consuming input failed: server closed the connection unexpectedly")
        if store.postgres
        else sqlite3.OperationalError("disk I/O error")
    )
    _break_commit(store, lost, monkeypatch)
    with pytest.raises(CommitUnknownError, match="may or may not have been kept") as caught:
        enqueue(store, [DocumentIn("d1", "a cat")])
    assert _kind(caught.value) == "unavailable"
    # A read's failed COMMIT is only the database unavailable: it wrote nothing to be unsure of.
    with pytest.raises(OperationalError) as read:
        store.counts()
    assert not isinstance(read.value, CommitUnknownError) and _kind(read.value) == "unavailable"
    # A statement that failed before the COMMIT is no unknown either: it rolled back whole.
    monkeypatch.undo()
    store.engine.dispose()
    with pytest.raises(DBAPIError), store.session(write=True) as s:
        s.execute(text("SELECT * FROM nowhere"))
    store.close()


@pytest.mark.postgres
def test_a_postgres_write_cut_off_before_its_commit_is_said_to_be_unknown(postgres_url: str) -> None:
    store, other = Store(postgres_url), make_engine(postgres_url)
    with pytest.raises(CommitUnknownError), store.session(write=True) as s:
        s.execute(text("CREATE TABLE scratch (x int)"))
        pid = s.execute(text("SELECT pg_backend_pid()")).scalar_one()
        with other.connect() as c:  # the server ends the session between its last statement and COMMIT
            c.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    assert store.counts()["documents"] == 0  # the pool replaced the dead connection
    store.close()
    other.dispose()
