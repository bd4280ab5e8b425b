"""The `semsearch` command line: real files, real exit codes, stdout and stderr. Commands run in this process
through `main(argv)` (cli_runner); `serve` runs as a real process, since the process is the point there."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cli_runner import run_cli

from indexer.cli.evaluate import score_run


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return run_cli(args, env)


@pytest.fixture
def env(tmp_path: Path, tiny_model_dir: Path) -> dict[str, str]:
    return {
        **os.environ,
        "SEMSEARCH_DATA_DIR": str(tmp_path / "data"),
        "SEMSEARCH_MODEL": str(tiny_model_dir),
        "SEMSEARCH_DTYPE": "float32",
    }


def test_index_reports_bad_lines_and_indexes_the_rest(tmp_path: Path, env: dict[str, str]) -> None:
    corpus = tmp_path / "docs.jsonl"
    corpus.write_text(
        "\n".join(
            [
                json.dumps({"id": "cats", "title": "Cats", "text": "the cat sat on the mat"}),
                "{broken",
                json.dumps({"id": "space", "title": "Space", "text": "the sun and the moon and a star"}),
            ]
        )
    )
    first = _run(["index", str(corpus), "--json"], env)
    assert first.returncode == 1, first.stderr
    assert f"{corpus}:2: malformed JSON" in first.stderr
    summary = json.loads(first.stdout)
    assert (summary["added"], summary["rejected"], summary["chunks"]) == (2, 1, 2)

    found = _run(["search", "the cat sat on the mat", "-k", "2", "--json"], env)
    assert found.returncode == 0, found.stderr
    hits = json.loads(found.stdout)
    assert hits[0]["id"] == "cats" and len(hits) == 2
    assert set(hits[0]) >= {"id", "chunk_id", "score", "title", "text", "metadata", "start", "end"}

    corpus.write_text(json.dumps({"id": "cats", "title": "Cats", "text": "the cat sat on the mat"}) + "\n")
    again = _run(["index", str(corpus)], env)
    assert again.returncode == 0 and "1 unchanged" in again.stdout and "0 rejected" in again.stdout


def test_index_delete_missing_follows_a_folder(tmp_path: Path, env: dict[str, str]) -> None:
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "cats.txt").write_text("the cat sat on the mat")
    (folder / "space.md").write_text("the sun and the moon and a star")
    assert _run(["index", str(folder)], env).returncode == 0
    (folder / "space.md").unlink()
    (folder / "broken.jsonl").write_text("{broken\n")
    refused = _run(["index", str(folder), "--delete-missing", "--json"], env)
    assert refused.returncode == 1 and json.loads(refused.stdout)["deleted"] == 0
    assert "not deleting documents missing from the input" in refused.stderr
    (folder / "broken.jsonl").unlink()
    mirrored = _run(["index", str(folder), "--delete-missing"], env)
    assert mirrored.returncode == 0 and "1 deleted" in mirrored.stdout, mirrored.stdout
    hits = json.loads(_run(["search", "the sun and the moon", "--json"], env).stdout)
    assert [h["id"] for h in hits] == ["cats.txt"]


def test_bad_settings_and_arguments_exit_with_a_message(tmp_path: Path, env: dict[str, str]) -> None:
    bad = _run(["search", "x", "--pooling", "cls", "-k", "0"], env)
    assert bad.returncode == 2 and "-k must be between 1 and 1000" in bad.stderr
    bad_env = {**env, "SEMSEARCH_CHUNK_SIZE": "not-a-number"}
    result = _run(["search", "x"], bad_env)
    assert result.returncode == 2 and "chunk_size" in result.stderr
    empty = _run(["search", "anything"], env)
    assert empty.returncode == 0 and "no results" in empty.stdout


def test_eval_on_a_tiny_beir_directory(tmp_path: Path, env: dict[str, str]) -> None:
    beir = tmp_path / "beir"
    (beir / "qrels").mkdir(parents=True)
    texts = ["the cat sat on the mat", "a dog ran in the park", "gene protein cell", "virus vaccine dose"]
    (beir / "corpus.jsonl").write_text(
        "".join(json.dumps({"_id": f"d{i}", "text": t}) + "\n" for i, t in enumerate(texts))
    )
    (beir / "queries.jsonl").write_text(
        "".join(json.dumps({"_id": f"q{i}", "text": t}) + "\n" for i, t in enumerate(texts))
    )
    # Each query is its own document's text, so the document ranks first: nDCG@10 is exactly 1.
    (beir / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"q{i}\td{i}\t1\n" for i in range(4))
    )
    result = _run(["eval", str(beir), "--json", "--no-chunking"], env)
    assert result.returncode == 0, result.stderr
    metrics = json.loads(result.stdout)
    assert metrics["ndcg@10"] == 1.0 and metrics["recall@100"] == 1.0
    assert (metrics["queries"], metrics["documents"]) == (4, 4)


def test_scoring_matches_a_hand_computation() -> None:
    qrels = {"q1": {"d1": 1, "d2": 2}, "q2": {"d9": 1}}
    run = {"q1": {"d3": 0.9, "d2": 0.8, "d1": 0.7}, "q2": {"d1": 0.5, "q2": 0.99}}
    dcg = 2 / math.log2(3) + 1 / math.log2(4)
    ideal = 2 / math.log2(2) + 1 / math.log2(3)
    metrics = score_run(qrels, run)
    assert metrics["ndcg@10"] == pytest.approx((dcg / ideal + 0.0) / 2, abs=1e-6)
    assert metrics["recall@100"] == pytest.approx(0.5)


def test_delete_and_check_with_repair(tmp_path: Path, env: dict[str, str]) -> None:
    corpus = tmp_path / "docs.jsonl"
    texts = {"a": "the cat sat on the mat", "b": "a dog ran in the park", "c": "gene protein cell"}
    corpus.write_text("".join(json.dumps({"id": k, "text": v}) + "\n" for k, v in texts.items()))
    assert _run(["index", str(corpus)], env).returncode == 0

    deleted = _run(["delete", "b", "zzz", "--json"], env)
    assert deleted.returncode == 1 and json.loads(deleted.stdout) == {"deleted": 1, "chunks": 1, "not_found": ["zzz"]}
    hits = json.loads(_run(["search", "a dog ran in the park", "--json"], env).stdout)
    assert {h["id"] for h in hits} == {"a", "c"}

    healthy = _run(["check", "--json"], env)
    assert healthy.returncode == 0
    report = json.loads(healthy.stdout)
    keyword = report.pop("keyword")  # hybrid: the keyword index is checked too
    assert (keyword["ok"], keyword["chunks"], keyword["indexed"], keyword["behind"]) == (True, 2, 2, 0)
    assert report == {
        "documents": 2,
        "chunks": 2,
        "vectors": 2,
        "orphan_vectors": 0,
        "missing_vectors": 0,
        "base_file": "none",
        "stray_files": 0,
        "base_seq": 0,
        "head": report["head"],
        "unmerged": report["unmerged"],
        "merge_at": 20_000,
        "ok": True,
    }
    # --repair writes the base file from the vectors in SQL; truncate it (a disk full, a crash of a copy):
    # check reports it without a traceback, and --repair mends it.
    assert json.loads(_run(["check", "--repair", "--json"], env).stdout)["base_file"] == "ok"
    (path,) = (tmp_path / "data" / "index").glob("*.faiss")
    path.write_bytes(path.read_bytes()[:64])
    broken = _run(["check", "--json"], env)
    assert broken.returncode == 1 and json.loads(broken.stdout)["base_file"] == "unreadable"
    assert "Traceback" not in broken.stderr
    repaired = _run(["check", "--repair", "--json"], env)
    assert repaired.returncode == 0 and json.loads(repaired.stdout)["ok"] is True
    assert _run(["check"], env).returncode == 0


@pytest.mark.parametrize("workers", [1, 2])
def test_serve_answers_over_http_and_indexes_writes(tmp_path: Path, env: dict[str, str], workers: int) -> None:
    import socket
    import time

    import httpx

    corpus = tmp_path / "docs.jsonl"
    corpus.write_text(json.dumps({"id": "cats", "text": "the cat sat on the mat"}) + "\n")
    assert _run(["index", str(corpus)], env).returncode == 0
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cli = Path(sys.executable).with_name("semsearch")
    # The data directory as a flag: uvicorn's worker processes must get it too.
    flags = ["--port", str(port), "--workers", str(workers), "--data-dir", env["SEMSEARCH_DATA_DIR"]]
    served = {k: v for k, v in env.items() if k != "SEMSEARCH_DATA_DIR"} | {"SEMSEARCH_RELOAD_SECONDS": "0.1"}
    server = subprocess.Popen([str(cli), "serve", *flags], env=served, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        # Up to three processes importing torch and transformers: minutes on a busy 2-core machine.
        deadline = time.monotonic() + 300
        while True:
            try:
                if httpx.get(f"{base}/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None and time.monotonic() < deadline, "semsearch serve did not come up"
            time.sleep(0.2)
        hits = httpx.get(f"{base}/search", params={"q": "the cat"}, timeout=30).json()["results"]
        assert [h["id"] for h in hits] == ["cats"]
        # The indexing worker that serve runs beside the API embeds what is written over HTTP.
        put = httpx.put(f"{base}/documents/dogs", params={"wait": "true"}, json={"text": "a dog ran"}, timeout=60)
        assert put.status_code == 200 and put.json()["indexed"] is True
        time.sleep(0.5)  # every HTTP worker process reloads within SEMSEARCH_RELOAD_SECONDS
        for _ in range(6):
            hits = httpx.get(f"{base}/search", params={"q": "a dog ran", "k": 1}, timeout=30).json()["results"]
            assert [h["id"] for h in hits] == ["dogs"]
    finally:
        server.terminate()
        server.wait(timeout=30)
