"""`semsearch rebuild` beside `semsearch serve` on SQLite: handed to the serving process's worker as a
job, followed to the end, with no failed query meanwhile."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from indexer.cli.main import main


def _start(data: Path, env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [sys.executable, "-m", "indexer.cli.main", "serve", "--port", str(port), "--data-dir", str(data)]
    server = subprocess.Popen(command, env=env, stderr=subprocess.DEVNULL, text=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while True:
        try:
            if httpx.get(f"{base}/health").status_code == 200:
                return server, base
        except httpx.TransportError:
            pass
        assert server.poll() is None and time.monotonic() < deadline, "semsearch serve did not come up"
        time.sleep(0.2)


def test_rebuild_beside_serve_runs_in_its_worker_with_no_failed_query(
    tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    settings_env = {"SEMSEARCH_MODEL": str(tiny_model_dir), "SEMSEARCH_DTYPE": "float32", "SEMSEARCH_DEVICE": "cpu"}
    for key, value in {**settings_env, "SEMSEARCH_DATA_DIR": str(data), "SEMSEARCH_RELOAD_SECONDS": "0.1"}.items():
        monkeypatch.setenv(key, value)
    corpus = tmp_path / "docs.jsonl"
    words = ["cat", "dog", "gene", "virus", "star", "water", "tree", "fire"]
    lines = [{"id": f"d{i}", "text": f"{words[i % 8]} {words[(i * 3) % 8]} text {i}"} for i in range(60)]
    corpus.write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert main(["index", str(corpus)]) == 0
    server, base = _start(data, {**os.environ, "SEMSEARCH_RELOAD_SECONDS": "0.1"})
    outcomes: list[int] = []
    stop = threading.Event()

    def query() -> None:
        with httpx.Client(timeout=60) as client:
            while not stop.is_set():
                outcomes.append(client.get(f"{base}/search", params={"q": "gene virus", "k": 5}).status_code)

    clients = [threading.Thread(target=query) for _ in range(2)]
    try:
        for thread in clients:
            thread.start()
        # The serving process holds SQLite's one indexing slot: the rebuild is queued for its worker.
        assert main(["rebuild", "--factory", "HNSW32,Flat", "--json"]) == 0
        summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert summary["factory"] == "HNSW32,Flat" and summary["vectors"] == 60
        deadline = time.monotonic() + 30
        while httpx.get(f"{base}/stats", timeout=30).json()["index_type"] != "HNSW32,Flat":
            assert time.monotonic() < deadline, "the server never served the rebuilt generation"
            time.sleep(0.1)
    finally:
        stop.set()
        for thread in clients:
            thread.join(timeout=60)
        server.terminate()
        server.wait(timeout=30)
    assert outcomes and set(outcomes) == {200}, f"{len(outcomes)} queries: {sorted(set(outcomes))}"
