"""The keyword index on SQLite and on a real PostgreSQL 15 server: the analyzer, catching up with the
change log, rebuilding from SQL, check and repair, readers reloading, filters inside the search."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import tantivy

from indexer.write.keyword_writer import KeywordWriter, UnreadableIndexError
from search.keyword import index as keyword
from search.keyword.index import NAME, KeywordIndex
from search.keyword.segments import Segments
from search.keyword.state import STATE_ID
from search.storage import changes
from search.storage.records import ChunkIn, DocumentIn
from search.storage.store import Store


def _doc(ext: str, text: str, title: str = "", **meta: object) -> tuple[DocumentIn, list[ChunkIn]]:
    return DocumentIn(ext, text, title, dict(meta)), [ChunkIn(0, text, 0, len(text))]


def _ids(store: Store, index: KeywordIndex, query: str, k: int = 10, allowed: np.ndarray | None = None) -> list[str]:
    """The documents the index returns for `query`, best first (through the chunk rows)."""
    found = index.search(index.analyzer.query_terms(query), k, allowed)
    rows = store.chunk_hits([c for c, _ in found])
    return [rows[c].document_id for c, _ in found if c in rows]


def test_catch_up_follows_writes_replacements_and_deletes(database_url: str, tmp_path: Path) -> None:
    store = Store(database_url)
    index = KeywordIndex(tmp_path / "keyword")
    assert index.search(["cat"], 10) == []  # nothing built yet: no results, no error
    store.write_documents([_doc("a", "the cat sat on the mat"), _doc("b", "dogs in the park ZQX-4471", "Dogs")])
    KeywordWriter(index).catch_up(store)  # the first catch-up builds from SQL
    assert _ids(store, index, "cats") == ["a"]
    assert _ids(store, index, "zqx-4471") == ["b"]
    assert _ids(store, index, "dogs") == ["b"]

    store.write_documents([_doc("a", "a bird in the sky")])  # replaced: old terms out, new in
    store.delete_documents(["b"])
    assert KeywordWriter(index).catch_up(store) == 3  # del + add of "a", del of "b"
    assert _ids(store, index, "cat") == [] and _ids(store, index, "bird") == ["a"]
    assert index.search(index.analyzer.query_terms("zqx"), 10) == []
    with store.session() as s:
        assert changes.applied(s, NAME) == changes.head(s) == index.applied()
    assert KeywordWriter(index).catch_up(store) == 0
    store.close()


def test_a_write_costs_what_changed(database_url: str, tmp_path: Path) -> None:
    store = Store(database_url)
    index = KeywordIndex(tmp_path / "keyword")
    store.write_documents([_doc(f"d{i}", f"word{i} common") for i in range(300)])
    KeywordWriter(index).catch_up(store)
    store.write_documents([_doc("d7", "replaced text")])
    assert KeywordWriter(index).catch_up(store) == 2  # one "del", one "add": not the 300 documents
    assert _ids(store, index, "replaced") == ["d7"] and _ids(store, index, "word7") == []
    store.close()


def test_rebuilt_from_sql_when_its_files_or_log_are_gone(database_url: str, tmp_path: Path) -> None:
    store = Store(database_url)
    index = KeywordIndex(tmp_path / "keyword")
    store.write_documents([_doc("a", "alpha beta"), _doc("b", "gamma delta")])
    KeywordWriter(index).catch_up(store)
    shutil.rmtree(index.path)  # a cache deleted by hand
    fresh = KeywordIndex(tmp_path / "keyword")
    assert KeywordWriter(fresh).check(store).applied is None
    KeywordWriter(fresh).catch_up(store)
    assert _ids(store, fresh, "gamma") == ["b"] and KeywordWriter(fresh).check(store).ok

    # The log compacted past what the index applied: its entries are gone, so it rebuilds.
    stale = fresh.applied()
    store.write_documents([_doc("c", "epsilon")])
    store.delete_documents(["a"])
    with store.session() as s:
        changes.compact(s, changes.head(s))
    with store.session() as s:
        assert stale is not None and stale < changes.floor(s)
    KeywordWriter(fresh).catch_up(store)
    assert _ids(store, fresh, "epsilon") == ["c"] and _ids(store, fresh, "alpha") == []
    assert KeywordWriter(fresh).check(store).ok

    # Another language is another folder, built from SQL; `rebuild` removes the other folders.
    german = KeywordIndex(tmp_path / "keyword", "german")
    KeywordWriter(german).catch_up(store)
    assert german.path != fresh.path and _ids(store, german, "epsilon") == ["c"]
    assert KeywordWriter(fresh).rebuild(store) == 2
    assert not german.path.exists() and sorted(p.name for p in (tmp_path / "keyword").iterdir()) == [
        "english-v1",
        "english-v1.keeper.lock",
        "english-v1.lock",
    ]
    store.close()


def test_an_index_that_cannot_be_opened_is_reported_by_check_and_rebuilt_by_repair(
    database_url: str, tmp_path: Path
) -> None:
    store = Store(database_url)
    index = KeywordIndex(tmp_path / "keyword")
    store.write_documents([_doc("a", "alpha"), _doc("b", "beta")])
    KeywordWriter(index).catch_up(store)
    (index.path / "meta.json").write_text("garbage")  # corrupt files: tantivy refuses to open them
    reader = KeywordIndex(tmp_path / "keyword", reload_seconds=0)  # it tries again at every search
    assert reader.search(["alpha"], 10) == [] and "Data corrupted" in (reader.open_error or "")
    with pytest.raises(UnreadableIndexError, match=r"cannot be opened .* check --repair"):
        KeywordWriter(index).check(store)
    assert KeywordWriter(index).repair(store).ok
    assert _ids(store, reader, "alpha") == ["a"] and reader.open_error is None
    store.close()


def test_an_index_ahead_of_the_database_is_rebuilt(database_url: str, tmp_path: Path) -> None:
    other = Store(f"sqlite:///{tmp_path / 'other.db'}")
    other.write_documents([_doc(f"x{i}", f"text {i}") for i in range(50)])
    index = KeywordIndex(tmp_path / "keyword")
    KeywordWriter(index).catch_up(other)  # applied seq 50 from another database
    store = Store(database_url)
    store.write_documents([_doc("a", "alpha")])
    KeywordWriter(index).catch_up(store)
    checked = KeywordWriter(index).check(store)
    assert _ids(store, index, "alpha") == ["a"] and checked.ok and checked.indexed == 1
    other.close()
    store.close()


def test_check_finds_what_repair_fixes(database_url: str, tmp_path: Path) -> None:
    store = Store(database_url)
    index = KeywordIndex(tmp_path / "keyword")
    store.write_documents([_doc("a", "alpha"), _doc("b", "beta"), _doc("c", "gamma")])
    KeywordWriter(index).catch_up(store)
    assert KeywordWriter(index).check(store).as_dict() == {
        "chunks": 3,
        "indexed": 3,
        "applied": index.applied(),
        "head": index.applied(),
        "behind": 0,
        "missing": 0,
        "orphans": 0,
        "ok": True,
    }
    store.write_documents([_doc("d", "delta")])
    behind = KeywordWriter(index).check(store)
    # Behind is not wrong (a catch-up completes it, no rebuild), but not ok: it misses the new write.
    assert behind.right and not behind.ok and (behind.behind, behind.missing, behind.indexed) == (1, 0, 3)
    KeywordWriter(index).catch_up(store)

    # Damage the index behind its back: a chunk's terms lost, a stranger's added.
    victim = store.all_chunk_ids()[0]
    raw = tantivy.Index.open(str(index.path))
    raw.register_tokenizer(index.analyzer.name, index.analyzer.tantivy)
    writer = raw.writer(15_000_000, 1)
    writer.delete_documents_by_query(tantivy.Query.term_query(index.schema, "chunk_id", victim))
    stranger = tantivy.Document()
    stranger.add_unsigned("chunk_id", 999_999)
    writer.add_document(stranger)
    writer.commit()
    writer.wait_merging_threads()
    damaged = KeywordWriter(index).check(store)
    assert (damaged.missing, damaged.orphans, damaged.ok) == (1, 1, False)
    assert KeywordWriter(index).repair(store).ok
    assert _ids(store, index, "alpha") == ["a"]
    store.close()


def test_a_reader_sees_commits_after_its_reload(database_url: str, tmp_path: Path) -> None:
    store = Store(database_url)
    writer = KeywordWriter(KeywordIndex(tmp_path / "keyword"))
    reader = KeywordIndex(tmp_path / "keyword", reload_seconds=3600)
    store.write_documents([_doc("a", "alpha")])
    writer.catch_up(store)
    assert _ids(store, reader, "alpha") == ["a"]  # the first search opens the index
    store.write_documents([_doc("b", "alpha beta")])
    writer.catch_up(store)
    assert _ids(store, reader, "beta") == []  # not reloaded yet: its interval has not passed
    reader.reload(force=True)
    assert _ids(store, reader, "beta") == ["b"]
    store.close()


@pytest.mark.parametrize("terms_at_most", [4096, 0], ids=["one term each", "a term set"])
def test_the_filter_is_inside_the_search(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, terms_at_most: int
) -> None:
    monkeypatch.setattr(keyword, "_TERMS_AT_MOST", terms_at_most)  # both ways of matching the allowed chunks
    store = Store(database_url)
    index = KeywordIndex(tmp_path / "keyword")
    # 50 documents mention "gene" often, the 3 allowed ones once: over-fetching would miss them.
    docs = [_doc(f"hot{i}", "gene " * 20) for i in range(50)] + [
        _doc(f"ok{i}", f"gene and other words {i}") for i in range(3)
    ]
    written = store.write_documents(docs)
    KeywordWriter(index).catch_up(store)
    allowed = np.asarray(written.new_chunk_ids[-3:], dtype=np.int64)
    assert sorted(_ids(store, index, "gene", k=3, allowed=allowed)) == ["ok0", "ok1", "ok2"]
    assert _ids(store, index, "gene", k=3, allowed=allowed[:0]) == []
    scores = [s for _, s in index.search(["gene"], 3, allowed)]
    unfiltered = {c: s for c, s in index.search(["gene"], 100)}
    assert np.allclose(sorted(scores), sorted(unfiltered[c] for c in allowed.tolist()))  # BM25 alone ranks
    store.close()


def test_same_results_on_sqlite_and_postgres(tmp_path: Path, postgres_url: str) -> None:
    results = []
    for name, url in (("sqlite", f"sqlite:///{tmp_path / 'same.db'}"), ("postgres", postgres_url)):
        store = Store(url)
        index = KeywordIndex(tmp_path / name)
        store.write_documents([_doc(f"d{i}", f"protein {'cell ' * (i % 5)} gene{i % 3}", f"T{i}") for i in range(40)])
        KeywordWriter(index).catch_up(store)
        store.write_documents([_doc("d3", "protein replaced")])
        store.delete_documents(["d4", "d5"])
        KeywordWriter(index).catch_up(store)
        found = index.search(index.analyzer.query_terms("protein cell gene1"), 20)
        rows = store.chunk_hits([c for c, _ in found])
        results.append([(rows[c].document_id, round(s, 5)) for c, s in found])
        store.close()
    assert results[0] == results[1] and len(results[0]) == 20


def test_files_of_a_commit_killed_midway_do_not_block_the_next(tmp_path: Path) -> None:
    # A kill after a commit wrote its delete file but before it wrote meta.json: the replayed commit
    # has the same opstamp, so the same file name, which tantivy refuses to overwrite.
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    index = KeywordIndex(tmp_path / "keyword")
    store.write_documents([_doc(f"d{i}", f"word{i} common") for i in range(20)])
    KeywordWriter(index).catch_up(store)
    meta = index.path / "meta.json"
    committed = meta.read_bytes()
    store.delete_documents(["d3"])
    before = set(index.path.iterdir())
    KeywordWriter(index).catch_up(store)
    assert any(p.suffix == ".del" for p in set(index.path.iterdir()) - before)
    meta.write_bytes(committed)  # as if killed before the new meta.json landed
    assert KeywordWriter(index).catch_up(store) == 1  # the delete is applied again, from the index's own record
    assert _ids(store, index, "word3") == [] and _ids(store, index, "word4") == ["d4"]
    assert KeywordWriter(index).check(store).ok
    store.close()


def test_a_delete_lost_in_the_commit_is_found_and_applied_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    index = KeywordIndex(tmp_path / "keyword")
    store.write_documents([_doc(f"d{i}", f"word{i} common") for i in range(20)])
    KeywordWriter(index).catch_up(store)
    _found, gone = store.delete_documents(["d3", "d4"])
    # The first delete of real chunks loses one of them, as the lost deletes seen after SIGKILLs did.
    real_delete, lost = Segments.delete, []

    def lossy(self: Segments, chunk_ids: list[int]) -> None:
        if not lost and STATE_ID not in chunk_ids:
            lost.append(chunk_ids[0])
            chunk_ids = chunk_ids[1:]
        real_delete(self, chunk_ids)

    monkeypatch.setattr(Segments, "delete", lossy)
    assert KeywordWriter(index).catch_up(store) == 2
    assert lost == [gone[0]] and "deleted chunks still held" in caplog.text
    assert index.search(index.analyzer.query_terms("word3 word4"), 10) == []
    assert KeywordWriter(index).check(store).ok
    store.close()
