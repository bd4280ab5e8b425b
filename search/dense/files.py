"""The index directory's base segment files: their names, their atomic writes, and the strays a
killed process leaves behind.

A base file is written under a temporary name (`.gen-….faiss.XXXXXXXX`) and renamed into place, so a
reader sees the old file or the new one, never half. The writer holds an exclusive `flock` on the
temporary file until the rename: a sweep in any process removes only temporary files nobody holds,
that is the partial files of a writer that was killed (which otherwise stayed forever, 4-10 MiB each)."""

from __future__ import annotations

import fcntl
import os
import re
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

_BASE = re.compile(r"gen-(\d{6})(?:-(\d{12}))?\.faiss")
_TEMPORARY = re.compile(r"\.gen-\d{6}(?:-\d{12})?\.faiss\..+")


def base_file_name(generation_id: int, seq: int) -> str:
    """The file of a generation's base segment holding the change log up to `seq`."""
    return f"gen-{generation_id:06d}-{seq:012d}.faiss"


def write_atomically(path: Path, write: Callable[[str], None]) -> None:
    """Have `write` fill a locked temporary file beside `path`, flush it to disk and rename it to `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        # Before anything is written: a sweep that finds the file unlocked may take it only while empty,
        # and `write` (which opens it by name) then simply creates it again.
        fcntl.flock(fd, fcntl.LOCK_EX)
        write(tmp)
        with Path(tmp).open("rb") as fh:
            os.fsync(fh.fileno())
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    finally:
        os.close(fd)  # releases the lock, after the rename


def stray_files(index_dir: Path, live: Mapping[int, int | None]) -> list[Path]:
    """Files of the index directory that nothing will read: temporary files no writer holds, and
    base files that are neither a live generation's current one nor a building generation's (`live`
    maps each generation id to its base seq, None while a rebuild writes it)."""
    if not index_dir.is_dir():
        return []
    strays: list[Path] = []
    for path in sorted(index_dir.iterdir()):
        if _TEMPORARY.fullmatch(path.name):
            if not _held(path):
                strays.append(path)
            continue
        match = _BASE.fullmatch(path.name)
        if match is None:
            continue  # not ours (locks, the keyword index)
        generation, seq = int(match[1]), int(match[2] or 0)
        if generation not in live or (live[generation] is not None and seq != live[generation]):
            strays.append(path)
    return strays


def remove_strays(index_dir: Path, live: Mapping[int, int | None]) -> list[Path]:
    """Delete the stray files (see `stray_files`); returns those deleted. A reader that maps a file
    keeps it alive (POSIX)."""
    strays = stray_files(index_dir, live)
    for path in strays:
        path.unlink(missing_ok=True)
    return strays


def _held(path: Path) -> bool:
    """Whether a writer holds the temporary file's lock now."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return True  # renamed or removed meanwhile: not a stray
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # also releases a lock just taken
    return False
