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
