"""Cross-process locks: who may publish the index file, and the one worker SQLite allows."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType


class LockHeldError(RuntimeError):
    """Another process holds a lock that this one needs."""


class FileLock:
    """An exclusive `flock` on a file. The kernel drops it when the process dies, even by SIGKILL,
    so a crash never leaves a stale lock behind."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self, blocking: bool = True) -> bool:
        """Take the lock; with `blocking=False`, return False at once when another process holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            return False
        # The holder's pid, for the message another process shows.
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd
        return True

    def holder(self) -> str:
        """The pid written by the process that holds (or last held) the lock."""
        try:
            return self.path.read_text().strip() or "?"
        except OSError:
            return "?"

    def release(self) -> None:
        """Let go of the lock (closing the descriptor drops the flock)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __del__(self) -> None:
        # A command holds its lock in a local (`_lock = ...`) for as long as it runs. When `main()` runs
        # in a process that goes on (tests, a script), the lock must go with the command, as it goes
        # with a process that exits; otherwise the descriptor leaks and the next command is refused.
        self.release()

    def __enter__(self) -> FileLock:
        self.acquire()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.release()


def single_writer_lock(index_dir: Path, what: str) -> FileLock:
    """On SQLite one process embeds at a time (`semsearch worker`, `serve` with its worker, `index`,
    `rebuild`); a second is refused with a message that says what to do instead."""
    lock = FileLock(index_dir / ".writer.lock")
    if not lock.acquire(blocking=False):
        raise LockHeldError(
            f"cannot start {what}: another semsearch process (pid {lock.holder()}) is already indexing "
            f"{index_dir.parent}. SQLite allows one indexing process at a time: queue documents with "
            "`semsearch add` (or the API) for the running worker, stop it first, or use PostgreSQL "
            "(SEMSEARCH_DATABASE_URL) to run several workers."
        )
    return lock
