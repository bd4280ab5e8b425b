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

    def __init__(
        self, base_url: str = "http://127.0.0.1:8000", *, api_key: str | None = None, collection_name: str = "default"
    ) -> None:
        self.base_url, self.api_key, self.collection_name = base_url, api_key, collection_name

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """One vector per text, in order (the collection's model)."""
        with SemsearchClient(self.base_url, api_key=self.api_key, collection=self.collection_name) as client:
            return client.embed(texts)

    def embed_query(self, text: str) -> list[float]:
        """The vector of one query."""
        return self.embed_documents([text])[0]

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        """One vector per text, in order."""
        async with AsyncSemsearchClient(self.base_url, api_key=self.api_key, collection=self.collection_name) as client:
            return await client.embed(texts)

    async def aembed_query(self, text: str) -> list[float]:
        """The vector of one query."""
        return (await self.aembed_documents([text]))[0]


class SemsearchVectorStore(VectorStore):
    """A `VectorStore` whose documents live in a semsearch server.

    `wait`: writes return once the documents are searchable (the server's `?wait=true`), so a
    search right after `add_texts` finds them. `mode`: the server's search mode, sent only when
    given. Search keyword arguments: `filter` (the server's metadata filter, e.g.
    `{"year": {"$gte": 2000}}`), `mode` and `min_score` (the server's: only hits scoring at least it).
    `similarity_search_with_relevance_scores(score_threshold=...)` works on the relevance of
    `_select_relevance_score_fn`, which rises with the server's score. `collection_name`: the
    server's collection the store reads and writes (made by an admin, `PUT /collections/{name}`)."""

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
        collection_name: str = "default",
    ) -> None:
        self.base_url, self.api_key, self.timeout = base_url, api_key, timeout
        self.collection_name = collection_name
        self.mode = mode
        self.wait, self.wait_timeout = wait, wait_timeout
        self.chunk_metadata_key = chunk_metadata_key
        self.client = SemsearchClient(base_url, api_key=api_key, timeout=timeout, collection=collection_name)

    def _async_client(self) -> AsyncSemsearchClient:
        # One per call: an httpx.AsyncClient belongs to the event loop it first ran on, and callers
        # (asyncio.run in a loop, test frameworks) may come from a new loop every time.
        return AsyncSemsearchClient(
            self.base_url, api_key=self.api_key, timeout=self.timeout, collection=self.collection_name
        )

    @property
    def embeddings(self) -> Embeddings:
        """The server's model; the store never needs it (the server embeds), chains may."""
        return SemsearchEmbeddings(self.base_url, api_key=self.api_key, collection_name=self.collection_name)

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

    def _hits(
        self, query: str | None, vector: list[float] | None, k: int, filter: Any, kw: dict[str, Any], mmr: Any = None
    ) -> list[Hit]:
        # A vector searches in dense mode: the store's `mode` is for texts; a `mode` argument is sent as given.
        mode = kw.get("mode", self.mode if vector is None else None)
        found = self.client.search(
            query, vector=vector, top_k=k, filter=filter, mode=mode, mmr=mmr, min_score=kw.get("min_score")
        )
        return found.results

    async def _ahits(
        self, query: str | None, vector: list[float] | None, k: int, filter: Any, kw: dict[str, Any], mmr: Any = None
    ) -> list[Hit]:
        mode = kw.get("mode", self.mode if vector is None else None)
        async with self._async_client() as client:
            found = await client.search(
                query, vector=vector, top_k=k, filter=filter, mode=mode, mmr=mmr, min_score=kw.get("min_score")
            )
        return found.results

    def similarity_search_with_score(
        self, query: str, k: int = 4, filter: dict[str, Any] | None = None, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        """The `k` best documents (their best chunk) with the server's score (cosine in dense search)."""
        return [(self._document(h), h.score) for h in self._hits(query, None, k, filter, kwargs)]

    async def asimilarity_search_with_score(
        self, query: str, k: int = 4, filter: dict[str, Any] | None = None, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        """See `similarity_search_with_score`."""
        return [(self._document(h), h.score) for h in await self._ahits(query, None, k, filter, kwargs)]

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

    def similarity_search_with_score_by_vector(
        self, embedding: list[float], k: int = 4, filter: dict[str, Any] | None = None, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        """The `k` best documents for a query vector of the server's model (`embeddings`), with their
        cosine scores: a dense search, no model time on the server."""
        return [(self._document(h), h.score) for h in self._hits(None, embedding, k, filter, kwargs)]

    def similarity_search_by_vector(
        self, embedding: list[float], k: int = 4, filter: dict[str, Any] | None = None, **kwargs: Any
    ) -> list[Document]:
        """See `similarity_search_with_score_by_vector`."""
        return [doc for doc, _ in self.similarity_search_with_score_by_vector(embedding, k, filter, **kwargs)]

    async def asimilarity_search_by_vector(
        self, embedding: list[float], k: int = 4, filter: dict[str, Any] | None = None, **kwargs: Any
    ) -> list[Document]:
        """See `similarity_search_with_score_by_vector`."""
        return [self._document(h) for h in await self._ahits(None, embedding, k, filter, kwargs)]

    def max_marginal_relevance_search(
        self, query: str, k: int = 4, fetch_k: int = 20, lambda_mult: float = 0.5, **kwargs: Any
    ) -> list[Document]:
        """`k` documents picked by maximal marginal relevance among the `fetch_k` best (raised to `k`
        when below it), on the server: relevance its score, novelty its stored vectors. `lambda_mult`
        1 is the plain order, 0 the most diverse. Keyword arguments: `filter`, `mode`."""
        hits = self._hits(query, None, k, kwargs.get("filter"), kwargs, _mmr(k, fetch_k, lambda_mult))
        return [self._document(h) for h in hits]

    async def amax_marginal_relevance_search(
        self, query: str, k: int = 4, fetch_k: int = 20, lambda_mult: float = 0.5, **kwargs: Any
    ) -> list[Document]:
        """See `max_marginal_relevance_search`."""
        hits = await self._ahits(query, None, k, kwargs.get("filter"), kwargs, _mmr(k, fetch_k, lambda_mult))
        return [self._document(h) for h in hits]

    def max_marginal_relevance_search_by_vector(
        self, embedding: list[float], k: int = 4, fetch_k: int = 20, lambda_mult: float = 0.5, **kwargs: Any
    ) -> list[Document]:
        """See `max_marginal_relevance_search`, for a query vector (a dense search)."""
        hits = self._hits(None, embedding, k, kwargs.get("filter"), kwargs, _mmr(k, fetch_k, lambda_mult))
        return [self._document(h) for h in hits]

    async def amax_marginal_relevance_search_by_vector(
        self, embedding: list[float], k: int = 4, fetch_k: int = 20, lambda_mult: float = 0.5, **kwargs: Any
    ) -> list[Document]:
        """See `max_marginal_relevance_search`, for a query vector (a dense search)."""
        hits = await self._ahits(None, embedding, k, kwargs.get("filter"), kwargs, _mmr(k, fetch_k, lambda_mult))
        return [self._document(h) for h in hits]

    def _select_relevance_score_fn(self) -> Callable[[float], float]:
        """The server's score as LangChain's relevance in [0, 1], rising with it (so `score_threshold`
        and the server's `min_score` agree): hybrid (the default mode) scores are the document's own in
        [0, 1] already; a dense cosine counts as itself, below 0 as 0; a keyword BM25 s as s / (1 + s)."""
        return _RELEVANCE.get(self.mode or "hybrid", _RELEVANCE["hybrid"])


_RELEVANCE: dict[str, Callable[[float], float]] = {
    "hybrid": lambda score: max(0.0, min(1.0, score)),
    "dense": lambda score: max(0.0, min(1.0, score)),
    "keyword": lambda score: max(0.0, score) / (1.0 + max(0.0, score)),
}


def _mmr(k: int, fetch_k: int, lambda_mult: float) -> dict[str, Any]:
    """The server's `mmr` for LangChain's arguments."""
    return {"lambda": lambda_mult, "fetch_k": max(k, fetch_k)}
