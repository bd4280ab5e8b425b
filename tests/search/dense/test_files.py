"""The index directory's files: a writer's temporary file is never a stray while it is being written,
and is one once its writer is gone."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

import pytest

from search.dense.files import base_file_name, remove_strays, stray_files, write_atomically


def test_a_temporary_file_is_a_stray_only_once_nobody_holds_it(tmp_path: Path) -> None:
    seen: list[list[Path]] = []

    def write(tmp: str) -> None:
        Path(tmp).write_bytes(b"x" * 1000)
        seen.append(stray_files(tmp_path, {1: 5}))  # the writer holds it: not a stray

    write_atomically(tmp_path / base_file_name(1, 5), write)
    assert seen == [[]] and [p.name for p in tmp_path.iterdir()] == [base_file_name(1, 5)]

    left = tmp_path / f".{base_file_name(1, 9)}.abc123"  # what a killed writer leaves
    left.write_bytes(b"partial")
    assert stray_files(tmp_path, {1: 5}) == [left]
    fd = os.open(left, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)  # another writer holds it
    try:
        assert stray_files(tmp_path, {1: 5}) == []
    finally:
        os.close(fd)
    assert remove_strays(tmp_path, {1: 5}) == [left] and not left.exists()


def test_base_files_no_generation_reads_are_strays(tmp_path: Path) -> None:
    names = [base_file_name(1, 5), base_file_name(1, 3), base_file_name(2, 7), base_file_name(3, 1), ".publish.lock"]
    for name in names:
        (tmp_path / name).write_bytes(b"")
    # Generation 1 serves its file of change 5; generation 2 is being rebuilt (any file of it may be
    # in flight); generation 3 has no row any more.
    assert {p.name for p in stray_files(tmp_path, {1: 5, 2: None})} == {base_file_name(1, 3), base_file_name(3, 1)}


def test_a_failed_write_leaves_nothing(tmp_path: Path) -> None:
    def fail(tmp: str) -> None:
        Path(tmp).write_bytes(b"half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        write_atomically(tmp_path / base_file_name(1, 1), fail)
    assert list(tmp_path.iterdir()) == []
