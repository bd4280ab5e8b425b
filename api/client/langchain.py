"""LangChain over a semsearch server: `SemsearchVectorStore` (a `VectorStore`) and `SemsearchEmbeddings`.

`pip install 'semsearch[langchain]'`. The server embeds, chunks and filters on its side: ids are the
server's document ids (stable across deletes), metadata filters apply inside the nearest-neighbour
search (so `k` matches come back whenever that many exist), and everything persists in its SQL
store. Texts come back as the best-matching chunk of each document; with `chunk_metadata_key` set,
each result's metadata also carries that chunk's offsets, score and any fields the server adds.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.vectorstores import VectorStore

from api.client import AsyncSemsearchClient, SemsearchClient
from api.client.types import Hit, NewDocument, NotFoundError


class SemsearchEmbeddings(Embeddings):
    """The server's own model (`POST /v1/embeddings`), for chains that want vectors themselves."""

    def __init__(self, base_url: str = "http://127.0.0.1:8000", *, api_key: str | None = None) -> None:
        self.base_url, self.api_key = base_url, api_key

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """One vector per text, in order."""
        with SemsearchClient(self.base_url, api_key=self.api_key) as client:
            return client.embed(texts)

    def embed_query(self, text: str) -> list[float]:
        """The vector of one query."""
        return self.embed_documents([text])[0]

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        """One vector per text, in order."""
        async with AsyncSemsearchClient(self.base_url, api_key=self.api_key) as client:
            return await client.embed(texts)

    async def aembed_query(self, text: str) -> list[float]:
        """The vector of one query."""
        return (await self.aembed_documents([text]))[0]


class SemsearchVectorStore(VectorStore):
    """A `VectorStore` whose documents live in a semsearch server.

    `wait`: writes return once the documents are searchable (the server's `?wait=true`), so a
    search right after `add_texts` finds them. `mode`: the server's search mode, sent only when
    given. Search keyword arguments: `filter` (the server's metadata filter, e.g.
    `{"year": {"$gte": 2000}}`) and `mode`."""

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8000",
        *,
        api_key: str | None = None,
        mode: str | None = None,
        wait: bool = True,
        wait_timeout: float | None = None,
        chunk_metadata_key: str | None = None,
        timeout: float = 60.0,
    ) -> None:
        self.base_url, self.api_key, self.timeout = base_url, api_key, timeout
        self.mode = mode
        self.wait, self.wait_timeout = wait, wait_timeout
        self.chunk_metadata_key = chunk_metadata_key
        self.client = SemsearchClient(base_url, api_key=api_key, timeout=timeout)

    def _async_client(self) -> AsyncSemsearchClient:
        # One per call: an httpx.AsyncClient belongs to the event loop it first ran on, and callers
        # (asyncio.run in a loop, test frameworks) may come from a new loop every time.
        return AsyncSemsearchClient(self.base_url, api_key=self.api_key, timeout=self.timeout)

    @property
    def embeddings(self) -> Embeddings:
        """The server's model; the store never needs it (the server embeds), chains may."""
        return SemsearchEmbeddings(self.base_url, api_key=self.api_key)

    @classmethod
    def from_texts(
        cls,
        texts: list[str],
        embedding: Embeddings | None = None,
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: list[str] | None = None,
        **kwargs: Any,
    ) -> SemsearchVectorStore:
        """A store over the server at `base_url` (a keyword argument) holding `texts`. `embedding` is
        not used: the server embeds with its own model, the same for documents and queries."""
        store = cls(**kwargs)
        store.add_texts(texts, metadatas, ids=ids)
        return store

    def _documents(
        self, texts: Iterable[str], metadatas: list[dict[str, Any]] | None, ids: Sequence[str | None] | None
    ) -> list[NewDocument]:
        texts = list(texts)
        metas = metadatas or [{} for _ in texts]
        keys = list(ids) if ids is not None else [None] * len(texts)
        if not len(texts) == len(metas) == len(keys):
            raise ValueError(f"{len(texts)} texts, {len(metas)} metadatas and {len(keys)} ids: they must match")
        return [
            NewDocument(id=key or str(uuid.uuid4()), text=text, metadata=dict(meta or {}))
            for text, meta, key in zip(texts, metas, keys, strict=True)
        ]

    def add_texts(
        self,
        texts: Iterable[str],
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: list[str] | None = None,
        **kwargs: Any,
    ) -> list[str]:
        """Create or replace one document per text (a new uuid where no id is given); returns the ids."""
        docs = self._documents(texts, metadatas, ids)
        if docs:
            self.client.put_documents(docs, wait=self.wait, wait_timeout=self.wait_timeout)
        return [d.id for d in docs]

    async def aadd_texts(
        self,
        texts: Iterable[str],
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: list[str] | None = None,
        **kwargs: Any,
    ) -> list[str]:
        """See `add_texts`."""
        docs = self._documents(texts, metadatas, ids)
        if docs:
            async with self._async_client() as client:
                await client.put_documents(docs, wait=self.wait, wait_timeout=self.wait_timeout)
        return [d.id for d in docs]

    def delete(self, ids: list[str] | None = None, **kwargs: Any) -> bool | None:
        """Delete documents by id; ids that do not exist are no error. Deleting all is not offered."""
        if ids is None:
            raise ValueError("give the ids to delete: SemsearchVectorStore does not delete everything at once")
        self.client.delete_documents(ids)
        return True

    async def adelete(self, ids: list[str] | None = None, **kwargs: Any) -> bool | None:
        """See `delete`."""
        if ids is None:
            raise ValueError("give the ids to delete: SemsearchVectorStore does not delete everything at once")
        async with self._async_client() as client:
            await client.delete_documents(ids)
        return True

    def get_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        """The stored documents (whole text) with these ids, in the order asked; missing ids are left out."""
        found = []
        for doc_id in ids:
            try:
                doc = self.client.get_document(doc_id)
            except NotFoundError:
                continue
            found.append(Document(page_content=doc.text, metadata=doc.metadata, id=doc.id))
        return found

    async def aget_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        """See `get_by_ids`."""
        found = []
        async with self._async_client() as client:
            for doc_id in ids:
                try:
                    doc = await client.get_document(doc_id)
                except NotFoundError:
                    continue
                found.append(Document(page_content=doc.text, metadata=doc.metadata, id=doc.id))
        return found

    def _document(self, hit: Hit) -> Document:
        metadata = dict(hit.metadata)
        if self.chunk_metadata_key:
            metadata[self.chunk_metadata_key] = hit.model_dump(exclude={"id", "text", "metadata"})
        return Document(page_content=hit.text, metadata=metadata, id=hit.id)

    def similarity_search_with_score(
        self, query: str, k: int = 4, filter: dict[str, Any] | None = None, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        """The `k` best documents (their best chunk) with the server's score (cosine in dense search)."""
        hits = self.client.search(query, top_k=k, filter=filter, mode=kwargs.get("mode", self.mode)).results
        return [(self._document(h), h.score) for h in hits]

    async def asimilarity_search_with_score(
        self, query: str, k: int = 4, filter: dict[str, Any] | None = None, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        """See `similarity_search_with_score`."""
        async with self._async_client() as client:
            results = await client.search(query, top_k=k, filter=filter, mode=kwargs.get("mode", self.mode))
        return [(self._document(h), h.score) for h in results.results]

    def similarity_search(
        self, query: str, k: int = 4, filter: dict[str, Any] | None = None, **kwargs: Any
    ) -> list[Document]:
        """The `k` best documents for `query` among those whose metadata passes `filter`."""
        return [doc for doc, _ in self.similarity_search_with_score(query, k, filter, **kwargs)]

    async def asimilarity_search(
        self, query: str, k: int = 4, filter: dict[str, Any] | None = None, **kwargs: Any
    ) -> list[Document]:
        """See `similarity_search`."""
        return [doc for doc, _ in await self.asimilarity_search_with_score(query, k, filter, **kwargs)]

    def _select_relevance_score_fn(self) -> Callable[[float], float]:
        # Cosine similarity in [-1, 1] to LangChain's relevance in [0, 1].
        return lambda score: max(0.0, min(1.0, (score + 1.0) / 2.0))
