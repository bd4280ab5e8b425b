"""Snapshots of a live deployment and their restore: the restored deployment serves what the source
served at the snapshot's point, `semsearch check` is clean on it, a snapshot taken while a client
writes and the worker embeds holds every acknowledged write and no half-written document, and a
restore refuses what it must (a non-empty target, a damaged or newer snapshot)."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from pathlib import Path

import pytest
from cli_runner import run_cli
from sqlalchemy import select

from indexer.ingest.chunking import Chunker
from indexer.write.pipeline import Indexer
from indexer.write.snapshot.manifest import MANIFEST, SnapshotError, sha256
from indexer.write.snapshot.restore import restore
from indexer.write.snapshot.take import take_snapshot
from indexer.write.worker import BackgroundWorker, open_worker
from search.components import open_hybrid, open_store
from search.dense.catalog import IndexCatalog
from search.embedding.encoder import Encoder
from search.settings import Settings
from search.storage.models import Chunk, ChunkVector, Document, DocumentStatus
from search.storage.records import DocumentIn
from search.storage.store import Store
from search.work.queue import enqueue

WORDS = ["cat", "dog", "gene", "virus", "python", "star", "water", "tree", "fire", "cell", "sun", "moon"]
QUERIES = [f"{WORDS[i % 12]} {WORDS[(i * 5 + 1) % 12]} {WORDS[(i * 7 + 3) % 12]}" for i in range(50)]


def _doc(i: int, version: int = 1) -> DocumentIn:
    words = " ".join(WORDS[(i * k + version) % 12] for k in range(1, 40 + i % 30))
    return DocumentIn(f"d{i}", f"{words} v{version} {i}.", f"T{i}", {"n": i})


@pytest.fixture
def target_url(database_url: str, request: pytest.FixtureRequest) -> str | None:
    """A second, empty database of the same kind to restore into (None: SQLite in the data directory)."""
    if database_url.startswith("sqlite"):
        return None
    import psycopg

    server = request.getfixturevalue("postgres_server")
    name = f"r_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server.replace("postgresql+psycopg", "postgresql") + "/postgres", autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    return f"{server}/{name}"


def _env(settings: Settings) -> dict[str, str]:
    env = {
        "SEMSEARCH_DATA_DIR": str(settings.data_dir),
        "SEMSEARCH_MODEL": settings.model,
        "SEMSEARCH_DTYPE": "float32",
        "SEMSEARCH_DEVICE": "cpu",
    }
    if settings.database_url:
        env["SEMSEARCH_DATABASE_URL"] = settings.database_url
    return env


def _results(settings: Settings) -> list[list[tuple[str, int, float]]]:
    hybrid = open_hybrid(settings)
    try:
        return [[(h.id, h.chunk_id, h.score) for h in hybrid.search(q, k=10)] for q in QUERIES]
    finally:
        hybrid.store.close()


def _deployment(settings: Settings, encoder: Encoder) -> Indexer:
    store = Store(settings.resolved_database_url)
    from indexer.write.derived import beside_dense

    indexer = Indexer(
        encoder, store, IndexCatalog(store, settings.index_dir), Chunker(encoder, 32, 4), derived=beside_dense(settings)
    )
    indexer.run([_doc(i) for i in range(200)])
    indexer.publisher.sync(force=True)  # a base file, as a corpus past the merge threshold would have
    indexer.run([_doc(i) for i in range(200, 260)] + [_doc(i, 2) for i in range(0, 40, 3)])  # after the base
    indexer.store.delete_documents([f"d{i}" for i in range(100, 120)])
    indexer.derived.catch_up()
    return indexer


def test_a_restored_deployment_serves_what_the_source_served(
    settings: Settings, database_url: str, target_url: str | None, tiny_encoder: Encoder, tmp_path: Path
) -> None:
    source = settings.model_copy(update={"database_url": database_url})
    indexer = _deployment(source, tiny_encoder)
    # Writes paused: the source's state at the snapshot's point is its state now.
    taken = run_cli(["snapshot", str(tmp_path / "snap"), "--json"], _env(source))
    assert taken.returncode == 0, taken.stderr
    manifest = json.loads((tmp_path / "snap" / MANIFEST).read_text())
    assert manifest["dense_file"] and manifest["keyword_dir"], manifest  # the index files travel with it
    assert manifest["dense_seq"] <= manifest["seq"] and manifest["keyword_seq"] <= manifest["seq"]
    expected = _results(source)

    restored = settings.model_copy(update={"data_dir": tmp_path / "restored", "database_url": target_url})
    done = run_cli(["restore", str(tmp_path / "snap"), "--json"], _env(restored))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["documents"] == 240
    checked = run_cli(["check", "--json"], _env(restored))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    report = json.loads(checked.stdout)
    assert report["base_file"] == "ok" and report["keyword"]["behind"] == 0, report
    assert _results(restored) == expected
    assert any(expected), "the queries find something"

    # Writes go on at the source afterwards; the restored copy is a deployment of its own.
    indexer.run([_doc(i) for i in range(300, 310)])
    assert _results(restored) == expected
    indexer.store.close()


def _half_written(store: Store) -> list[str]:
    """Documents whose chunks are not a complete, in-order cover of their text: none at all is right
    only for a pending document (the worker chunks what a client wrote), and an indexed one has a
    vector for each chunk."""
    wrong = []
    with store.session() as s:
        docs = {d.id: d for d in s.scalars(select(Document))}
        spans: dict[int, list[Chunk]] = {}
        for chunk in s.scalars(select(Chunk).order_by(Chunk.document_id, Chunk.ordinal)):
            spans.setdefault(chunk.document_id, []).append(chunk)
        for doc_id, doc in docs.items():
            chunks = spans.get(doc_id, [])
            if not chunks and doc.status == DocumentStatus.PENDING:
                continue
            if (
                not chunks
                or [c.ordinal for c in chunks] != list(range(len(chunks)))
                or any(doc.text[c.start : c.end] != c.text for c in chunks)
                or chunks[0].start != 0
                or chunks[-1].end != len(doc.text)
            ):
                wrong.append(doc.external_id)
    return wrong


def _vectors(store: Store) -> dict[tuple[int, str], bytes]:
    with store.session() as s:
        return {
            (c, sp): bytes(v)
            for c, sp, v in s.execute(select(ChunkVector.chunk_id, ChunkVector.space, ChunkVector.vector))
        }


def test_a_snapshot_taken_while_a_client_writes_holds_every_acknowledged_write(
    settings: Settings, database_url: str, target_url: str | None, tiny_encoder: Encoder, tmp_path: Path
) -> None:
    source = settings.model_copy(
        update={"database_url": database_url, "publish_seconds": 0.05, "chunk_size": 32, "chunk_overlap": 4}
    )
    store = Store(source.resolved_database_url)
    background = BackgroundWorker(open_worker(source, tiny_encoder))
    background.start()
    acknowledged: list[str] = []
    failures: list[BaseException] = []
    snapshot_began = threading.Event()

    def client() -> None:
        try:
            for i in range(500):
                if i == 300:  # the rest is written while the snapshot is taken
                    snapshot_began.wait(60)
                # Every tenth write replaces an earlier document: a snapshot must hold either version whole.
                doc = _doc(i - 5, 2) if i % 10 == 9 else _doc(i)
                enqueue(store, [doc])
                acknowledged.append(doc.external_id)
        except BaseException as exc:
            failures.append(exc)

    writer = threading.Thread(target=client)
    writer.start()
    try:
        # Mid-way: the client has written a good part, and the worker has embedded some of it.
        while (len(acknowledged) < 200 or not _vectors(store)) and writer.is_alive():
            time.sleep(0.01)
        before = set(acknowledged)  # acknowledged before the snapshot began
        snapshot_began.set()
        manifest = take_snapshot(source, tmp_path / "snap")
        writer.join(120)
    finally:
        snapshot_began.set()
        background.stop()
    assert not failures, failures
    assert len(acknowledged) == 500

    restored = settings.model_copy(update={"data_dir": tmp_path / "restored", "database_url": target_url})
    restore(restored, tmp_path / "snap")
    copy = open_store(restored)
    try:
        held = set(copy.external_ids())
        assert before <= held, sorted(before - held)[:10]
        assert len(held) == manifest.documents < len(set(acknowledged)), "a point in the middle of the writes"
        assert _half_written(copy) == []
        # Every vector the copy holds is the one the source committed for that chunk (ids are never reused),
        # and every document it calls indexed has a vector for each chunk.
        source_vectors, copied = _vectors(store), _vectors(copy)
        assert copied and all(source_vectors.get(key, value) == value for key, value in copied.items())
        with copy.session() as s:
            indexed = s.scalars(select(Chunk.id).join(Document).where(Document.status == DocumentStatus.INDEXED)).all()
        assert {c for c, _ in copied} >= set(indexed)
    finally:
        copy.close()
        store.close()
    checked = run_cli(["check"], _env(restored))
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_restore_refuses_a_target_that_is_not_empty(
    settings: Settings, database_url: str, target_url: str | None, tiny_encoder: Encoder, tmp_path: Path
) -> None:
    source = settings.model_copy(update={"database_url": database_url})
    _deployment(source, tiny_encoder).store.close()
    take_snapshot(source, tmp_path / "snap")
    # The source itself is not empty: a restore over a live deployment is refused, nothing changed.
    refused = run_cli(["restore", str(tmp_path / "snap")], _env(source))
    assert refused.returncode == 2 and "is not empty" in refused.stderr, refused.stderr
    other = settings.model_copy(update={"data_dir": tmp_path / "other", "database_url": target_url})
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(SnapshotError, match="is not empty"):
        restore(other, tmp_path / "snap")
    assert [p.name for p in (tmp_path / "other").iterdir()] == ["notes.txt"]
    if target_url is not None:  # an empty data directory, but a database that holds tables
        filled = settings.model_copy(update={"data_dir": tmp_path / "third", "database_url": database_url})
        with pytest.raises(SnapshotError, match="is not empty"):
            restore(filled, tmp_path / "snap")


def test_restore_checks_the_manifest_and_migrates_an_older_schema(
    settings: Settings, tiny_encoder: Encoder, tmp_path: Path
) -> None:
    from alembic import command

    from search.storage.db import alembic_config

    _deployment(settings, tiny_encoder).store.close()
    snap = tmp_path / "snap"
    take_snapshot(settings, snap)
    assert run_cli(["snapshot", str(snap)], _env(settings)).returncode == 2  # never over an existing one
    manifest = json.loads((snap / MANIFEST).read_text())

    def target(name: str) -> Settings:
        return settings.model_copy(update={"data_dir": tmp_path / name})

    (snap / manifest["dense_file"]).write_bytes(b"damaged")
    with pytest.raises(SnapshotError, match="does not match its checksum"):
        restore(target("a"), snap)
    assert not (tmp_path / "a").exists()

    fresh = tmp_path / "snap2"
    take_snapshot(settings, fresh)
    newer = json.loads((fresh / MANIFEST).read_text())
    (fresh / MANIFEST).write_text(json.dumps({**newer, "schema_revision": "9999"}))
    with pytest.raises(SnapshotError, match="taken by a newer version"):
        restore(target("b"), fresh)

    # A snapshot of an older schema (the database downgraded one revision) is migrated as it is restored.
    database = fresh / "database" / "semsearch.db"
    old = Store(f"sqlite:///{database}", upgrade=False)
    with old.engine.begin() as connection:
        config = alembic_config(old.url)
        config.attributes["connection"] = connection
        command.downgrade(config, "-1")
    old.close()
    with sqlite3.connect(database) as one_file:  # as a snapshot holds it: no -wal beside it
        one_file.execute("PRAGMA journal_mode=DELETE")
    older = {**newer, "schema_revision": "0006"}
    older["files"]["database/semsearch.db"]["sha256"] = sha256(database)
    older["files"]["database/semsearch.db"]["bytes"] = database.stat().st_size
    (fresh / MANIFEST).write_text(json.dumps(older))
    assert restore(target("c"), fresh).schema_revision == "0006"
    migrated = run_cli(["migrate", "--json"], _env(target("c")))
    assert json.loads(migrated.stdout)["schema"] == newer["schema_revision"]
    assert run_cli(["check"], _env(target("c"))).returncode == 0
    assert _results(target("c")) == _results(settings)


def test_a_snapshot_holds_every_collection(
    settings: Settings, database_url: str, target_url: str | None, tiny_encoder: Encoder, tmp_path: Path
) -> None:
    """Each collection travels as a snapshot of its own (its database or schema, its index files), and
    comes back with its row, its settings and its results."""
    from search.collections import catalog
    from search.collections.spec import CollectionSettings
    from search.components import migrate

    url = None if database_url.startswith("sqlite") else database_url
    source = settings.model_copy(update={"database_url": url})
    migrate(source)
    deployment = Store(source.resolved_database_url, upgrade=False)
    tenant, _ = catalog.create(source, deployment, "tenant-b", CollectionSettings(chunk_size=64))
    deployment.close()
    _deployment(source, tiny_encoder).store.close()
    store = Store(tenant.resolved_database_url, upgrade=False, deployment=False)
    from indexer.write.derived import beside_dense

    catalog_b = IndexCatalog(store, tenant.index_dir)
    own = Indexer(tiny_encoder, store, catalog_b, Chunker(tiny_encoder, 32, 4), derived=beside_dense(tenant))
    own.run([_doc(i, 7) for i in range(30)])
    own.store.close()
    expected = (_results(source), _results(tenant))

    taken = run_cli(["snapshot", str(tmp_path / "snap"), "--json"], _env(source))
    assert taken.returncode == 0, taken.stderr
    assert json.loads(taken.stdout)["collections"] == "tenant-b"
    restored = settings.model_copy(update={"data_dir": tmp_path / "restored", "database_url": target_url})
    done = run_cli(["restore", str(tmp_path / "snap"), "--json"], _env(restored))
    assert done.returncode == 0, done.stderr
    listed = json.loads(run_cli(["collections", "list", "--json"], _env(restored)).stdout)
    assert [(c["name"], c["documents"], c["settings"]) for c in listed] == [
        ("default", 240, {}),
        ("tenant-b", 30, {"chunk_size": 64}),
    ]
    back = catalog.collection_settings(restored, Store(restored.resolved_database_url, upgrade=False), "tenant-b")
    assert (_results(restored), _results(back)) == expected
    checked = run_cli(["check", "--all-collections", "--json"], _env(restored))
    assert checked.returncode == 0, checked.stdout + checked.stderr
