"""`semsearch index` on a full disk: the database's (a real SQLITE_FULL, a real PostgreSQL SQLSTATE
53100) ends the command with one line naming it and a non-zero status, no traceback; the keyword
folder's (tantivy's own error) is no success, and `check` then says which index is behind the change
log until `check --repair`, once there is space again, catches it up."""

from __future__ import annotations

import gc
import json
import os
import subprocess
from pathlib import Path

import pytest
from cli_runner import run_cli
from full_disk import FullDisk

from search.keyword.segments import Segments


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


def test_a_full_keyword_folder_is_no_success_and_check_says_so_until_repaired(
    tmp_path: Path, env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run_cli(["index", str(_corpus(tmp_path / "a.jsonl", "a", 3))], env).returncode == 0

    def tantivy_full(*_args: object) -> None:  # what tantivy's commit raises when the folder is full
        raise ValueError("An IO error occurred: 'No space left on device (os error 28)'")

    with monkeypatch.context() as patch:
        patch.setattr(Segments, "commit", tantivy_full)
        full = run_cli(["index", str(_corpus(tmp_path / "b.jsonl", "b", 30))], env)
        assert full.returncode != 0
        # Logged once when it happened (a long run's catch-ups fail as it goes), and said at the end.
        logged, said = _told(full)
        error = (
            "the data directory's disk is full (no space left for the index files): ValueError: An IO error "
            "occurred: 'No space left on device (os error 28)'"
        )
        assert logged == f"ERROR the keyword index failed to catch up with SQL: {error}; retried at the next catch-up"
        assert said == f"semsearch index: the keyword index did not catch up with SQL: {error}"
        gc.collect()
        behind = run_cli(["check", "--json"], env)
    assert behind.returncode == 1, behind.stdout
    keyword = json.loads(behind.stdout)["keyword"]
    assert not keyword["ok"] and keyword["behind"] > 0 and keyword["applied"] < keyword["head"], keyword
    assert keyword["missing"] == 0  # nothing wrong in what it applied: behind, which repair catches up
    assert (
        f"semsearch check: the keyword index is {keyword['behind']} entries behind the change log (applied seq "
        f"{keyword['applied']}, head {keyword['head']}): `semsearch check --repair` catches it up"
    ) in behind.stderr

    repaired = run_cli(["check", "--repair", "--json"], env)
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    keyword = json.loads(repaired.stdout)["keyword"]
    assert keyword["ok"] and keyword["behind"] == 0 and keyword["indexed"] == keyword["chunks"]


def test_a_base_file_a_full_disk_kept_from_merging_is_behind_until_repaired(
    tmp_path: Path, env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """FAISS cannot write a new base file (its own error, naming another temporary file each time): the
    command says so, and `check` calls the generation behind the change log once a merge is overdue."""
    import faiss

    import indexer.write.publisher as publisher

    monkeypatch.setattr(publisher, "MERGE_MIN", 1)  # a merge at every publish
    assert run_cli(["index", str(_corpus(tmp_path / "a.jsonl", "a", 3))], env).returncode == 0
    calls = iter(range(1000))

    def faiss_full(_index: object, path: str) -> None:
        raise RuntimeError(f"write error in {path}.{next(calls)}: 0 != 4096 (No space left on device)")

    with monkeypatch.context() as patch:
        patch.setattr(faiss, "write_index", faiss_full)
        full = run_cli(["index", str(_corpus(tmp_path / "b.jsonl", "b", 5))], env)
        assert full.returncode != 0
        assert (
            "semsearch index: the dense index did not catch up with SQL: the data directory's disk is full (no "
            "space left for the index files): RuntimeError: write error in "
        ) in full.stderr
        gc.collect()
        behind = run_cli(["check", "--json"], env)
    dense = json.loads(behind.stdout)
    assert behind.returncode == 1 and not dense["ok"], dense
    assert (
        dense["missing_vectors"] == 0 and dense["unmerged"] >= dense["merge_at"] and dense["base_seq"] < dense["head"]
    )
    assert "semsearch check: the dense index is " in behind.stderr and "entries behind the change log" in behind.stderr

    repaired = run_cli(["check", "--repair", "--json"], env)
    dense = json.loads(repaired.stdout)
    assert repaired.returncode == 0 and dense["ok"] and dense["unmerged"] == 0, repaired.stdout + repaired.stderr
