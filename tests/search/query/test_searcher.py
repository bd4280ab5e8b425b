"""The searcher: best chunk per document, rows decide what exists, enough documents come back."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from dense_path import Dense, dense, open_dense

from search.dense.index import VectorIndex
from search.dense.segments import SegmentView
from search.embedding.encoder import Encoder
from search.query.searcher import Searcher
from search.settings import Settings
from search.storage.records import ChunkIn, DocumentIn
from search.storage.store import Store


def _setup(settings: Settings, encoder: Encoder, docs: dict[str, list[str]]) -> tuple[Dense, dict[str, list[int]]]:
    store = Store(settings.resolved_database_url)
    index = VectorIndex(encoder.dim)
    ids: dict[str, list[int]] = {}
    for ext, parts in docs.items():
        chunks = []
        offset = 0
        for i, part in enumerate(parts):
            chunks.append(ChunkIn(i, part, offset, offset + len(part)))
            offset += len(part) + 1
        result = store.write_documents([(DocumentIn(ext, " ".join(parts), title=ext.upper()), chunks)])
        ids[ext] = result.new_chunk_ids
        index.add(np.asarray(result.new_chunk_ids), encoder.encode(parts))
    return dense(Searcher(encoder, SegmentView(index, 0), store), settings.keyword_dir), ids


DOCS = {
    "pets": ["the cat sat on the mat", "a dog ran in the park"],
    "space": ["the sun and the moon", "a red star in the sky"],
    "bio": ["gene protein cell", "cancer patients study results", "virus vaccine dose"],
}


def test_one_hit_per_document_with_its_best_chunk(settings: Settings, tiny_encoder: Encoder) -> None:
    searcher, ids = _setup(settings, tiny_encoder, DOCS)
    hits = searcher.search("cancer patients study results", k=10)
    assert len(hits) == 3 and len({h.id for h in hits}) == 3
    top = hits[0]
    assert (top.id, top.chunk_id, top.title) == ("bio", ids["bio"][1], "BIO")
    assert top.text == "cancer patients study results" and top.score > 0.999
    assert top.start == len("gene protein cell ") and top.end == top.start + len(top.text)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_k_documents_even_when_chunks_crowd_the_top(settings: Settings, tiny_encoder: Encoder) -> None:
    crowd = {"crowd": [f"the cat sat on the mat {i}" for i in range(40)]}
    crowd |= {f"d{i}": [f"water fire earth wind {i}"] for i in range(5)}
    searcher, _ = _setup(settings, tiny_encoder, crowd)
    hits = searcher.search("the cat sat on the mat", k=4)
    assert hits[0].id == "crowd" and len(hits) == 4 and len({h.id for h in hits}) == 4


def test_rows_decide_a_deleted_document_never_shows(settings: Settings, tiny_encoder: Encoder) -> None:
    searcher, _ = _setup(settings, tiny_encoder, DOCS)
    searcher.store.delete_documents(["bio"])
    # The vectors are still in the index; the missing rows keep them out of the results.
    assert searcher.index.ntotal == 7
    hits = searcher.search("cancer patients study results", k=10)
    assert "bio" not in {h.id for h in hits} and len(hits) == 2


def test_batch_queries_equal_single_ones(settings: Settings, tiny_encoder: Encoder) -> None:
    searcher, _ = _setup(settings, tiny_encoder, DOCS)
    queries = ["a dog in the park", "virus vaccine", "moon and sun"]
    batched = searcher.search_many(queries, k=2)
    for query, hits in zip(queries, batched, strict=True):
        single = searcher.search(query, k=2)
        assert [h.id for h in hits] == [h.id for h in single]
        assert np.allclose([h.score for h in hits], [h.score for h in single], atol=1e-5)


def _corpus(url: str, encoder: Encoder, factory: str, keyword_dir: Path) -> Dense:
    """60 documents like the query (kind "near") and 12 unlike it (kind "far", with a year)."""
    store = Store(url)
    docs = [(f"near{i}", f"the cat sat on the mat {i}", {"kind": "near"}) for i in range(60)]
    docs += [(f"far{i}", f"cancer patients study results {i}", {"kind": "far", "year": 2000 + i}) for i in range(12)]
    result = store.write_documents(
        [(DocumentIn(ext, text, metadata=meta), [ChunkIn(0, text, 0, len(text))]) for ext, text, meta in docs]
    )
    index = VectorIndex(encoder.dim, factory)
    index.add(np.asarray(result.new_chunk_ids), encoder.encode([text for _, text, _ in docs]))
    if index.nprobe is not None:
        index.set_nprobe(1)
    return dense(Searcher(encoder, SegmentView(index, 0), store), keyword_dir)


@pytest.mark.parametrize("factory", ["Flat", "IVF8,Flat"])
def test_a_filter_applies_inside_the_search(
    database_url: str, tiny_encoder: Encoder, factory: str, tmp_path: Path
) -> None:
    searcher = _corpus(database_url, tiny_encoder, factory, tmp_path / "keyword")
    query = "the cat sat on the mat"
    unfiltered = searcher.search(query, k=5)
    assert {h.metadata["kind"] for h in unfiltered} == {"near"}  # the far ones are not in an unfiltered top 5
    hits = searcher.search(query, k=5, filter={"kind": "far"})
    assert len(hits) == 5 and {h.metadata["kind"] for h in hits} == {"far"}
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    # The best 5 of the 12 far documents, as an exact (numpy) search over just them ranks them.
    far = [f"cancer patients study results {i}" for i in range(12)]
    exact = tiny_encoder.encode(far) @ tiny_encoder.encode([query])[0]
    assert [h.id for h in hits] == [f"far{i}" for i in np.argsort(-exact)[:5]]
    assert np.allclose([h.score for h in hits], np.sort(exact)[::-1][:5], atol=1e-5)
    ranged = searcher.search(query, k=10, filter={"kind": {"$in": ["far", "other"]}, "year": {"$gte": 2009}})
    assert sorted(h.id for h in ranged) == ["far10", "far11", "far9"]
    assert searcher.search(query, k=5, filter={"kind": "x'; DROP TABLE documents; --"}) == []
    assert searcher.store.counts() == {"documents": 72, "chunks": 72}
    searcher.store.close()


def test_filters_keep_best_chunk_per_document_and_batches(settings: Settings, tiny_encoder: Encoder) -> None:
    searcher, ids = _setup(settings, tiny_encoder, DOCS)
    searcher.store.update_metadata({"bio": {"kind": "science"}, "pets": {"kind": "animal"}})
    hits = searcher.search("cancer patients study results", k=3, filter={"kind": {"$in": ["animal", "science"]}})
    assert [h.id for h in hits][:1] == ["bio"] and {h.id for h in hits} == {"bio", "pets"}
    assert hits[0].chunk_id == ids["bio"][1]
    lists = searcher.search_many(["moon", "dog"], k=5, filter={"kind": "animal"})
    assert [[h.id for h in hits] for hits in lists] == [["pets"], ["pets"]]
    vector = tiny_encoder.encode(["moon"])[0]
    assert [h.id for h in searcher.search_vector(vector, 5, filter={"kind": "none"})] == []
    with pytest.raises(ValueError, match="filter field 'kind': \\$gt needs a number"):
        searcher.search("moon", k=3, filter={"kind": {"$gt": "a"}})


def test_compressed_codes_are_re_ranked_with_the_exact_vectors(settings: Settings, tiny_encoder: Encoder) -> None:
    from indexer.ingest.chunking import Chunker
    from indexer.write.pipeline import Indexer
    from search.dense.catalog import IndexCatalog
    from search.storage.vectors import VectorRows

    store = Store(settings.resolved_database_url)
    words = ["cat", "dog", "gene", "virus", "star", "water", "tree", "fire"]
    docs = [
        DocumentIn(f"d{i}", f"{words[i % 8]} {words[(i * 3) % 8]} {words[(i * 5) % 7]} text {i}") for i in range(60)
    ]
    indexer = Indexer(tiny_encoder, store, IndexCatalog(store, settings.index_dir), Chunker(tiny_encoder), "SQ4")
    indexer.run(docs)
    assert indexer.publisher.sync(force=True).index_type == "SQ4"  # 4-bit codes: coarse scores
    searcher = open_dense(settings, tiny_encoder, store)
    query = tiny_encoder.encode(["gene virus water"])[0]
    hits = searcher.search_vector(query, 10)
    ids, vectors = VectorRows(store, tiny_encoder.space.key, tiny_encoder.dim).fetch([h.chunk_id for h in hits])
    exact = dict(zip(ids.tolist(), (vectors @ query).tolist(), strict=True))
    # Scores are the float vectors' cosines, not the codes', and the order is theirs.
    assert [h.score for h in hits] == pytest.approx([exact[h.chunk_id] for h in hits], abs=1e-6)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    raw, _ = searcher.index.search(query, 10)
    assert not np.allclose(raw[0], [h.score for h in hits], atol=1e-4)  # the codes alone score otherwise
    store.close()


def test_a_broad_filter_re_ranks_only_the_candidates_that_pass_it(
    settings: Settings, tiny_encoder: Encoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    from indexer.ingest.chunking import Chunker
    from indexer.write.pipeline import Indexer
    from search.dense.catalog import IndexCatalog
    from search.query import planning
    from search.storage.vectors import VectorRows

    store = Store(settings.resolved_database_url)
    words = ["cat", "dog", "gene", "virus", "star", "water", "tree", "fire"]
    docs = [
        DocumentIn(f"d{i}", f"{words[i % 8]} {words[(i * 3) % 8]} text {i}", metadata={"half": i % 2 == 0})
        for i in range(80)
    ]
    indexer = Indexer(tiny_encoder, store, IndexCatalog(store, settings.index_dir), Chunker(tiny_encoder), "SQ4")
    indexer.run(docs)
    assert indexer.publisher.sync(force=True).index_type == "SQ4"
    searcher = open_dense(settings, tiny_encoder, store)
    read: list[int] = []
    fetch = VectorRows.fetch
    monkeypatch.setattr(VectorRows, "fetch", lambda self, ids: read.extend(ids) or fetch(self, ids))
    query = tiny_encoder.encode(["gene water"])[0]
    broad = searcher.search_vector(query, 10, {"half": True})
    owners = store.chunk_owners(read)
    # Vectors were read for the re-rank, and only of chunks whose document passes the filter.
    assert read and all(int(owners[c].document_id[1:]) % 2 == 0 for c in read)
    monkeypatch.setattr(planning, "BROAD", 2.0)  # inside the search instead: the same exact ranking
    inside = searcher.search_vector(query, 10, {"half": True})
    assert [(h.id, round(h.score, 5)) for h in broad] == [(h.id, round(h.score, 5)) for h in inside]
    assert len(broad) == 10
    store.close()


def test_broad_and_narrow_filters_give_what_filtering_inside_the_search_gives(
    settings: Settings, tiny_encoder: Encoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    from search.query import planning

    store = Store(settings.resolved_database_url)
    words = ["cat", "dog", "gene", "virus", "star", "water", "tree", "fire"]
    index = VectorIndex(tiny_encoder.dim)
    for i in range(80):
        text = f"{words[i % 8]} {words[(i * 3) % 8]} text {i}"
        meta = {"half": i % 2 == 0, "tenth": i % 10}
        result = store.write_documents([(DocumentIn(f"d{i}", text, metadata=meta), [ChunkIn(0, text, 0, len(text))])])
        index.add(np.asarray(result.new_chunk_ids), tiny_encoder.encode([text]))
    searcher = dense(Searcher(tiny_encoder, SegmentView(index, 0), store), settings.keyword_dir)
    query = tiny_encoder.encode(["gene water"])[0]
    checked: list[int] = []
    original = Searcher._search_checked

    def spy(self: Searcher, *args: object) -> object:
        checked.append(1)
        return original(self, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(Searcher, "_search_checked", spy)
    broad = searcher.search_vector(query, 10, {"half": True})
    narrow = searcher.search_vector(query, 5, {"tenth": 3})
    assert len(checked) == 1, "only the broad filter is checked on over-fetched results"
    monkeypatch.setattr(planning, "BROAD", 2.0)  # every filter inside the search
    assert [h.id for h in searcher.search_vector(query, 10, {"half": True})] == [h.id for h in broad]
    assert [h.id for h in searcher.search_vector(query, 5, {"tenth": 3})] == [h.id for h in narrow]
    assert len(broad) == 10 and all(int(h.id[1:]) % 2 == 0 for h in broad)
    assert len(narrow) == 5 and all(int(h.id[1:]) % 10 == 3 for h in narrow)
    store.close()


def test_a_few_matches_are_scored_from_their_vectors_as_the_index_would_rank_them(
    settings: Settings, database_url: str, tiny_encoder: Encoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    from indexer.write.pipeline import open_indexer
    from search.dense.segments import SegmentView
    from search.filters import parse_filter
    from search.query import searcher as searcher_module

    live = settings.model_copy(update={"database_url": database_url})
    indexer = open_indexer(live, tiny_encoder)
    words = ["cat", "dog", "gene", "virus", "star", "water", "tree", "fire"]
    texts = [f"{words[i % 8]} {words[(i * 3) % 8]} text {i}" for i in range(120)]
    indexer.run([DocumentIn(f"d{i}", text, "", {"tenth": i % 10}) for i, text in enumerate(texts)])
    indexer.publish()
    searcher = open_dense(live, tiny_encoder, indexer.store)
    searched: list[object] = []
    real = SegmentView.search
    monkeypatch.setattr(SegmentView, "search", lambda *a, **kw: searched.append(kw.get("ids")) or real(*a, **kw))
    narrow = {"tenth": 3}  # a tenth: narrow (planning.BROAD)
    few = searcher.matching(parse_filter(narrow))
    assert few.vectors is not None and len(few.ids) == len(few.vectors) == 12
    hits = searcher.search("gene water", k=5, filter=narrow)
    assert searched == [], "a few matches are scored from their vectors, with no index search"
    # Past the few-matches bound the ids alone restrict the (exact) index search: the same ranking.
    monkeypatch.setattr(searcher_module, "_EXACT_AMONG", 6)
    assert searcher.matching(parse_filter(narrow)).vectors is None
    again = searcher.search("gene water", k=5, filter=narrow)
    assert [(h.id, round(h.score, 5)) for h in again] == [(h.id, round(h.score, 5)) for h in hits]
    assert len(hits) == 5 and all(int(h.id[1:]) % 10 == 3 for h in hits) and len(searched) == 1
    indexer.store.close()
