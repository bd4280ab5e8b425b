"""The limits `semsearch serve` keeps on its connections (applied in connections.py and listener.py):
a deadline for each request head, and a cap on open connections below the process's file limit."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import time
from dataclasses import dataclass

logger = logging.getLogger("uvicorn.error")

# Descriptors left to everything but client connections: a quarter of the file limit, at least this many.
# They hold the database and its pool, index and log files, the model, the listening socket (a server over
# a 2,000-document SciFact index holds under 30 with 8 clients searching and the worker writing), and the
# connections over the cap for a moment: accepted and not yet let in (up to ACCEPT_BURST), closed to make
# room and not yet gone (as many), refused and lingering (up to MAX_LINGERING).
MIN_RESERVED_FILES = 128
# Most connections accepted and not yet seen by a protocol (which closes one if the cap is reached): asyncio
# accepts up to its backlog (2,048) in one go, before any protocol sees one.
ACCEPT_BURST = 8
# A process without a file limit still gets a finite one (Linux's default most open files, fs.nr_open).
UNLIMITED_FILES = 1 << 20
# The default cap at most, whatever the file limit: an idle connection holds about 6 KiB of the server's
# memory (5,000 half-open ones measured), so this many about 400 MiB.
MAX_DEFAULT_CONNECTIONS = 65_536
# Repeated events (a timed-out head, a refused connection) are logged at most once per this many seconds.
NOTICE_SECONDS = 60.0


@dataclass(frozen=True)
class ConnectionLimits:
    """How long a client may take to send a request head, and how many connections one process holds."""

    header_timeout: float
    max_connections: int


def file_limit() -> int:
    """The process's soft limit on open files (RLIMIT_NOFILE), `UNLIMITED_FILES` where there is none."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return UNLIMITED_FILES if soft == resource.RLIM_INFINITY or soft > UNLIMITED_FILES else soft


def raise_file_limit() -> int:
    """Raise the process's soft limit on open files to its hard limit, as Go's runtime does at start: the
    soft limit (often 1,024) dates from select(), which caps descriptors at 1,024 and which nothing here
    uses (asyncio waits with epoll, psycopg with poll). Returns the limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = UNLIMITED_FILES if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < wanted:
        with contextlib.suppress(ValueError, OSError):  # above what the system allows (fs.nr_open): keep it
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    return file_limit()


def default_max_connections(files: int) -> int:
    """The connections a process with a limit of `files` open files may hold: the limit less a reserve of
    a quarter of it, at least `MIN_RESERVED_FILES` (and at least one connection; at most
    `MAX_DEFAULT_CONNECTIONS`)."""
    return min(max(files - max(MIN_RESERVED_FILES, files // 4), 1), MAX_DEFAULT_CONNECTIONS)


def connection_limits(header_timeout: float, max_connections: int | None) -> ConnectionLimits:
    """The limits in force: `max_connections` when set (a warning when it leaves the rest of the process
    no reserve), else what the file limit allows."""
    files = file_limit()
    if max_connections is None:
        max_connections = default_max_connections(files)
    elif max_connections > files - MIN_RESERVED_FILES:
        logger.warning(
            "SEMSEARCH_MAX_CONNECTIONS=%d leaves under %d of the %d open files this process may hold to the "
            "database and index files: raise the file limit (ulimit -n) or lower the setting",
            max_connections,
            MIN_RESERVED_FILES,
            files,
        )
    return ConnectionLimits(header_timeout=header_timeout, max_connections=max_connections)


class Notice:
    """One kind of repeated event, logged at once and then at most once per `NOTICE_SECONDS` with how many
    happened meanwhile: a line a minute, not a line per connection, however many an attacker opens."""

    def __init__(self, message: str) -> None:
        self.message = message
        self.count = 0
        self.args: tuple[object, ...] = ()
        self.logged_at = -NOTICE_SECONDS
        self.flush: asyncio.TimerHandle | None = None

    def add(self, *args: object) -> None:
        """Count one event (in the event loop); log now if the last line is older than `NOTICE_SECONDS`,
        else when it will be."""
        self.count, self.args = self.count + 1, args
        wait = self.logged_at + NOTICE_SECONDS - time.monotonic()
        if wait <= 0:
            self._log()
        elif self.flush is None:
            self.flush = asyncio.get_running_loop().call_later(wait, self._log)

    def _log(self) -> None:
        self.flush = None
        if self.count:
            logger.warning(self.message, self.count, *self.args)
            self.count, self.logged_at = 0, time.monotonic()


class AcceptGate:
    """The process's connections accepted by the listener (listener.py) and not yet claimed by a protocol:
    while `ACCEPT_BURST` wait, the listener accepts no more, so that the cap is applied before the files
    run out. Counts that see no claim for a second (connections lost before their protocol was made) are
    let go."""

    def __init__(self) -> None:
        self.unclaimed = 0
        self.progress_at = time.monotonic()  # the last claim, or the first accept since none was unclaimed

    def open(self) -> bool:
        """Whether the listener may accept another connection now."""
        if self.unclaimed >= ACCEPT_BURST and time.monotonic() - self.progress_at > 1.0:
            self.unclaimed = 0
        return self.unclaimed < ACCEPT_BURST

    def accepted(self) -> None:
        if self.unclaimed == 0:
            self.progress_at = time.monotonic()
        self.unclaimed += 1

    def claim(self) -> None:
        self.unclaimed = max(self.unclaimed - 1, 0)
        self.progress_at = time.monotonic()


ACCEPTS = AcceptGate()
