"""`min_score` through LangChain and LlamaIndex, and LangChain's relevance rising with the server's
score, against the session's real `semsearch serve` (default hybrid mode: scores in [0, 1])."""

from __future__ import annotations

import asyncio

import pytest

pytest.importorskip("langchain_core", reason="pip install 'semsearch[langchain]'")
pytest.importorskip("llama_index.core", reason="pip install 'semsearch[llamaindex]'")

from llama_index.core.schema import QueryBundle
from llama_index.core.vector_stores.types import VectorStoreQuery

from api.client.langchain import SemsearchVectorStore
from api.client.llamaindex import SemsearchRetriever
from api.client.llamaindex import SemsearchVectorStore as LlamaStore

TEXTS = ["the cat sat on the mat", "a cat and a dog", "the sun shone", "a gene mutated", "the moon rose", "cats purr"]
QUERY = "the cat sat on the mat"


@pytest.fixture
def url(empty_server: str) -> str:
    SemsearchVectorStore(empty_server).add_texts(TEXTS, ids=[f"t{i}" for i in range(len(TEXTS))])
    return empty_server


def test_langchain_min_score_and_a_relevance_that_rises_with_the_score(url: str) -> None:
    store = SemsearchVectorStore(url)
    every = store.similarity_search_with_score(QUERY, k=6)
    scores = [s for _, s in every]
    assert scores == sorted(scores, reverse=True) and all(0.0 <= s <= 1.0 for s in scores)
    cut = scores[2]
    kept = store.similarity_search_with_score(QUERY, k=6, min_score=cut)
    assert [d.id for d, _ in kept] == [d.id for d, s in every if s >= cut]
    assert [d.id for d, _ in asyncio.run(store.asimilarity_search_with_score(QUERY, k=6, min_score=cut))] == [
        d.id for d, _ in kept
    ]
    relevance = store.similarity_search_with_relevance_scores(QUERY, k=6)
    assert [r for _, r in relevance] == pytest.approx(scores)  # hybrid scores are relevances as they are
    above = store.similarity_search_with_relevance_scores(QUERY, k=6, score_threshold=cut)
    assert [d.id for d, _ in above] == [d.id for d, _ in kept]
    fn = SemsearchVectorStore(url, mode="keyword")._select_relevance_score_fn()
    assert [fn(s) for s in (0.0, 1.0, 5.0, 50.0)] == sorted(fn(s) for s in (0.0, 1.0, 5.0, 50.0))
    assert 0.0 <= fn(0.0) < fn(50.0) < 1.0
    dense = SemsearchVectorStore(url, mode="dense")._select_relevance_score_fn()
    assert dense(-0.2) == 0.0 and dense(0.7) == pytest.approx(0.7)


def test_llamaindex_min_score_on_the_retriever_and_the_store(url: str) -> None:
    every = SemsearchRetriever(url, similarity_top_k=6).retrieve(QUERY)
    cut = sorted((n.score or 0.0 for n in every), reverse=True)[2]
    kept = SemsearchRetriever(url, similarity_top_k=6, min_score=cut).retrieve(QUERY)
    assert [n.node.node_id for n in kept] == [n.node.node_id for n in every if (n.score or 0.0) >= cut]
    found = asyncio.run(SemsearchRetriever(url, similarity_top_k=6, min_score=cut).aretrieve(QueryBundle(QUERY)))
    assert [n.node.node_id for n in found] == [n.node.node_id for n in kept]
    store = LlamaStore(base_url=url, min_score=cut)
    result = store.query(VectorStoreQuery(query_str=QUERY, similarity_top_k=6))
    assert result.ids == [n.node.node_id for n in kept]
    assert LlamaStore(base_url=url).query(VectorStoreQuery(query_str=QUERY, similarity_top_k=6), min_score=cut).ids == (
        result.ids
    )
