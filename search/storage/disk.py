"""Whether an error is a full disk, whatever raised it: Python's own file writes (an OSError with
ENOSPC or EDQUOT), or a library that hands the system's words on in its message (tantivy's
"No space left on device (os error 28)", FAISS's "write error in ... (No space left on device)")."""

from __future__ import annotations

import errno
import logging
import threading
import time

log = logging.getLogger(__name__)

_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
# Lower-cased; the strerror texts of ENOSPC and EDQUOT, and Rust's way of giving their numbers.
_MESSAGES = (
    "no space left on device",
    "disk quota exceeded",
    f"os error {errno.ENOSPC})",
    f"os error {errno.EDQUOT})",
)


def disk_full(error: BaseException) -> bool:
    """True when `error` itself says a disk (or the quota on it) is full."""
    if isinstance(error, OSError) and error.errno in _ERRNOS:
        return True
    message = str(error).lower()
    return any(text in message for text in _MESSAGES)


class FullDisk:
    """The database's disk being full, as one process met it (search.storage.outage's record of a
    database holds one): logged when the first write fails on it, and when a write is stored again.
    Reads go on succeeding meanwhile, so they end nothing."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._lock = threading.Lock()
        self._full: str | None = None
        self._since = 0.0

    @property
    def state(self) -> tuple[str, float] | None:
        """While it is full: what is full (in words safe to show anyone), and the seconds since a
        write first met it."""
        full, since = self._full, self._since
        return None if full is None else (full, time.monotonic() - since)

    def filled(self, described: str) -> None:
        """A write failed on the full disk (`described`: `the database's disk is full (...)`)."""
        with self._lock:
            if self._full is None:
                self._full, self._since = described, time.monotonic()
                log.error("%s: %s; writes get 507 until space is freed on it", self.name, described)

    def stored(self) -> None:
        """A transaction that wrote was committed: the disk has room again."""
        if self._full is None:  # the common case, without the lock
            return
        with self._lock:
            if self._full is not None:
                seconds = time.monotonic() - self._since
                log.warning("%s: writes are stored again, after %.1f s with the disk full", self.name, seconds)
                self._full = None


# Write statements run by each thread (see `writes_in_thread`).
_writes = threading.local()
_WRITE_STATEMENTS = ("insert", "update", "delete")


def count_write(statement: str) -> None:
    """Count `statement` (one that succeeded) when it writes."""
    if statement.lstrip()[:6].lower() in _WRITE_STATEMENTS:
        _writes.count = writes_in_thread() + 1


def writes_in_thread() -> int:
    """How many write statements this thread has run: a transaction that ran any and committed
    stored something, which ends a full disk (search/storage/store.py tells it)."""
    return int(getattr(_writes, "count", 0))
