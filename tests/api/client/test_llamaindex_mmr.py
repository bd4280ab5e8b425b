"""The LlamaIndex store's query modes and embedding queries against the session's real `semsearch serve`:
MMR was silently a plain search before, and a query with only an embedding was refused."""

from __future__ import annotations

import asyncio

import pytest

pytest.importorskip("llama_index.core", reason="pip install 'semsearch[llamaindex]'")

from llama_index.core import VectorStoreIndex
from llama_index.core.vector_stores.types import VectorStoreQuery, VectorStoreQueryMode

from api.client import SemsearchClient
from api.client.llamaindex import SemsearchEmbedding, SemsearchVectorStore
from api.client.llamaindex_query import search_args

COPY = "the cat sat on the mat by the door"
OTHERS = ["a dog ran in the park", "the sun shone in the sky", "a gene mutated in the cell", "the moon rose at night"]


@pytest.fixture
def store(empty_server: str) -> SemsearchVectorStore:
    docs = [{"id": f"copy{i}", "text": COPY} for i in range(5)]
    docs += [{"id": f"other{i}", "text": t} for i, t in enumerate(OTHERS)]
    with SemsearchClient(empty_server) as client:
        client.put_documents(docs, wait=True)
    return SemsearchVectorStore(base_url=empty_server)


def _copies(ids: list[str]) -> int:
    return sum(i.startswith("copy") for i in ids)


def test_mmr_mode_diversifies_with_mmr_threshold_as_lambda(store: SemsearchVectorStore) -> None:
    index = VectorStoreIndex.from_vector_store(store, embed_model=SemsearchEmbedding(base_url=store.base_url))
    plain = [n.node.node_id for n in index.as_retriever(similarity_top_k=4).retrieve(COPY)]
    assert _copies(plain) == 4
    # The tiny BERT's vectors are all alike: novelty alone (threshold 0) shows the effect plainly.
    mmr = index.as_retriever(
        similarity_top_k=4, vector_store_query_mode="mmr", vector_store_kwargs={"mmr_threshold": 0.0}
    )
    diverse = [n.node.node_id for n in mmr.retrieve(COPY)]
    assert len(diverse) == 4 and _copies(diverse) == 1, diverse
    query = VectorStoreQuery(query_str=COPY, similarity_top_k=4, mode=VectorStoreQueryMode.MMR, mmr_threshold=1.0)
    assert store.query(query).ids == plain  # threshold 1: the plain order
    found = asyncio.run(
        store.aquery(VectorStoreQuery(query_str=COPY, similarity_top_k=4, mode="mmr", mmr_threshold=0.0))
    )
    assert found.ids == diverse


def test_a_query_with_only_an_embedding(store: SemsearchVectorStore) -> None:
    embedding = SemsearchEmbedding(base_url=store.base_url).get_query_embedding("a gene mutated in the cell")
    store = SemsearchVectorStore(base_url=store.base_url, mode="dense")  # the mode of a vector search
    by_text = store.query(VectorStoreQuery(query_str="a gene mutated in the cell", similarity_top_k=3))
    by_vector = store.query(VectorStoreQuery(query_embedding=embedding, similarity_top_k=3))
    assert by_vector.ids == by_text.ids and by_vector.ids[0] == "other2"
    assert by_vector.similarities == pytest.approx(by_text.similarities, abs=1e-5)
    assert asyncio.run(store.aquery(VectorStoreQuery(query_embedding=embedding, similarity_top_k=3))).ids == by_text.ids


def test_modes_without_a_counterpart_are_refused_by_name() -> None:
    assert search_args(VectorStoreQuery(query_str="x", mode="text_search"), None, {})["mode"] == "keyword"
    assert search_args(VectorStoreQuery(query_str="x", mode="hybrid"), "dense", {})["mode"] == "hybrid"
    assert search_args(VectorStoreQuery(query_str="x", similarity_top_k=3, mode="mmr"), None, {})["mmr"] == {
        "lambda": 0.5,
        "fetch_k": 12,
    }
    assert search_args(VectorStoreQuery(query_str="x", mode="mmr"), None, {"mmr_prefetch_k": 7})["mmr"]["fetch_k"] == 7
    with pytest.raises(ValueError, match="no 'svm' query mode"):
        search_args(VectorStoreQuery(query_str="x", mode="svm"), None, {})
    with pytest.raises(ValueError, match="needs its text"):
        search_args(VectorStoreQuery(query_embedding=[0.1], mode="text_search"), None, {})
    with pytest.raises(ValueError, match="query_str"):
        search_args(VectorStoreQuery(), None, {})
