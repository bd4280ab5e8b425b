"""The searcher: best chunk per document, rows decide what exists, enough documents come back."""

from __future__ import annotations

import numpy as np

from search.encoder import Encoder
from search.index import VectorIndex
from search.searcher import Searcher
from search.settings import Settings
from search.store import ChunkIn, DocumentIn, Store


def _setup(settings: Settings, encoder: Encoder, docs: dict[str, list[str]]) -> tuple[Searcher, dict[str, list[int]]]:
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
    return Searcher(encoder, index, store), ids


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
