"""LlamaIndex over a semsearch server: a vector store, a retriever and the server's embedding model.

`pip install 'semsearch[llamaindex]'`. The server embeds, chunks, filters and persists on its side
(`is_embedding_query` is False: LlamaIndex hands over the query text; a query with only an embedding
of the server's model is searched by that vector). Each result is
a `TextNode` whose text is the document's best-matching chunk, with `start_char_idx`/`end_char_idx`
its offsets in the document's text (for citations), the document's metadata, and the server's score.

    store = SemsearchVectorStore(base_url="http://127.0.0.1:8000")
    index = VectorStoreIndex.from_vector_store(store, embed_model=SemsearchEmbedding(base_url=store.base_url))
    nodes = index.as_retriever(similarity_top_k=5).retrieve("where did the cat sit?")
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.bridge.pydantic import PrivateAttr
from llama_index.core.retrievers import BaseRetriever
from llama_index.core.schema import (
    BaseNode,
    MetadataMode,
    NodeRelationship,
    NodeWithScore,
    QueryBundle,
    RelatedNodeInfo,
    TextNode,
)
from llama_index.core.vector_stores.types import (
    BasePydanticVectorStore,
    MetadataFilters,
    VectorStoreQuery,
    VectorStoreQueryResult,
)

from api.client import AsyncSemsearchClient, SemsearchClient
from api.client.llamaindex_filters import to_semsearch_filter as to_semsearch_filter  # public here too
from api.client.llamaindex_query import search_args
from api.client.types import Hit, NewDocument, NotFoundError, SemsearchError

# Metadata keys this module adds: the LlamaIndex document a node came from (so `delete(ref_doc_id)`
# finds its nodes with a filter), and the chunk's search facts (kept out of LLM prompts and embeddings).
REF_DOC_KEY = "ref_doc_id"
CHUNK_KEY = "semsearch"


def hit_node(hit: Hit) -> TextNode:
    """A search hit as a node: the chunk's text and offsets, the document's metadata, its source document."""
    metadata = dict(hit.metadata)
    ref_doc_id = str(metadata.pop(REF_DOC_KEY, hit.id))
    metadata[CHUNK_KEY] = hit.model_dump(exclude={"id", "text", "metadata", "start", "end"})
    return TextNode(
        id_=hit.id,
        text=hit.text,
        metadata=metadata,
        start_char_idx=hit.start,
        end_char_idx=hit.end,
        relationships={NodeRelationship.SOURCE: RelatedNodeInfo(node_id=ref_doc_id)},
        excluded_llm_metadata_keys=[CHUNK_KEY],
        excluded_embed_metadata_keys=[CHUNK_KEY],
    )


class SemsearchVectorStore(BasePydanticVectorStore):
    """A LlamaIndex vector store whose nodes are documents of a semsearch server (id = node id).

    `wait`: `add` returns once the nodes are searchable. `mode`: the server's search mode, sent only
    when given. `min_score`: only hits scoring at least it (the server's; a `min_score` keyword
    argument of `query` overrides it). Nodes added through LlamaIndex keep their source document id
    in their metadata."""

    stores_text: bool = True
    is_embedding_query: bool = False
    base_url: str = "http://127.0.0.1:8000"
    api_key: str | None = None
    mode: str | None = None
    min_score: float | None = None
    wait: bool = True
    wait_timeout: float | None = None
    timeout: float = 60.0
    collection: str = "default"  # the server's collection the store reads and writes
    _client: SemsearchClient = PrivateAttr()

    def __init__(self, **data: Any) -> None:
        super().__init__(**data)
        self._client = SemsearchClient(
            self.base_url, api_key=self.api_key, timeout=self.timeout, collection=self.collection
        )

    @property
    def client(self) -> SemsearchClient:
        """The HTTP client the store uses."""
        return self._client

    def _async_client(self) -> AsyncSemsearchClient:
        # One per call: an httpx.AsyncClient belongs to the event loop it first ran on.
        return AsyncSemsearchClient(
            self.base_url, api_key=self.api_key, timeout=self.timeout, collection=self.collection
        )

    def add(self, nodes: Sequence[BaseNode], **kwargs: Any) -> list[str]:
        """Store each node as a document (its text and metadata); the server embeds it."""
        docs = []
        for node in nodes:
            metadata = dict(node.metadata)
            if node.ref_doc_id is not None:
                metadata[REF_DOC_KEY] = node.ref_doc_id
            docs.append(NewDocument(id=node.node_id, text=node.get_content(MetadataMode.NONE), metadata=metadata))
        if docs:
            self._client.put_documents(docs, wait=self.wait, wait_timeout=self.wait_timeout)
        return [d.id for d in docs]

    def delete(self, ref_doc_id: str, **delete_kwargs: Any) -> None:
        """Delete the nodes of a source document (and a document stored under that id itself)."""
        self._client.delete_documents([ref_doc_id])
        # The filter runs in SQL inside the search, so each round finds up to 1000 of its nodes, however
        # many documents the server holds; deleted ones leave the results at once.
        seen: set[str] = set()
        while True:
            # The query text only orders the matches; any text will do.
            hits = self._client.search(ref_doc_id[:200], top_k=1000, filter={REF_DOC_KEY: ref_doc_id}).results
            if not hits:
                return
            if seen.issuperset(h.id for h in hits):
                raise SemsearchError(f"nodes of {ref_doc_id!r} are still found after their deletion")
            seen.update(h.id for h in hits)
            self._client.delete_documents([h.id for h in hits])

    def delete_nodes(
        self, node_ids: list[str] | None = None, filters: MetadataFilters | None = None, **delete_kwargs: Any
    ) -> None:
        """Delete nodes by id (ids that do not exist are no error)."""
        if filters is not None or node_ids is None:
            raise ValueError("SemsearchVectorStore deletes nodes by their ids only")
        self._client.delete_documents(node_ids)

    def get_nodes(self, node_ids: list[str] | None = None, filters: MetadataFilters | None = None) -> list[BaseNode]:
        """The stored nodes (whole text) with these ids; missing ids are left out."""
        if filters is not None or node_ids is None:
            raise ValueError("SemsearchVectorStore gets nodes by their ids only")
        nodes: list[BaseNode] = []
        for node_id in node_ids:
            try:
                doc = self._client.get_document(node_id)
            except NotFoundError:
                continue
            whole = Hit(
                id=doc.id,
                chunk_id=-1,
                score=0.0,
                title=doc.title,
                text=doc.text,
                metadata=doc.metadata,
                start=0,
                end=len(doc.text),
            )
            nodes.append(hit_node(whole))
        return nodes

    def clear(self) -> None:
        """Delete every document of the server."""
        self._client.delete_documents([d.id for d in self._client.iter_documents()])

    def query(self, query: VectorStoreQuery, **kwargs: Any) -> VectorStoreQueryResult:
        """The `similarity_top_k` best documents for the query text (or, without one, its embedding:
        dense mode), filters applied inside the search. Modes: default (the store's `mode`), mmr
        (`mmr_threshold` is MMR's lambda; keyword arguments `mmr_prefetch_k` or `mmr_prefetch_factor`
        set its candidates), hybrid and text_search (the server's keyword mode)."""
        return _result(
            self._client.search(**search_args(query, self.mode, {"min_score": self.min_score, **kwargs})).results
        )

    async def aquery(self, query: VectorStoreQuery, **kwargs: Any) -> VectorStoreQueryResult:
        """See `query`."""
        args = search_args(query, self.mode, {"min_score": self.min_score, **kwargs})
        async with self._async_client() as client:
            found = await client.search(**args)
        return _result(found.results)


def _result(hits: list[Hit]) -> VectorStoreQueryResult:
    return VectorStoreQueryResult(
        nodes=[hit_node(h) for h in hits], similarities=[h.score for h in hits], ids=[h.id for h in hits]
    )


class SemsearchRetriever(BaseRetriever):
    """Retrieves straight from a semsearch server, without an index object: `similarity_top_k` nodes
    per query (as LlamaIndex's own retrievers take it; `top_k` is the same, kept for older code),
    `filters` (the server's filter dict, or LlamaIndex `MetadataFilters`), and `mode` and `min_score`
    (only nodes scoring at least it) when given."""

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8000",
        *,
        api_key: str | None = None,
        similarity_top_k: int | None = None,
        top_k: int | None = None,
        filters: dict[str, Any] | MetadataFilters | None = None,
        mode: str | None = None,
        min_score: float | None = None,
        collection: str = "default",
        **kwargs: Any,
    ) -> None:
        if similarity_top_k is not None and top_k is not None and similarity_top_k != top_k:
            raise ValueError(f"similarity_top_k={similarity_top_k} and top_k={top_k} differ; give one of them")
        super().__init__(**kwargs)
        self.base_url, self.api_key, self.mode, self.min_score = base_url, api_key, mode, min_score
        self.similarity_top_k = similarity_top_k if similarity_top_k is not None else top_k if top_k is not None else 5
        self.filter = to_semsearch_filter(filters) if isinstance(filters, MetadataFilters) else filters
        self.collection = collection
        self.client = SemsearchClient(base_url, api_key=api_key, collection=collection)

    @property
    def top_k(self) -> int:
        """The same as `similarity_top_k`."""
        return self.similarity_top_k

    @top_k.setter
    def top_k(self, value: int) -> None:
        self.similarity_top_k = value

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        top_k = self.similarity_top_k
        hits = self.client.search(
            query_bundle.query_str, top_k=top_k, filter=self.filter, mode=self.mode, min_score=self.min_score
        ).results
        return [NodeWithScore(node=hit_node(h), score=h.score) for h in hits]

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        async with AsyncSemsearchClient(self.base_url, api_key=self.api_key, collection=self.collection) as client:
            top_k = self.similarity_top_k
            found = await client.search(
                query_bundle.query_str, top_k=top_k, filter=self.filter, mode=self.mode, min_score=self.min_score
            )
        return [NodeWithScore(node=hit_node(h), score=h.score) for h in found.results]


class SemsearchEmbedding(BaseEmbedding):
    """The server's own model (`POST /v1/embeddings`): what `VectorStoreIndex` asks for, and the same
    vectors the server searches with."""

    base_url: str = "http://127.0.0.1:8000"
    api_key: str | None = None
    model_name: str = "semsearch"
    collection: str = "default"  # whose model embeds

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._get_text_embeddings([query])[0]

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return (await self._aget_text_embeddings([query]))[0]

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._get_text_embeddings([text])[0]

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        with SemsearchClient(self.base_url, api_key=self.api_key, collection=self.collection) as client:
            return client.embed(texts)

    async def _aget_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        async with AsyncSemsearchClient(self.base_url, api_key=self.api_key, collection=self.collection) as client:
            return await client.embed(texts)
