"""What a database error means, told the same way at every door: the database is unavailable (it
cannot be reached or does not take connections now: an outage), busy (a lock or a conflict that
outlasted its retries), its disk is full, or neither (a fault of the program or the schema, left to
surface as one). A full disk of the data directory (the index files: an OSError, or a library's
message that says so) is told here too, as the data directory's.

The API answers the first two with 503 and Retry-After and a full disk with 507, the write retries
never retry an outage or a full disk, /health and the worker's error budget show a reason from a
fixed vocabulary (the driver's text names the host, port and user), and each outage and each time
the database's disk fills is logged once when it starts and once when it ends, whichever request or
thread met it.

SQLite: a locked or busy database is contention between writers of this host, not an outage: the
write retries take it as a conflict and, past them, it is answered as busy. A file that cannot be
opened or an I/O error is unavailable; SQLITE_FULL is a full disk (reads still work).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import Engine, event
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from search.storage.disk import FullDisk, count_write, disk_full

log = logging.getLogger(__name__)

Kind = Literal["unavailable", "busy", "disk_full"]
# Seconds a client should wait before retrying, per kind (the Retry-After the API sends with a 503;
# a full disk is a 507 without one: it stays full until someone frees space).
RETRY_AFTER: dict[Kind, int] = {"unavailable": 5, "busy": 1}
# An outage ends at the first success after this long without a failure: while a server shuts down,
# statements on connections it has not ended yet still succeed for a moment, which ends nothing.
QUIET_SECONDS = 1.0


@dataclass(frozen=True)
class Failure:
    """What went wrong, in words safe to show anyone: `reason` never holds the driver's text."""

    kind: Kind
    reason: str
    # False for a full disk met writing the data directory's files, not the database.
    database: bool = True

    def describe(self) -> str:
        """`the database is unavailable (connection refused)`, `the database's disk is full (...)`."""
        if self.kind == "disk_full":
            return f"the {'database' if self.database else 'data directory'}'s disk is full ({self.reason})"
        return f"the database is {self.kind} ({self.reason})"


class CommitUnknownError(RuntimeError):
    """The connection failed while a write's COMMIT was under way: it may or may not have been kept."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(
            f"{failure.describe()} while this write was being committed: it may or may not have been kept; "
            "read it back, or send it again (a document write replaces by id, so a repeat is safe)"
        )
        self.failure = failure


def classify(exc: BaseException) -> Failure | None:
    """The failure `exc` stands for (looking through SQLAlchemy's wrapper and the causes), or None
    when it is no outage and no contention."""
    for error in _chain(exc):
        failure = _classify_one(error)
        if failure is not None:
            return failure
    return None


def unavailable(exc: BaseException) -> bool:
    """True when `exc` is the database being unavailable (its outage is logged once, here)."""
    failure = classify(exc)
    return failure is not None and failure.kind == "unavailable"


def logged_here(exc: BaseException) -> bool:
    """True when `exc` is the database unavailable or its disk full: each such episode is logged
    once, here, so whoever meets it need not log it again."""
    failure = classify(exc)
    return failure is not None and failure.database and failure.kind in ("unavailable", "disk_full")


def describe(exc: BaseException) -> str:
    """`exc` in words safe to show anyone: a database failure's reason, else only its type."""
    failure = classify(exc)
    return type(exc).__name__ if failure is None else failure.describe()


def error_text(exc: BaseException) -> str:
    """`exc` as logs and a keyed /health show it: its type and message (500 characters at most),
    after what it means when that is a full disk, which a library's message may bury."""
    failure = classify(exc)
    text = f"{type(exc).__name__}: {exc}"
    return (text if failure is None or failure.kind != "disk_full" else f"{failure.describe()}: {text}")[:500]


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending and len(seen) < 8:
        error = pending.pop(0)
        if error is None or id(error) in seen:
            continue
        seen.add(id(error))
        yield error
        orig = error.orig if isinstance(error, DBAPIError) else None
        pending += [orig, error.__cause__, error.__context__]


def _classify_one(error: BaseException) -> Failure | None:
    if isinstance(error, CommitUnknownError):
        return error.failure
    if isinstance(error, PoolTimeoutError):
        return Failure("busy", "no free connection in the pool")
    if isinstance(error, DBAPIError):
        orig = None if error.orig is None else _classify_one(error.orig)
        # A disconnect the driver's error does not name (SQLAlchemy saw the connection die).
        return orig or (Failure("unavailable", "connection lost") if error.connection_invalidated else None)
    if isinstance(error, sqlite3.Error):
        return _sqlite(error)
    if type(error).__module__.startswith("psycopg"):
        return _postgres(error)
    if disk_full(error):  # not the database's: a file of the data directory
        return DATA_DIR_FULL
    return None


DATA_DIR_FULL = Failure("disk_full", "no space left for the index files", database=False)


# SQLite's primary result codes (the low byte of the extended one).
_SQLITE_CODES: dict[int, Failure] = {
    5: Failure("busy", "the SQLite database is locked by another writer"),
    6: Failure("busy", "a SQLite table is locked"),
    10: Failure("unavailable", "a disk I/O error"),
    13: Failure("disk_full", "the SQLite file cannot grow"),
    14: Failure("unavailable", "the SQLite file cannot be opened"),
}
# The same, by message, for an error raised without its code.
_SQLITE_MESSAGES = {
    "database is locked": 5,
    "database table is locked": 6,
    "disk i/o error": 10,
    "database or disk is full": 13,
    "unable to open database file": 14,
}


def _sqlite(error: sqlite3.Error) -> Failure | None:
    code: int | None = getattr(error, "sqlite_errorcode", None)
    if code is None:
        code = next((c for text, c in _SQLITE_MESSAGES.items() if text in str(error).lower()), None)
    return None if code is None else _SQLITE_CODES.get(code & 0xFF)


_PG_BUSY = {
    "40001": "a serialization conflict with a concurrent transaction",
    "40P01": "a deadlock with a concurrent transaction",
    "55P03": "a lock held by another transaction",
    "57014": "a statement timeout",
}
_PG_UNAVAILABLE = {
    "57P01": "the server ended the connection",
    "57P02": "the server crashed",
    "53300": "too many connections",
    "53200": "the server is out of memory",
}
# Connection-level failures say what they are only in their message; matched lower-cased, in order.
_CONNECTION_MESSAGES = [
    ("starting up", "the server is starting up"),
    ("not yet accepting connections", "the server is starting up"),
    ("shutting down", "the server is shutting down"),
    ("recovery", "the server is recovering"),
    ("too many", "too many connections"),
    ("authentication failed", "authentication failed"),
    ("refused", "connection refused"),
    ("timeout", "timed out"),
    ("timed out", "timed out"),
    ("translate host name", "the host name does not resolve"),
    ("name or service not known", "the host name does not resolve"),
]


_PG_DISK_FULL = Failure("disk_full", "the PostgreSQL server has no space left")


def _postgres(error: BaseException) -> Failure | None:
    state: str | None = getattr(error, "sqlstate", None)
    # disk_full, or a write error that says why (58030 io_error "could not extend file ...").
    if state == "53100" or disk_full(error):
        return _PG_DISK_FULL
    if state in _PG_BUSY:
        return Failure("busy", _PG_BUSY[state])
    if state in _PG_UNAVAILABLE:
        return Failure("unavailable", _PG_UNAVAILABLE[state])
    kinds = {cls.__name__ for cls in type(error).__mro__}
    connection_level = state is None or state[:2] in ("08", "28", "53", "57", "58")
    if not connection_level or not kinds & {"OperationalError", "InterfaceError"}:
        return None
    message = str(error).lower()
    reason = next((reason for text, reason in _CONNECTION_MESSAGES if text in message), None)
    if reason is None:
        reason = "connection failed" if message.startswith("connection failed") else "connection lost"
    return Failure("unavailable", reason)


class Outage:
    """One database's outage, shared by every engine on it in this process: logged when the first
    failure shows it, and when a statement succeeds again after QUIET_SECONDS without failures.
    Beside it, the database's disk being full: logged when the first write fails on it, and when a
    write is stored again (reads go on succeeding meanwhile, so they end nothing)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._lock = threading.Lock()
        self._since: float | None = None
        self._last_failure = 0.0
        self.disk = FullDisk(name)

    @property
    def down(self) -> bool:
        """True from an outage's first failure until a success ends it."""
        return self._since is not None

    def failed(self, failure: Failure) -> None:
        """A connection-level failure, or a full disk, was met."""
        if failure.kind == "disk_full":
            self.disk.filled(failure.describe())
            return
        with self._lock:
            self._last_failure = time.monotonic()
            if self._since is None:
                self._since = self._last_failure
                log.error("%s: %s; requests get 503 until it answers again", self.name, failure.describe())

    def answered(self) -> None:
        """A statement succeeded."""
        if self._since is None:  # the common case, without the lock
            return
        with self._lock:
            now = time.monotonic()
            if self._since is None or now - self._last_failure < QUIET_SECONDS:
                return
            log.warning("%s: the database answers again, after %.1f s unavailable", self.name, now - self._since)
            self._since = None


_outages: dict[str, Outage] = {}
_outages_lock = threading.Lock()


def outage_of(engine: Engine) -> Outage:
    """The outage record of `engine`'s database (one per URL in this process)."""
    name = engine.url.render_as_string(hide_password=True)
    with _outages_lock:
        return _outages.setdefault(name, Outage(name))


def watch(engine: Engine) -> None:
    """Record `engine`'s outages: every error it meets is classified (a failed pre-ping is not: the
    pool replaces the connection, and a failing replacement is met as its own error)."""
    outage = outage_of(engine)

    def on_error(context: ExceptionContext) -> None:
        if context.is_pre_ping:
            return
        failure = classify(context.original_exception)
        if failure is None and context.is_disconnect:
            failure = Failure("unavailable", "connection lost")
        if failure is not None and failure.database and failure.kind in ("unavailable", "disk_full"):
            outage.failed(failure)

    def on_success(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        outage.answered()
        count_write(statement)

    event.listen(engine, "handle_error", on_error)
    event.listen(engine, "after_cursor_execute", on_success)
