"""Replicas on PostgreSQL (issue 26): two `semsearch serve --no-worker` processes, each with a data
directory of its own (one started empty, after documents exist), and one `semsearch worker`, all on
one database, as real processes with the tiny BERT.

Each replica keeps its own keyword index caught up with the change log: a write through either one
with `?wait=true` is found in keyword and hybrid mode through both within SEMSEARCH_RELOAD_SECONDS
+ 1 s, keyword results agree after 500 writes and 50 deletes, and a replica whose keyword side is
held behind says so on /health."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from indexer.write.keyword_writer import KeywordWriter
from indexer.write.locks import FileLock
from search.components import migrate, open_keyword, open_store
from search.settings import Settings, settings_env
from search.storage.records import DocumentIn
from search.work.queue import enqueue

pytestmark = pytest.mark.postgres
REPO = Path(__file__).resolve().parents[3]
RELOAD = 1.0
WORDS = ["cat", "dog", "bird", "fish", "tree", "sun", "moon", "star", "water", "fire", "earth", "wind"]


class Processes:
    """semsearch commands in processes of their own, each logging to a file; stopped at the end,
    when none may have logged a traceback."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.running: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start(self, name: str, settings: Settings, *args: str) -> subprocess.Popen[bytes]:
        log = self.folder / f"{name}.log"
        env = {**os.environ, **settings_env(settings)}
        command = [sys.executable, "-m", "indexer.cli.main", *args]
        with log.open("wb") as out:
            proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
        self.running.append((proc, log))
        return proc

    def serve(self, name: str, settings: Settings) -> str:
        """A replica, `semsearch serve --no-worker`, starting; its URL (see `wait_up`)."""
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        self.start(name, settings, "serve", "--no-worker", "--port", str(port))
        return f"http://127.0.0.1:{port}"

    def wait_up(self, *urls: str) -> None:
        """Until each replica answers (they start at once: each spends seconds importing)."""
        deadline = time.monotonic() + 180
        for url in urls:
            while not _up(url):
                for proc, log in self.running:
                    assert proc.poll() is None, log.read_text()
                assert time.monotonic() < deadline, f"{url} did not start"
                time.sleep(0.1)

    def stop(self) -> None:
        for proc, _ in self.running:
            proc.terminate()
        for proc, log in self.running:
            proc.wait(timeout=30)
            assert "Traceback" not in log.read_text(errors="replace"), log.read_text(errors="replace")


def _up(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _until(look: Callable[[], Any], done: Callable[[Any], bool], seconds: float) -> Any:
    """`look()` until `done` holds of what it returns; fails with the last look after `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        seen = look()
        if done(seen):
            return seen
        assert time.monotonic() < deadline, f"not within {seconds} s: {seen}"
        time.sleep(0.05)


def _search(url: str, query: str, mode: str, k: int = 10) -> list[dict[str, Any]]:
    response = httpx.get(f"{url}/search", params={"q": query, "k": k, "mode": mode}, timeout=30)
    assert response.status_code == 200, response.text
    return list(response.json()["results"])


def _found(url: str, token: str, doc: str) -> bool:
    """`doc` found through `url` by its token in keyword mode, and in hybrid mode by its keyword side."""
    keyword = [hit["id"] for hit in _search(url, token, "keyword")]
    hybrid = {hit["id"]: hit for hit in _search(url, token, "hybrid")}
    return keyword == [doc] and doc in hybrid and hybrid[doc]["keyword"] is not None


def _ranking(url: str, word: str) -> list[tuple[set[str], float]]:
    """Every document `word` finds in keyword mode, grouped by equal score, best first."""
    hits = _search(url, word, "keyword", k=1000)
    assert len(hits) < 1000
    groups: list[tuple[set[str], float]] = []
    for hit in hits:
        if not groups or hit["score"] != groups[-1][1]:
            groups.append((set(), hit["score"]))
        groups[-1][0].add(hit["id"])
    return groups


def _health(url: str) -> dict[str, Any]:
    return dict(httpx.get(f"{url}/health", timeout=30).json())


def _bulk_text(i: int) -> str:
    # Term counts and lengths vary, so that keyword rankings have few ties to break by index layout.
    return " ".join([f"bulk{i}", *[WORDS[i % 12]] * (1 + i % 7), WORDS[(i // 12) % 12], *["pad"] * (i % 11)])


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    running = Processes(tmp_path)
    try:
        yield running
    finally:
        running.stop()


def test_replicas_keep_their_keyword_index_caught_up(
    processes: Processes, tmp_path: Path, tiny_model_dir: Path, postgres_url: str
) -> None:
    base = Settings(
        data_dir=tmp_path / "worker",
        database_url=postgres_url,
        model=str(tiny_model_dir),
        dtype="float32",
        device="cpu",
        reload_seconds=RELOAD,
        publish_seconds=0.2,
    )
    migrate(base)  # once, before the three processes start (each would migrate an empty database)
    store = open_store(base)
    enqueue(store, [DocumentIn(f"seed{i}", f"seed{i} {WORDS[i % 12]}") for i in range(20)])
    store.close()

    # Both replicas start with empty data directories, after documents exist; B's keyword writer
    # lock is held (as by a stuck writer), so its keyword side stays behind and its /health says so
    # past the bound.
    b_settings = base.model_copy(update={"data_dir": tmp_path / "b", "degraded_index_lag_seconds": 2.0})
    keyword_b = open_keyword(b_settings)
    stuck = FileLock(keyword_b.root / f"{keyword_b.path.name}.lock")
    stuck.acquire()
    processes.start("worker", base, "worker")
    a = processes.serve("a", base.model_copy(update={"data_dir": tmp_path / "a"}))
    b = processes.serve("b", b_settings)
    processes.wait_up(a, b)
    _until(lambda: _health(a), lambda h: h["queue"]["unindexed_documents"] == 0, 60)
    _until(lambda: _found(a, "seed3", "seed3"), bool, RELOAD + 1)
    health = _until(lambda: _health(b), lambda h: h["status"] == "degraded", 15)
    assert any("keyword index" in p and "DEGRADED_INDEX_LAG" in p for p in health["problems"]), health
    assert health["indexes"]["keyword"]["applied"] is None and health["indexes"]["keyword"]["lag"] > 0
    assert not any("dense index" in p for p in health["problems"]) and _health(a)["status"] == "ok"
    stuck.release()
    _until(lambda: _health(b), lambda h: h["status"] == "ok" and h["indexes"]["keyword"]["lag"] == 0, 15)
    assert _found(b, "seed3", "seed3")

    # A write through either replica with ?wait=true: searchable there at once, and through the
    # other within the reload interval and a second.
    for n, (writer, other) in enumerate(((a, b), (b, a))):
        doc, token = f"fresh{n}", f"zqx{n}fresh"
        put = httpx.put(f"{writer}/documents/{doc}", params={"wait": "true"}, json={"text": token}, timeout=60)
        answered = time.monotonic()
        assert put.status_code == 200 and put.json()["indexed"] is True, put.text
        assert _found(writer, token, doc)
        _until(lambda: _found(other, token, doc), bool, RELOAD + 1 - (time.monotonic() - answered))  # noqa: B023

    # 500 writes and 50 deletes through both: the keyword results of both agree.
    bulk = [{"id": f"bulk{i}", "text": _bulk_text(i)} for i in range(500)]
    for n in range(5):
        batch = httpx.post(f"{(a, b)[n % 2]}/documents", json=bulk[n * 100 : (n + 1) * 100], timeout=60)
        assert batch.status_code == 200, batch.text
    for i in range(0, 500, 10):
        assert httpx.delete(f"{(a, b)[i % 20 // 10]}/documents/bulk{i}", timeout=30).status_code == 200

    def settled() -> list[dict[str, Any]]:
        return [_health(url) for url in (a, b)]

    def caught_up(seen: list[dict[str, Any]]) -> bool:
        heads = {h["indexes"]["keyword"]["head"] for h in seen}
        return len(heads) == 1 and all(
            h["queue"]["unindexed_documents"] == 0 and h["indexes"]["keyword"]["lag"] == 0 for h in seen
        )

    _until(settled, caught_up, 60)
    for i in range(0, 500, 7):  # each document by its own token: found through both, unless deleted
        expected = [] if i % 10 == 0 else [f"bulk{i}"]
        for url in (a, b):
            assert [hit["id"] for hit in _search(url, f"bulk{i}", "keyword")] == expected, (url, i)
    for word in WORDS:  # every match, in the same order (ties aside) through both
        a_ranked, b_ranked = _ranking(a, word), _ranking(b, word)
        assert [ids for ids, _ in a_ranked] == [ids for ids, _ in b_ranked], word
        # BM25 statistics count deleted chunks until tantivy merges them away, which happens at other
        # times in indexes that applied the log in other batches: the scores agree closely, not exactly.
        assert [s for _, s in a_ranked] == pytest.approx([s for _, s in b_ranked], rel=0.05), word
    # Each replica's keyword index holds exactly the chunk rows, as of the head.
    store = open_store(base)
    try:
        for folder in ("a", "b"):
            report = KeywordWriter(open_keyword(base.model_copy(update={"data_dir": tmp_path / folder}))).check(store)
            assert report.ok and report.behind == 0, (folder, report)
    finally:
        store.close()
