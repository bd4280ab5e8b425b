"""A server's own keyword index (a replica's data directory), kept by its KeywordFollower, on SQLite
and on a real PostgreSQL 15 server: from an empty directory, behind, and passed by log compaction
(also one that lands while a catch-up reads the log), in O(changes), recording nothing in SQL; and
only by the process holding the directory's keeper lock; and `semsearch search`, once."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest
from cli_runner import run_cli

from api.server.index_lag import LagClock
from indexer.write.derived import beside_dense
from indexer.write.keyword_follower import KeywordFollower
from indexer.write.keyword_writer import KeywordWriter
from search.components import migrate, open_keyword, open_store
from search.keyword.index import NAME, KeywordIndex
from search.settings import Settings
from search.storage import changes
from search.storage.records import ChunkIn, DocumentIn
from search.storage.store import Store


def _doc(ext: str, text: str) -> tuple[DocumentIn, list[ChunkIn]]:
    return DocumentIn(ext, text, "", {}), [ChunkIn(0, text, 0, len(text))]


def _ids(store: Store, index: KeywordIndex, word: str) -> list[str]:
    found = index.search(index.analyzer.query_terms(word), 10)
    rows = store.chunk_hits([c for c, _ in found])
    return [rows[c].document_id for c, _ in found if c in rows]


def _recorded(store: Store) -> int | None:
    with store.session() as s:
        return changes.applied(s, NAME)


def _head(store: Store) -> int:
    with store.session() as s:
        return changes.head(s)


def test_a_follower_keeps_its_own_index_from_any_state(
    database_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = Store(database_url)
    store.write_documents([_doc(f"d{i}", f"word{i} common") for i in range(200)])
    KeywordWriter(KeywordIndex(tmp_path / "worker")).catch_up(store)  # the worker's own, elsewhere
    recorded = _recorded(store)

    replica = KeywordIndex(tmp_path / "replica")
    follower = KeywordFollower(interval=60)
    follower.attach(store, replica)
    follower.tick()  # an empty directory: built from the chunk rows
    assert _ids(store, replica, "word7") == ["d7"] and replica.applied() == _head(store)

    store.write_documents([_doc("d7", "replaced text")])
    assert follower.tick() == 2  # behind: one "del", one "add", not the 200 documents
    assert _ids(store, replica, "replaced") == ["d7"] and _ids(store, replica, "word7") == []
    # A replica's index holds compaction back for no one: SQL still says what the worker's applied.
    assert _recorded(store) == recorded

    # Compaction past what the replica applied (its entries are gone): rebuilt from SQL, said aloud.
    store.write_documents([_doc("late", "epsilon")])
    store.delete_documents(["d3"])
    with store.session() as s:
        changes.compact(s, changes.head(s))
    with caplog.at_level(logging.WARNING):
        follower.tick()
    assert "building from SQL" in caplog.text
    assert _ids(store, replica, "epsilon") == ["late"] and _ids(store, replica, "word3") == []
    assert KeywordWriter(replica, record=False).check(store).ok
    store.close()


def test_compaction_while_a_catch_up_reads_the_log_is_noticed(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store(database_url)
    store.write_documents([_doc("a", "alpha")])
    replica = KeywordIndex(tmp_path / "replica")
    follower = KeywordFollower(interval=60)
    follower.attach(store, replica)
    follower.tick()
    store.write_documents([_doc("b", "beta")])  # an "add" the replica has not applied
    read = changes.read

    def compacted_first(s, after, *args, **kwargs):  # type: ignore[no-untyped-def]
        monkeypatch.setattr(changes, "read", read)  # once
        with store.session() as other:  # the worker's merge, between the floor check and the read
            changes.compact(other, changes.head(other))
        return read(s, after, *args, **kwargs)

    monkeypatch.setattr(changes, "read", compacted_first)
    follower.tick()
    assert _ids(store, replica, "beta") == ["b"]  # not skipped with the compacted entries
    store.close()


def test_one_keeper_per_data_directory(database_url: str, tmp_path: Path) -> None:
    store = Store(database_url)
    store.write_documents([_doc("a", "alpha")])
    first, second = KeywordFollower(interval=60), KeywordFollower(interval=60)
    first.attach(store, KeywordIndex(tmp_path / "shared"))
    second.attach(store, KeywordIndex(tmp_path / "shared"))
    first.tick()
    store.write_documents([_doc("b", "beta")])
    assert second.tick() == 0 and not second.keeping  # `serve --workers 2`: one process applies
    assert first.tick() == 1 and first.keeping

    # A worker in a directory a server keeps still applies, and records what the index holds,
    # even when the server applied it first (its own catch-up then commits nothing).
    store.write_documents([_doc("c", "gamma")])
    first.tick()
    worker = KeywordWriter(KeywordIndex(tmp_path / "shared"))
    assert worker.catch_up(store) == 0 and _recorded(store) == _head(store)

    # A worker that keeps its directory leaves its servers nothing to do.
    own = KeywordWriter(KeywordIndex(tmp_path / "worker"))
    own.catch_up(store)
    server = KeywordFollower(interval=60)
    server.attach(store, KeywordIndex(tmp_path / "worker"))
    store.write_documents([_doc("d", "delta")])
    assert server.tick() == 0 and own.catch_up(store) == 1
    store.close()


def test_the_lag_clock_counts_from_the_first_head_not_reached() -> None:
    clock = LagClock()
    assert clock.observe(10, 10, now=0.0) == 0.0
    assert clock.observe(12, 10, now=1.0) == 0.0  # behind since now
    assert clock.observe(13, 10, now=3.0) == 2.0
    assert clock.observe(14, 12, now=4.0) == 1.0  # 12 reached: behind since 13 was seen
    assert clock.observe(14, 14, now=5.0) == 0.0
    for t in range(200):  # held behind while the head moves on: the first head stays the measure
        behind = clock.observe(20 + t, 15, now=10.0 + t)
    assert behind == 199.0


def test_search_catches_its_data_directorys_keyword_index_up(tmp_path: Path, tiny_model_dir: Path) -> None:
    """`semsearch search` on a data directory no worker writes (a replica's, on the worker's database)."""
    env = {**os.environ, "SEMSEARCH_MODEL": str(tiny_model_dir), "SEMSEARCH_DTYPE": "float32"}
    corpus = tmp_path / "docs.jsonl"
    corpus.write_text(json.dumps({"id": "part", "text": "the part number ZQX-4471"}) + "\n")
    worker = {**env, "SEMSEARCH_DATA_DIR": str(tmp_path / "worker")}
    assert run_cli(["index", str(corpus)], worker).returncode == 0
    url = f"sqlite:///{tmp_path / 'worker' / 'semsearch.db'}"
    replica = {**env, "SEMSEARCH_DATA_DIR": str(tmp_path / "replica"), "SEMSEARCH_DATABASE_URL": url}
    found = run_cli(["search", "zqx-4471", "--mode", "keyword", "--json"], replica)
    assert found.returncode == 0, found.stderr
    assert [hit["id"] for hit in json.loads(found.stdout)] == ["part"]


def test_a_writing_process_keeps_its_directory_from_the_start(settings: Settings) -> None:
    """`serve` with its worker: the worker's keyword writer is made before the app's follower starts."""
    migrate(settings)
    store = open_store(settings)
    store.write_documents([_doc("a", "alpha")])
    kept = beside_dense(settings)
    follower = KeywordFollower(interval=60)
    follower.attach(store, open_keyword(settings))
    assert follower.tick() == 0 and not follower.keeping and not open_keyword(settings).exists()
    del kept
    store.close()


def test_a_follower_that_cannot_write_its_folder_says_so_and_goes_on(database_url: str, tmp_path: Path) -> None:
    store = Store(database_url)
    store.write_documents([_doc("a", "alpha")])
    root = tmp_path / "replica"
    root.write_text("not a folder")  # neither the keeper lock nor the index can be made
    follower = KeywordFollower(interval=60)
    follower.attach(store, KeywordIndex(root))
    assert follower.tick() == 0 and follower.error is not None and "FileExistsError" in follower.error
    root.unlink()
    follower.tick()
    assert follower.error is None and _ids(store, KeywordIndex(root), "alpha") == ["a"]
    store.close()
