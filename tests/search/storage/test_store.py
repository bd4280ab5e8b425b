"""The SQL store on SQLite and on a real PostgreSQL 15 server."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event, inspect, update

from search.storage import changes
from search.storage.db import MMAP_BYTES, alembic_config
from search.storage.models import Document, GenerationState
from search.storage.records import ChunkIn, DocumentIn
from search.storage.rows import insert_chunks_of
from search.storage.store import Store


def _doc(ext: str, text: str, **meta: object) -> DocumentIn:
    return DocumentIn(external_id=ext, text=text, title=f"title {ext}", metadata=dict(meta))


def _chunks(text: str, n: int) -> list[ChunkIn]:
    step = len(text) // n
    return [ChunkIn(i, text[i * step : (i + 1) * step], i * step, (i + 1) * step) for i in range(n)]


def test_schema_is_at_alembic_head(database_url: str) -> None:
    store = Store(database_url)
    with store.engine.connect() as conn:
        current = MigrationContext.configure(conn).get_current_revision()
    head = ScriptDirectory.from_config(alembic_config(database_url)).get_current_head()
    assert current == head
    assert {"documents", "chunks", "index_generations"} <= set(inspect(store.engine).get_table_names())
    Store(database_url)  # upgrading again is a no-op, not an error
    store.close()


def test_write_replace_delete(database_url: str) -> None:
    store = Store(database_url)
    first = store.write_documents([(_doc("a", "alpha beta gamma delta"), _chunks("alpha beta gamma delta", 2))])
    assert first.added == ["a"] and len(first.new_chunk_ids) == 2
    hits = store.chunk_hits(first.new_chunk_ids)
    assert [hits[i].text for i in first.new_chunk_ids] == ["alpha beta ", "gamma delta"]
    assert hits[first.new_chunk_ids[0]].document_id == "a"

    second = store.write_documents([(_doc("a", "new text entirely"), _chunks("new text entirely", 1))])
    assert second.updated == ["a"]
    assert sorted(second.removed_chunk_ids) == sorted(first.new_chunk_ids)
    # Replaced chunks are gone, and their keys are never handed out again (a stale vector can't alias).
    assert store.chunk_hits(first.new_chunk_ids) == {}
    assert min(second.new_chunk_ids) > max(first.new_chunk_ids)
    assert store.counts() == {"documents": 1, "chunks": 1}

    deleted, chunk_ids = store.delete_documents(["a", "missing"])
    assert deleted == ["a"] and chunk_ids == second.new_chunk_ids
    assert store.counts() == {"documents": 0, "chunks": 0}
    third = store.write_documents([(_doc("a", "again"), _chunks("again", 1))])
    assert third.new_chunk_ids[0] > second.new_chunk_ids[0]
    store.close()


def test_deleting_more_ids_than_one_statement_may_bind(database_url: str) -> None:
    # PostgreSQL takes at most 65,535 bound parameters a statement: the ids go in slices, one transaction.
    store = Store(database_url)
    store.write_documents([(_doc(f"d{i}", f"text {i}"), _chunks(f"text {i}", 1)) for i in range(3)])
    asked = [f"absent{i}" for i in range(70_000)] + ["d0", "d2"]
    deleted, chunk_ids = store.delete_documents(asked)
    assert sorted(deleted) == ["d0", "d2"] and len(chunk_ids) == 2
    assert store.external_ids() == ["d1"]
    store.close()


def test_content_hash_and_metadata(database_url: str) -> None:
    store = Store(database_url)
    doc = _doc("ü-1", "naïve café ☕", lang="fr", year=2020, tags=["x", "y"])
    store.write_documents([(doc, _chunks(doc.text, 1))])
    assert store.content_hashes(["ü-1", "nope"]) == {"ü-1": doc.content_hash}
    assert _doc("ü-1", "naïve café ☕", lang="de").content_hash == doc.content_hash
    assert _doc("ü-1", "other").content_hash != doc.content_hash
    store.update_metadata({"ü-1": {"lang": "de"}})
    (hit,) = store.chunk_hits(store.all_chunk_ids()).values()
    assert hit.metadata == {"lang": "de"} and hit.title == "title ü-1"
    store.close()


def test_chunk_inputs_and_the_change_log(database_url: str) -> None:
    from search.storage import changes

    store = Store(database_url)
    result = store.write_documents([(_doc(str(i), f"text {i}"), _chunks(f"text {i}", 2)) for i in range(5)])
    inputs = store.chunk_inputs(result.new_chunk_ids)
    assert inputs[result.new_chunk_ids[3]][0] == "title 1"
    with store.session() as s:
        mark = changes.head(s)
        assert [e.chunk_id for e in changes.read(s, 0)] == result.new_chunk_ids
    replaced = store.write_documents([(_doc("1", "new text"), _chunks("new text", 1))])
    _found, deleted = store.delete_documents(["4"])
    # Every chunk added or removed is logged in the same transaction, in commit order.
    with store.session() as s:
        later = changes.read(s, mark)
    assert [(e.op, e.chunk_id) for e in later] == [
        *((changes.Op.DEL, c) for c in replaced.removed_chunk_ids),
        *((changes.Op.ADD, c) for c in replaced.new_chunk_ids),
        *((changes.Op.DEL, c) for c in deleted),
    ]
    assert [e.seq for e in later] == sorted(e.seq for e in later) and later[0].seq > mark
    buried = {e.chunk_id for e in later if e.op is changes.Op.DEL}
    assert len(buried) == 4 and not buried & set(store.all_chunk_ids())
    store.close()


def test_chunk_lookups_take_any_number_of_ids_of_any_integer_type(database_url: str) -> None:
    store = Store(database_url)
    result = store.write_documents(
        [(_doc(str(i), f"text {i}", kind="even" if i % 2 == 0 else "odd"), _chunks(f"text {i}", 2)) for i in range(6)]
    )
    ids = result.new_chunk_ids
    _found, deleted = store.delete_documents(["5"])
    # More ids than one statement may bind on SQLite (32,766), numpy's integers, and ids of no chunk.
    asked = [*np.asarray(ids, dtype=np.int64), *range(10**9, 10**9 + 40_000)]
    owners = store.chunk_owners(asked, metadata=True)
    assert sorted(owners) == sorted(set(ids) - set(deleted))
    assert owners[ids[2]].document_id == "1" and owners[ids[2]].metadata == {"kind": "odd"}
    assert store.chunk_owners(asked)[ids[0]].metadata is None
    hits = store.chunk_hits(asked)
    assert sorted(hits) == sorted(owners) and hits[ids[1]].document_id == "0"
    assert store.chunk_owners([]) == {} == store.chunk_hits([])
    store.close()


def test_every_sqlite_connection_reads_through_a_memory_map(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'semsearch.db'}")
    with store.engine.connect() as first, store.engine.connect() as second:  # two pooled connections
        for connection in (first, second):
            settings = [connection.exec_driver_sql(f"PRAGMA {name}").scalar() for name in ("journal_mode", "mmap_size")]
            assert settings == ["wal", MMAP_BYTES]
    store.close()


def test_a_new_generation_commits_with_its_file_name(database_url: str, tmp_path: Path, tiny_encoder) -> None:
    # A crash between two commits once left an active generation whose path was "" (the directory).
    from search.dense.catalog import IndexCatalog

    store = Store(database_url)
    commits: list[object] = []
    event.listen(store.engine, "commit", commits.append)
    generation = IndexCatalog(store, tmp_path).create(tiny_encoder, "Flat", GenerationState.ACTIVE)
    assert len(commits) == 1 and generation.path == f"gen-{generation.id:06d}-{0:012d}.faiss"
    assert store.active_generation().path == generation.path  # type: ignore[union-attr]
    store.close()


def test_a_migration_stopped_midway_leaves_nothing_behind(database_url: str) -> None:
    # A process killed while it creates the schema must leave a store the next one can open: the
    # migrations run in one transaction (on SQLite too, whose driver commits DDL on its own).
    store = Store(database_url, upgrade=False)

    def stop(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        if statement.lstrip().upper().startswith("CREATE TABLE CHUNKS"):
            raise KeyboardInterrupt("stopped midway")

    event.listen(store.engine, "before_cursor_execute", stop)
    try:
        store.upgrade()
    except KeyboardInterrupt:
        pass
    else:
        raise AssertionError("the migration should have been stopped")
    store.close()
    again = Store(database_url, upgrade=False)
    assert "documents" not in inspect(again.engine).get_table_names()
    again.upgrade()
    again.write_documents([(_doc("a", "text"), _chunks("text", 1))])
    assert again.get_document("a") is not None
    again.close()


@pytest.mark.parametrize("write", ["replace", "delete"])
def test_a_write_racing_the_worker_logs_every_chunk_it_deletes(database_url: str, write: str) -> None:
    # The worker commits chunks for a document (as vectors.py does) just before a writer deletes the
    # document's chunks, after the writer has read which chunks it has. Either the worker waits for
    # the writer, or its chunks are logged as deleted: the log's live chunks are always the rows.
    store, worker = Store(database_url), Store(database_url)
    (doc_id, _), *_ = store.write_documents([(_doc("race", "v1"), [])]).written
    racing: list[threading.Thread] = []

    def commit_chunks() -> None:
        with worker.session() as s:
            # The worker's guard: its document's row, still there (it takes that row's lock).
            touched = update(Document).where(Document.id == doc_id).values(title=Document.title)
            if s.scalar(touched.returning(Document.id)) is None:
                return
            ids = insert_chunks_of(s, [(doc_id, [ChunkIn(0, "v1", 0, 2)])])[0]
            changes.append(s, changes.Op.ADD, ids)

    def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.startswith("DELETE FROM chunks") and not racing:
            racing.append(threading.Thread(target=commit_chunks))
            racing[0].start()
            racing[0].join(timeout=1.0)  # it commits now, or waits for this transaction

    event.listen(store.engine, "before_cursor_execute", before)
    if write == "replace":
        store.write_documents([(_doc("race", "v2"), [])])
    else:
        store.delete_documents(["race"])
    racing[0].join(timeout=30)
    with store.session() as s:
        log = changes.read(s, after=0)
    live = {e.chunk_id for e in log if e.op is changes.Op.ADD} - {e.chunk_id for e in log if e.op is changes.Op.DEL}
    assert live == set(store.all_chunk_ids())
    store.close()
    worker.close()
