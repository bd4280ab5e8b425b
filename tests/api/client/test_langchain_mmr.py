"""The LangChain store's searches by vector and by maximal marginal relevance (sync and async), against
the session's real `semsearch serve`: each was a bare NotImplementedError before."""

from __future__ import annotations

import asyncio

import pytest

pytest.importorskip("langchain_core", reason="pip install 'semsearch[langchain]'")

from api.client.langchain import SemsearchVectorStore
from api.client.types import InvalidRequestError

COPY = "the cat sat on the mat by the door"
OTHERS = ["a dog ran in the park", "the sun shone in the sky", "a gene mutated in the cell", "the moon rose at night"]


@pytest.fixture
def store(empty_server: str) -> SemsearchVectorStore:
    store = SemsearchVectorStore(empty_server)
    texts = [COPY] * 5 + OTHERS
    store.add_texts(texts, ids=[f"copy{i}" for i in range(5)] + [f"other{i}" for i in range(len(OTHERS))])
    return store


def _copies(docs: list[object]) -> int:
    return sum(str(getattr(d, "id", "")).startswith("copy") for d in docs)


def test_by_vector_finds_what_the_text_finds(store: SemsearchVectorStore) -> None:
    vector = store.embeddings.embed_query("a gene mutated")
    by_text = store.similarity_search_with_score("a gene mutated", k=4, mode="dense")
    by_vector = store.similarity_search_with_score_by_vector(vector, k=4)
    assert [d.id for d, _ in by_vector] == [d.id for d, _ in by_text]
    assert [s for _, s in by_vector] == pytest.approx([s for _, s in by_text], abs=1e-5)
    assert [d.id for d in store.similarity_search_by_vector(vector, k=4)] == [d.id for d, _ in by_text]
    found = asyncio.run(store.asimilarity_search_by_vector(vector, k=4))
    assert [d.id for d in found] == [d.id for d, _ in by_text]
    assert [d.id for d in store.similarity_search_by_vector(vector, k=2, filter={"nothing": 1})] == []


def test_mmr_pages_hold_fewer_copies(store: SemsearchVectorStore) -> None:
    vector = store.embeddings.embed_query(COPY)
    plain = store.similarity_search(COPY, k=4, mode="dense")
    assert _copies(plain) == 4
    # The tiny BERT's vectors are all alike: novelty alone (lambda 0) shows the effect plainly.
    pages = [
        store.max_marginal_relevance_search(COPY, k=4, fetch_k=9, lambda_mult=0.0),
        store.max_marginal_relevance_search_by_vector(vector, k=4, fetch_k=9, lambda_mult=0.0),
        asyncio.run(store.amax_marginal_relevance_search(COPY, k=4, fetch_k=9, lambda_mult=0.0)),
        asyncio.run(store.amax_marginal_relevance_search_by_vector(vector, k=4, fetch_k=9, lambda_mult=0.0)),
        store.as_retriever(search_type="mmr", search_kwargs={"k": 4, "fetch_k": 9, "lambda_mult": 0.0}).invoke(COPY),
    ]
    for page in pages:
        assert len(page) == 4 and _copies(page) == 1, [d.id for d in page]
    # lambda 1 is the plain order; a fetch_k below k is raised to k.
    same = store.max_marginal_relevance_search(COPY, k=4, fetch_k=2, lambda_mult=1.0, mode="dense")
    assert [d.id for d in same] == [d.id for d in plain]


def test_bad_arguments_are_refused_by_name(store: SemsearchVectorStore) -> None:
    with pytest.raises(InvalidRequestError, match="vector has 3 numbers"):
        store.similarity_search_by_vector([0.1, 0.2, 0.3], k=2)
    with pytest.raises(InvalidRequestError, match="lambda"):
        store.max_marginal_relevance_search(COPY, k=2, lambda_mult=2.0)
    with pytest.raises(InvalidRequestError, match="dense mode only"):
        store.similarity_search_by_vector(store.embeddings.embed_query(COPY), k=2, mode="keyword")
