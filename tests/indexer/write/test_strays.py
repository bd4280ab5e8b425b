"""SIGKILL while a merge writes its base file: the partial file is reported by `check` and removed
by the next process that publishes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from cli_runner import run_cli

# A merge whose FAISS write stops half-way, as if killed: it writes 4 MB, says so, and waits.
_SLOW_MERGE = """
import sys, time
from search.dense import index
def stalled(_index, path):
    with open(path, "wb") as fh:
        fh.write(b"\\0" * 4_000_000)
    print("writing", flush=True)
    time.sleep(120)
index.faiss.write_index = stalled
from indexer.cli.main import main
sys.exit(main(["check", "--repair"]))
"""


def test_a_merge_killed_mid_write_leaves_a_file_that_check_reports_and_the_next_merge_removes(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    env = {
        **os.environ,
        "SEMSEARCH_DATA_DIR": str(tmp_path / "data"),
        "SEMSEARCH_MODEL": str(tiny_model_dir),
        "SEMSEARCH_DTYPE": "float32",
    }
    corpus = tmp_path / "docs.jsonl"
    corpus.write_text("".join(json.dumps({"id": f"d{i}", "text": f"text number {i}"}) + "\n" for i in range(20)))
    assert run_cli(["index", str(corpus)], env).returncode == 0
    index_dir = tmp_path / "data" / "index"
    before = {p.name for p in index_dir.iterdir()}

    merge = subprocess.Popen([sys.executable, "-c", _SLOW_MERGE], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert merge.stdout is not None and merge.stdout.readline().strip() == "writing"
    finally:
        merge.send_signal(signal.SIGKILL)
        merge.wait(30)
    (partial,) = [p for p in index_dir.iterdir() if p.name not in before]
    assert partial.name.startswith(".gen-") and partial.stat().st_size == 4_000_000

    checked = run_cli(["check", "--json"], env)
    assert checked.returncode == 1 and json.loads(checked.stdout)["stray_files"] == 1
    assert partial.name in checked.stderr
    repaired = run_cli(["check", "--repair", "--json"], env)
    assert repaired.returncode == 0 and json.loads(repaired.stdout)["stray_files"] == 0, repaired.stdout
    assert not partial.exists()
    assert run_cli(["check"], env).returncode == 0
