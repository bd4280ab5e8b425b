"""The long-lived worker: queued documents become searchable, several workers on PostgreSQL never take the
same document, and SQLite refuses a second one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
from cli_runner import run_cli
from dense_path import open_dense

from indexer.ingest.chunking import Chunker
from indexer.write.worker import BackgroundWorker, Worker
from search.components import open_searcher
from search.dense.catalog import IndexCatalog
from search.embedding.encoder import Encoder
from search.settings import Settings
from search.storage.records import DocumentIn
from search.storage.store import Store
from search.work.queue import enqueue
from search.work.state import WorkerState

WORDS = ["cat", "dog", "gene", "virus", "python", "star", "water", "tree", "fire", "cell"]


def _docs(n: int, prefix: str = "d") -> list[DocumentIn]:
    return [
        DocumentIn(f"{prefix}{i}", " ".join(WORDS[(i * k) % 10] for k in range(1, 9)) + f" {i}.", f"T{i}")
        for i in range(n)
    ]


def _worker(
    settings: Settings, encoder: Encoder, store: Store, publish_seconds: float = 0.1, derived: Sequence = ()
) -> Worker:
    catalog = IndexCatalog(store, settings.index_dir)
    chunker = Chunker(encoder, 32, 4)
    return Worker(encoder, store, catalog, chunker, publish_seconds=publish_seconds, batch_docs=8, derived=derived)


def _wait_for(predicate, what: str, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_queued_documents_become_searchable_and_deletes_vanish(settings: Settings, tiny_encoder: Encoder) -> None:
    live = settings.model_copy(update={"reload_seconds": 0.05})
    store = Store(live.resolved_database_url)
    background = BackgroundWorker(_worker(live, tiny_encoder, store))
    background.start()
    try:
        result, same = enqueue(store, _docs(40))
        assert len(result.added) == 40 and same == []
        searcher = open_dense(live, tiny_encoder, store, watch=True)
        # Published within the bounded interval: no restart of the reader, no manual step.
        _wait_for(lambda: searcher.refresh().index.ntotal == 40, "40 vectors in the served index")
        doc = store.get_document("d7")
        assert doc is not None and doc.status == "indexed"
        assert searcher.search(_docs(8)[7].text, k=1)[0].id == "d7"
        # A replaced document: its old chunk never shows again, from the moment the store commits.
        enqueue(store, [DocumentIn("d7", "water water water tree tree.", "T7")])
        assert all(hit.id != "d7" for hit in searcher.search(_docs(8)[7].text, k=40))
        store.delete_documents(["d3"])
        assert all(hit.id != "d3" for hit in searcher.search(_docs(4)[3].text, k=40))
        # The worker takes the tombstones out of the index file, and embeds the new text of d7.
        _wait_for(lambda: searcher.refresh().index.ntotal == 39, "39 vectors after the delete")
        _wait_for(lambda: store.get_document("d7").status == "indexed", "d7 re-indexed")  # type: ignore[union-attr]
        searcher.refresh()
        assert searcher.search("water water water tree tree.", k=1)[0].id == "d7"
    finally:
        background.stop()
        store.close()


def test_unchanged_documents_are_not_queued_again(settings: Settings, tiny_encoder: Encoder) -> None:
    store = Store(settings.resolved_database_url)
    worker = _worker(settings, tiny_encoder, store)
    enqueue(store, _docs(5))
    assert worker.drain() == 5
    result, same = enqueue(store, [*_docs(4), DocumentIn("d4", "a new text.", "T4")])
    assert result.updated == ["d4"] and len(same) == 4
    assert worker.drain() == 1
    assert sorted(open_searcher(settings, tiny_encoder, store).index.ids().tolist()) == sorted(store.all_chunk_ids())
    store.close()


@pytest.mark.postgres
def test_a_slow_publish_spaces_out_the_next_ones(settings: Settings, tiny_encoder: Encoder, monkeypatch) -> None:
    from indexer.write import worker as worker_module

    worker = _worker(settings, tiny_encoder, Store(settings.resolved_database_url), publish_seconds=0.05)
    stop = threading.Event()
    calls: list[tuple[float, float]] = []
    costs = [0.5, 0.0, 0.0]  # one publish as slow as a large index's, then quick ones again

    def sync(final: bool = True) -> int:
        start = time.monotonic()
        time.sleep(costs[len(calls)] if len(calls) < len(costs) else 0.0)
        calls.append((start, time.monotonic()))
        if len(calls) == len(costs):
            stop.set()
        return 0

    monkeypatch.setattr(worker, "start_up", lambda: None)
    monkeypatch.setattr(worker, "step", lambda: 1)  # always busy: publishing is due at every interval
    monkeypatch.setattr(worker.publisher, "sync", sync)
    worker.run(stop)
    (s1, e1), (s2, e2), (s3, _) = calls[:3]
    assert s2 - e1 >= worker_module.PUBLISH_COST_FACTOR * (e1 - s1) >= 2.0, "the next publish came too soon"
    assert s3 - e2 < 1.5, "a quick publish should bring the configured interval back"


def test_postgres_workers_never_take_the_same_document(settings: Settings, tiny_encoder: Encoder, postgres_url: str):
    pg = settings.model_copy(update={"database_url": postgres_url})
    stores = [Store(postgres_url) for _ in range(3)]
    enqueue(stores[0], _docs(120))
    workers = [_worker(pg, tiny_encoder, s) for s in stores]
    claimed: list[list[int]] = [[] for _ in workers]
    start = threading.Barrier(len(workers))

    def work(n: int) -> None:
        start.wait()
        while taken := workers[n].step():
            claimed[n].append(taken)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(len(workers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    workers[0].publisher.sync()
    # Every document claimed exactly once in all (SKIP LOCKED), and more than one worker did work.
    assert sum(sum(c) for c in claimed) == 120
    assert sum(1 for c in claimed if c) >= 2
    assert sorted(open_searcher(settings, tiny_encoder, stores[0]).index.ids().tolist()) == sorted(
        stores[0].all_chunk_ids()
    )
    for store in stores:
        store.close()


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return run_cli(list(args), env)  # in this process: only the long-lived worker below needs to be another


def test_cli_add_then_worker_and_a_second_sqlite_worker_is_refused(tmp_path: Path, tiny_model_dir: Path) -> None:
    corpus = tmp_path / "docs.jsonl"
    corpus.write_text("".join(json.dumps({"id": d.external_id, "text": d.text}) + "\n" for d in _docs(30)))
    env = {
        **os.environ,
        "SEMSEARCH_DATA_DIR": str(tmp_path / "data"),
        "SEMSEARCH_MODEL": str(tiny_model_dir),
        "SEMSEARCH_DTYPE": "float32",
    }
    added = _cli("add", str(corpus), "--json", env=env)
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout) == {
        "added": 30,
        "updated": 0,
        "unchanged": 0,
        "rejected": 0,
        "skipped": 0,
        "skipped_files": [],
    }
    exe = str(Path(sys.executable).with_name("semsearch"))
    long_lived = subprocess.Popen([exe, "worker"], env=env, stderr=subprocess.PIPE, text=True)
    try:
        # A process start (torch, transformers) takes most of a minute on a busy 2-core machine.
        _wait_for(lambda: json.loads(_cli("check", "--json", env=env).stdout)["vectors"] == 30, "the worker", 180)
        second = _cli("worker", "--until-empty", env=env)
        assert second.returncode == 2
        assert "SQLite allows one indexing process" in second.stderr and str(long_lived.pid) in second.stderr
    finally:
        long_lived.terminate()
        assert long_lived.wait(timeout=60) == 0, long_lived.stderr.read() if long_lived.stderr else ""
    # Once it stopped, the next worker may start.
    again = _cli("worker", "--until-empty", "--json", env=env)
    assert again.returncode == 0 and json.loads(again.stdout) == {"embedded": 0}


class _Stop(threading.Event):
    """A stop event that records how long the worker asked to wait, and returns at once."""

    def __init__(self) -> None:
        super().__init__()
        self.waits: list[float] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(float(timeout or 0))
        return self.is_set()


def test_failures_back_off_exponentially_and_a_success_resets_the_budget(
    settings: Settings, tiny_encoder: Encoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store(settings.resolved_database_url)
    worker = _worker(settings, tiny_encoder, store)
    worker.state = WorkerState(failure_budget=3, base_delay=0.5, max_delay=3.0)
    stop = _Stop()
    outcomes: list[Exception | None] = [RuntimeError("start-up: database locked")]  # start_up fails once
    outcomes += [ConnectionError(f"down {i}") for i in range(5)] + [None]
    seen: list[tuple[int, bool]] = []
    start_up = worker.start_up

    def flaky_start_up() -> None:
        failure = outcomes.pop(0)
        if failure:
            raise failure
        start_up()

    def flaky_step() -> int:
        seen.append((worker.state.snapshot().consecutive_failures, worker.state.failing))
        failure = outcomes.pop(0)
        if failure:
            raise failure
        stop.set()  # one good step, then the worker stops
        return 0

    outcomes.insert(1, None)  # start-up succeeds on its second try
    monkeypatch.setattr(worker, "start_up", flaky_start_up)
    monkeypatch.setattr(worker, "step", flaky_step)
    worker.run(stop)
    # Start-up: one failure (0.5 s), then steps fail five times: 0.5, 1, 2, 3 (the cap), 3.
    assert stop.waits[:6] == [0.5, 0.5, 1.0, 2.0, 3.0, 3.0]
    # The budget (3) was used up after the third consecutive failure, and the good step reset it.
    assert seen == [(0, False), (1, False), (2, False), (3, True), (4, True), (5, True)]
    snapshot = worker.state.snapshot()
    assert snapshot.consecutive_failures == 0 and not snapshot.failing and snapshot.failures_total == 6
    assert snapshot.last_error == "ConnectionError: down 4"
    store.close()


def test_keyword_search_sees_an_embedded_batch_before_the_next_publish(
    settings: Settings, tiny_encoder: Encoder
) -> None:
    from indexer.write.keyword_writer import KeywordWriter
    from search.components import open_keyword
    from search.keyword.index import NAME as KEYWORD
    from search.storage import changes

    store = Store(settings.resolved_database_url)
    keyword = [KeywordWriter(open_keyword(settings))]
    worker = _worker(settings, tiny_encoder, store, publish_seconds=3600, derived=keyword)  # no publish meanwhile
    background = BackgroundWorker(worker)
    background.start()
    try:
        _wait_for(lambda: worker.state.snapshot().consecutive_failures == 0 and worker.publisher.generation, "start-up")
        enqueue(store, [DocumentIn("kw", "a zebra crossing in the rain", "")])

        def applied() -> bool:
            with store.session() as s:
                return (changes.applied(s, KEYWORD) or 0) >= changes.head(s)

        done = lambda: store.get_document("kw").status == "indexed" and applied()  # type: ignore[union-attr]  # noqa: E731
        _wait_for(done, "the keyword catch-up", 10)
        keyword = open_keyword(settings)
        assert keyword.search(keyword.analyzer.query_terms("zebra"), 5)
    finally:
        background.stop()
        store.close()
