"""`semsearch index` on a full disk: the database's (a real SQLITE_FULL, a real PostgreSQL SQLSTATE
53100) ends the command with one line naming it and a non-zero status, no traceback."""

from __future__ import annotations

import gc
import json
import os
import subprocess
from pathlib import Path

import pytest
from cli_runner import run_cli
from full_disk import FullDisk


@pytest.fixture
def env(tmp_path: Path, tiny_model_dir: Path, database_url: str) -> dict[str, str]:
    return {
        **os.environ,
        "SEMSEARCH_DATA_DIR": str(tmp_path / "data"),
        "SEMSEARCH_DATABASE_URL": database_url,
        "SEMSEARCH_MODEL": str(tiny_model_dir),
        "SEMSEARCH_DTYPE": "float32",
    }


def _corpus(path: Path, prefix: str, n: int, words: int = 20) -> Path:
    path.write_text(
        "".join(
            json.dumps({"id": f"{prefix}{i}", "text": " ".join(f"w{i}x{j} cat" for j in range(words))}) + "\n"
            for i in range(n)
        )
    )
    return path


def _told(result: subprocess.CompletedProcess[str]) -> list[str]:
    """What the command said on stderr besides its progress lines."""
    assert "Traceback" not in result.stderr, result.stderr
    return [line for line in result.stderr.splitlines() if not line.startswith("progress:")]


def test_index_on_a_full_database_disk_ends_in_one_line(
    tmp_path: Path, env: dict[str, str], database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    disk = FullDisk(database_url, monkeypatch)
    assert run_cli(["index", str(_corpus(tmp_path / "a.jsonl", "a", 3))], env).returncode == 0
    disk.fill()
    full = run_cli(["index", str(_corpus(tmp_path / "b.jsonl", "b", 40, words=400))], env)
    which = "the SQLite file cannot grow" if disk.sqlite else "the PostgreSQL server has no space left"
    assert full.returncode != 0
    assert _told(full) == [
        f"semsearch index: the database's disk is full ({which}); free space on it and run the command again "
        "(what was stored before it filled is kept)"
    ]
    disk.free()
    # The failed command's writer lock goes when its frames do (with the process, outside a test).
    gc.collect()
    again = run_cli(["index", str(tmp_path / "b.jsonl")], env)
    assert again.returncode == 0, again.stderr
    assert run_cli(["check"], env).returncode == 0
