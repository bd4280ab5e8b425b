"""LlamaIndex pipelines over a real `semsearch serve`: an index from the store, retrieval with filters,
a query engine, LlamaIndex's own ingestion and deletion, and the retriever on its own."""

from __future__ import annotations

import pytest

pytest.importorskip("llama_index.core", reason="pip install 'semsearch[llamaindex]'")

from llama_index.core import Document, StorageContext, VectorStoreIndex
from llama_index.core.llms import MockLLM
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.vector_stores.types import (
    FilterCondition,
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
)

from api.client import SemsearchClient
from api.client.llamaindex import (
    SemsearchEmbedding,
    SemsearchRetriever,
    SemsearchVectorStore,
    to_semsearch_filter,
)

CAT = "Dogs bark at night. The cat sat on the mat. Birds fly south."
DOCS = [
    {"id": "pets", "title": "Pets", "text": CAT, "metadata": {"kind": "animal", "year": 2001}},
    {"id": "space", "text": "the sun and the moon and a star in the sky", "metadata": {"kind": "sky", "year": 2015}},
    {"id": "bio", "text": "cancer patients study results", "metadata": {"kind": "science", "year": 2019}},
]


@pytest.fixture
def served(empty_server: str) -> str:
    with SemsearchClient(empty_server) as client:
        client.put_documents(DOCS, wait=True)
    return empty_server


def test_an_index_from_the_store_retrieves_nodes_for_citations(served: str) -> None:
    store = SemsearchVectorStore(base_url=served)
    index = VectorStoreIndex.from_vector_store(store, embed_model=SemsearchEmbedding(base_url=served))
    nodes = index.as_retriever(similarity_top_k=2).retrieve(CAT)
    assert nodes[0].node.node_id == "pets" and len(nodes) == 2
    top = nodes[0]
    with SemsearchClient(served) as client:
        assert top.score == client.search(CAT, top_k=1).results[0].score  # the server's own score
    assert top.node.get_content() == CAT
    assert top.node.metadata["kind"] == "animal" and top.node.metadata["year"] == 2001
    assert (top.node.start_char_idx, top.node.end_char_idx) == (0, len(CAT))
    assert top.node.ref_doc_id == "pets"
    # The chunk's search facts ride along, but out of what an LLM is shown.
    assert top.node.metadata["semsearch"]["title"] == "Pets"
    assert "semsearch" not in top.node.get_metadata_str(mode="llm")

    filters = MetadataFilters(
        filters=[
            MetadataFilter(key="year", value=2010, operator=FilterOperator.GTE),
            MetadataFilter(key="kind", value=["sky", "animal"], operator=FilterOperator.IN),
        ]
    )
    filtered = index.as_retriever(similarity_top_k=3, filters=filters).retrieve(CAT)
    assert [n.node.node_id for n in filtered] == ["space"]


def test_a_query_engine_answers_from_retrieved_chunks(served: str) -> None:
    store = SemsearchVectorStore(base_url=served)
    index = VectorStoreIndex.from_vector_store(store, embed_model=SemsearchEmbedding(base_url=served))
    response = index.as_query_engine(llm=MockLLM(), similarity_top_k=1).query("cancer patients study results")
    assert [n.node.node_id for n in response.source_nodes] == ["bio"]
    # MockLLM echoes its prompt: the retrieved chunk reached the LLM.
    assert "cancer patients study results" in str(response)


def test_documents_ingested_and_deleted_through_llamaindex(empty_server: str) -> None:
    store = SemsearchVectorStore(base_url=empty_server)
    context = StorageContext.from_defaults(vector_store=store)
    doc = Document(text="gene protein cell. virus vaccine dose.", metadata={"kind": "science"}, doc_id="paper-1")
    index = VectorStoreIndex.from_documents(
        [doc], storage_context=context, embed_model=SemsearchEmbedding(base_url=empty_server)
    )
    nodes = index.as_retriever(similarity_top_k=1).retrieve("gene protein cell. virus vaccine dose.")
    assert nodes[0].node.ref_doc_id == "paper-1" and nodes[0].node.metadata["kind"] == "science"
    assert "ref_doc_id" not in nodes[0].node.metadata  # the store's own key does not leak into results
    assert [n.node_id for n in store.get_nodes([nodes[0].node.node_id, "nope"])] == [nodes[0].node.node_id]
    index.delete_ref_doc("paper-1")
    assert index.as_retriever(similarity_top_k=1).retrieve("gene protein cell") == []


async def test_the_retriever_on_its_own(served: str) -> None:
    retriever = SemsearchRetriever(served, top_k=3, filters={"kind": {"$in": ["science", "sky"]}})
    ids = [n.node.node_id for n in retriever.retrieve("cancer patients study results")]
    assert ids[0] == "bio" and set(ids) == {"bio", "space"}
    engine = RetrieverQueryEngine.from_args(retriever, llm=MockLLM())
    response = await engine.aquery("the sun and the moon and a star in the sky")
    assert response.source_nodes[0].node.node_id == "space"
    assert response.source_nodes[0].node.end_char_idx == len(DOCS[1]["text"])


def test_filters_semsearch_cannot_express_are_refused_by_name() -> None:
    for operator in (FilterOperator.TEXT_MATCH, FilterOperator.CONTAINS, FilterOperator.ANY):
        text = MetadataFilters(filters=[MetadataFilter(key="kind", value="x", operator=operator)])
        with pytest.raises(ValueError, match=f"filter on 'kind': semsearch has no '{operator.value}' operator"):
            to_semsearch_filter(text)
    window = MetadataFilters(
        filters=[
            MetadataFilter(key="year", value=2000, operator=FilterOperator.GTE),
            MetadataFilter(key="year", value=2010, operator=FilterOperator.LT),
        ]
    )
    assert to_semsearch_filter(window) == {"year": {"$gte": 2000, "$lt": 2010}}


def _f(key: str, value: object, operator: FilterOperator = FilterOperator.EQ) -> MetadataFilter:
    return MetadataFilter(key=key, value=value, operator=operator)  # type: ignore[arg-type]


def test_the_whole_llamaindex_vocabulary_translates() -> None:
    ne = MetadataFilters(filters=[_f("kind", "x", FilterOperator.NE), _f("kind", ["a"], FilterOperator.NIN)])
    assert to_semsearch_filter(ne) == {"kind": {"$ne": "x", "$nin": ["a"]}}
    either = MetadataFilters(filters=[_f("a", 1), _f("b", [2, 3], FilterOperator.IN)], condition=FilterCondition.OR)
    assert to_semsearch_filter(either) == {"$or": [{"a": 1}, {"b": {"$in": [2, 3]}}]}
    neither = MetadataFilters(filters=[_f("a", 1), _f("b", 2, FilterOperator.GT)], condition=FilterCondition.NOT)
    assert to_semsearch_filter(neither) == {"$not": {"$or": [{"a": 1}, {"b": {"$gt": 2}}]}}
    nested = MetadataFilters(filters=[_f("a", 1), either, _f("a", 2)])  # the same key twice: $and
    assert to_semsearch_filter(nested) == {"$and": [{"a": 1}, {"$or": [{"a": 1}, {"b": {"$in": [2, 3]}}]}, {"a": 2}]}
    empty = MetadataFilters(filters=[_f("tags", None, FilterOperator.IS_EMPTY)])
    assert to_semsearch_filter(empty) == {"$or": [{"tags": {"$exists": False}}, {"tags": ""}]}
    assert to_semsearch_filter(MetadataFilters(filters=[])) is None


def test_ne_or_and_not_filter_on_the_server(served: str) -> None:
    """What LlamaIndex's own in-memory store reads the same way: a missing field passes != and nin."""
    store = SemsearchVectorStore(base_url=served)
    index = VectorStoreIndex.from_vector_store(store, embed_model=SemsearchEmbedding(base_url=served))

    def ids(filters: MetadataFilters) -> list[str]:
        return sorted(n.node.node_id for n in index.as_retriever(similarity_top_k=3, filters=filters).retrieve(CAT))

    assert ids(MetadataFilters(filters=[_f("kind", "sky", FilterOperator.NE)])) == ["bio", "pets"]
    assert ids(MetadataFilters(filters=[_f("colour", "red", FilterOperator.NE)])) == ["bio", "pets", "space"]
    either = [_f("kind", "sky"), _f("year", 2019, FilterOperator.GTE)]
    assert ids(MetadataFilters(filters=either, condition=FilterCondition.OR)) == ["bio", "space"]
    assert ids(MetadataFilters(filters=either, condition=FilterCondition.NOT)) == ["pets"]
    one_of = MetadataFilters(filters=either, condition=FilterCondition.OR)
    nested = MetadataFilters(filters=[_f("kind", ["pets", "sky"], FilterOperator.NIN), one_of])
    assert ids(nested) == ["bio"]


def test_the_retriever_takes_similarity_top_k_as_llamaindex_retrievers_do(served: str) -> None:
    retriever = SemsearchRetriever(served, similarity_top_k=2)
    assert len(retriever.retrieve("the cat")) == 2 and retriever.top_k == 2
    assert SemsearchRetriever(served, top_k=1).similarity_top_k == 1  # the older name still works
    with pytest.raises(ValueError, match="similarity_top_k=2 and top_k=3 differ"):
        SemsearchRetriever(served, similarity_top_k=2, top_k=3)


def test_the_store_retriever_and_embedding_of_a_collection(served: str) -> None:
    with SemsearchClient(served) as admin:
        admin.create_collection("li-tenant")
    with SemsearchClient(served, collection="li-tenant") as client:
        client.delete_documents([d.id for d in client.iter_documents()])
        client.put_documents([{"id": "pets", "text": "otters hold hands while sleeping"}], wait=True)
    store = SemsearchVectorStore(base_url=served, collection="li-tenant")
    index = VectorStoreIndex.from_vector_store(store, embed_model=SemsearchEmbedding(base_url=served))
    nodes = index.as_retriever(similarity_top_k=5).retrieve("otters")
    assert [(n.node.node_id, n.node.get_content()) for n in nodes] == [("pets", "otters hold hands while sleeping")]
    default = SemsearchRetriever(served, similarity_top_k=5).retrieve("otters")
    assert all("otters" not in n.node.get_content() for n in default)
    own = SemsearchRetriever(served, similarity_top_k=5, collection="li-tenant").retrieve("otters")
    assert [n.node.node_id for n in own] == ["pets"]
    assert len(SemsearchEmbedding(base_url=served, collection="li-tenant").get_text_embedding("otters")) > 0
