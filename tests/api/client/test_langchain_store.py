"""LangChain's standard vector-store suite against a real `semsearch serve`, and what the suite leaves out:
filters inside the search, scores, chunk offsets, retrievers, persistence across store objects."""

from __future__ import annotations

import pytest

pytest.importorskip("langchain_core", reason="pip install 'semsearch[langchain]'")

from langchain_tests.integration_tests import VectorStoreIntegrationTests

from api.client.langchain import SemsearchVectorStore


class TestSemsearchStandard(VectorStoreIntegrationTests):
    """Every test of the suite runs, sync and async (has_sync, has_async and has_get_by_ids stay True).

    The suite's fake embeddings are not used: the server embeds with its own model (here the tiny
    BERT), and the suite's rankings hold because each query is the very text of the document it
    expects first (cosine 1)."""

    @pytest.fixture
    def vectorstore(self, empty_server: str) -> SemsearchVectorStore:
        return SemsearchVectorStore(empty_server)


@pytest.fixture
def empty_collection(serve_process: str) -> str:
    """The collection `lc-tenant` of the session's `semsearch serve`, made once and emptied for each test."""
    from api.client import SemsearchClient

    SemsearchClient(serve_process).create_collection("lc-tenant")
    with SemsearchClient(serve_process, collection="lc-tenant") as client:
        client.delete_documents([d.id for d in client.iter_documents()])
    return serve_process


class TestSemsearchStandardInACollection(VectorStoreIntegrationTests):
    """The whole standard suite again on a collection of its own (`collection_name`), whose documents
    the `default` collection never sees."""

    @pytest.fixture
    def vectorstore(self, empty_collection: str) -> SemsearchVectorStore:
        return SemsearchVectorStore(empty_collection, collection_name="lc-tenant")


def test_a_collection_store_and_the_default_store_see_their_own(empty_collection: str) -> None:
    tenant = SemsearchVectorStore(empty_collection, collection_name="lc-tenant")
    default = SemsearchVectorStore(empty_collection)
    tenant.add_texts(["otters hold hands while sleeping"], ids=["shared-id"])
    default.add_texts(["glaciers carve deep valleys"], ids=["shared-id"])
    assert [d.page_content for d in tenant.get_by_ids(["shared-id"])] == ["otters hold hands while sleeping"]
    assert [d.page_content for d in default.get_by_ids(["shared-id"])] == ["glaciers carve deep valleys"]
    assert tenant.similarity_search("otters", k=5)[0].page_content == "otters hold hands while sleeping"
    assert all("otters" not in d.page_content for d in default.similarity_search("otters", k=5))
    default.delete(["shared-id"])
