"""MMR and by-vector search through the hybrid searcher, on SQLite and PostgreSQL, with the tiny BERT:
a corpus where several documents are copies of one text (identical vectors), so a plain page fills
with them and an MMR page should not."""

from __future__ import annotations

import random

import pytest

from indexer.write.pipeline import open_indexer
from search.components import open_hybrid
from search.query.hybrid import HybridSearcher
from search.query.mmr import MMR
from search.settings import Settings
from search.storage.records import DocumentIn

WORDS = ["cat", "dog", "bird", "fish", "tree", "sun", "moon", "star", "water", "fire", "earth", "wind", "gene", "cell"]
COPY = "the cat sat on the mat by the door"
COPIES = {f"copy{i}" for i in range(6)}


@pytest.fixture
def hybrid(settings: Settings, database_url: str) -> HybridSearcher:
    rng = random.Random(5)
    docs = [DocumentIn(f"copy{i}", COPY, "", {"kind": "copy"}) for i in range(6)]
    docs += [DocumentIn(f"d{i}", " ".join(rng.choices(WORDS, k=12)) + " cat", "", {"kind": "other"}) for i in range(30)]
    live = settings.model_copy(update={"database_url": database_url})
    indexer = open_indexer(live)
    indexer.run(docs)
    indexer.store.close()
    return open_hybrid(live)


# The tiny BERT's random vectors are all alike (cosines about 0.95 between unrelated texts): against
# scaled BM25 or fused relevance only novelty alone (lambda 0) outweighs the copies' relevance.
@pytest.mark.parametrize(("mode", "lambda_"), [("dense", 0.5), ("dense", 0.0), ("keyword", 0.0), ("hybrid", 0.0)])
def test_an_mmr_page_holds_fewer_copies_than_the_plain_one(hybrid: HybridSearcher, mode: str, lambda_: float) -> None:
    plain = hybrid.search(COPY, k=5, mode=mode)
    diverse = hybrid.search(COPY, k=5, mode=mode, mmr=MMR(lambda_=lambda_, fetch_k=30))
    plain_copies = sum(h.id in COPIES for h in plain)
    diverse_copies = sum(h.id in COPIES for h in diverse)
    assert plain_copies >= 4, [h.id for h in plain]
    assert diverse_copies < plain_copies and diverse_copies >= 1, [h.id for h in diverse]
    assert diverse[0].id == plain[0].id  # the first pick is the most relevant
    assert len(diverse) == 5 and len({h.id for h in diverse}) == 5


def test_lambda_one_is_the_plain_page(hybrid: HybridSearcher) -> None:
    for mode in ("dense", "keyword", "hybrid"):
        plain = hybrid.search(COPY, k=5, mode=mode)
        same = hybrid.search(COPY, k=5, mode=mode, mmr=MMR(lambda_=1.0, fetch_k=20))
        assert [(h.id, h.score) for h in same] == [(h.id, h.score) for h in plain], mode


def test_mmr_keeps_the_filter_and_its_bounds(hybrid: HybridSearcher) -> None:
    hits = hybrid.search(COPY, k=4, mode="dense", filter={"kind": "other"}, mmr=MMR(lambda_=0.3, fetch_k=10))
    assert len(hits) == 4 and all(h.metadata["kind"] == "other" for h in hits)
    with pytest.raises(ValueError, match="fetch_k"):
        hybrid.search(COPY, k=10, mmr=MMR(fetch_k=5))


def test_search_by_vector_equals_search_by_the_texts_vector(hybrid: HybridSearcher) -> None:
    query = "a bird in the tree"
    vector = hybrid.dense.encoder.encode([query])[0]
    by_text = hybrid.search(query, k=8, mode="dense")
    by_vector = hybrid.search_by_vector(vector, k=8)
    assert [(h.id, h.chunk_id, h.score) for h in by_vector] == [(h.id, h.chunk_id, h.score) for h in by_text]
    diverse = hybrid.search_by_vector(vector, k=5, mmr=MMR(lambda_=0.5, fetch_k=20))
    same = hybrid.search(query, k=5, mode="dense", mmr=MMR(lambda_=0.5, fetch_k=20))
    assert [(h.id, h.score) for h in diverse] == [(h.id, h.score) for h in same]
