"""The asyncio twin of `SemsearchClient` (api/client/blocking.py): the same requests and retries, as coroutines."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

import httpx

from api.client.calls import (
    DEFAULT_COLLECTION,
    EMBED_BATCH,
    PAGE_LIMIT,
    WRITE_BATCH,
    Call,
    Requests,
    UploadSource,
    merge_batches,
    merge_writes,
    new_documents,
    query_slices,
    slices,
)
from api.client.types import (
    ApiKey,
    BatchResults,
    Deleted,
    Document,
    DocumentPage,
    NewApiKey,
    NewDocument,
    NotFoundError,
    SearchResults,
    Stats,
    WriteResult,
)

T = TypeVar("T")


class AsyncSemsearchClient:
    """The same API for asyncio code: every method of `SemsearchClient`, as a coroutine."""

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8000",
        *,
        api_key: str | None = None,
        timeout: float = 60.0,
        retries: int = 3,
        backoff: float = 0.5,
        http_client: httpx.AsyncClient | None = None,
        collection: str = DEFAULT_COLLECTION,
    ) -> None:
        self._requests = Requests(base_url, api_key, timeout, retries, backoff, collection)
        self._owns_http = http_client is None
        self._http = http_client or httpx.AsyncClient(timeout=timeout)

    @property
    def base_url(self) -> str:
        """The server's base URL, without a trailing slash."""
        return self._requests.base_url

    async def _send(self, call: Call[T]) -> T:
        req = self._requests
        args = req.send_args(call)
        attempt = 0
        while True:
            outcome: httpx.Response | Exception
            try:
                outcome = await self._http.request(**args)
            except httpx.TransportError as exc:
                outcome = exc
            if not req.retry(attempt, outcome):
                return req.finish(call, outcome)
            await asyncio.sleep(req.delay(attempt, outcome if isinstance(outcome, httpx.Response) else None))
            attempt += 1

    async def search(
        self,
        query: str | None = None,
        *,
        vector: Sequence[float] | None = None,
        top_k: int = 10,
        filter: Mapping[str, Any] | None = None,
        mode: str | None = None,
        min_score: float | None = None,
        mmr: Mapping[str, Any] | None = None,
        offset: int = 0,
        sort: str | Mapping[str, Any] | None = None,
        facets: Sequence[str] | None = None,
    ) -> SearchResults:
        """See `SemsearchClient.search`."""
        paging = self._requests.paging(offset, sort, facets)
        return await self._send(
            self._requests.search(query, top_k, filter, mode, paging, min_score=min_score, vector=vector, mmr=mmr)
        )

    async def search_batch(
        self,
        queries: Sequence[str],
        *,
        top_k: int = 10,
        filter: Mapping[str, Any] | None = None,
        mode: str | None = None,
        min_score: float | None = None,
        mmr: Mapping[str, Any] | None = None,
    ) -> BatchResults:
        """See `SemsearchClient.search_batch`."""
        calls = [
            self._requests.search_batch(s, top_k, filter, mode, min_score, mmr)
            for s in query_slices(queries, top_k, mmr)
        ]
        return merge_batches([await self._send(c) for c in calls])

    async def put_document(
        self,
        doc_id: str,
        text: str,
        *,
        title: str = "",
        metadata: Mapping[str, Any] | None = None,
        wait: bool = False,
        wait_timeout: float | None = None,
    ) -> WriteResult:
        """See `SemsearchClient.put_document`."""
        doc = NewDocument(id=doc_id, text=text, title=title, metadata=dict(metadata or {}))
        return await self._send(self._requests.write([doc], wait, wait_timeout))

    async def put_documents(
        self,
        docs: Iterable[NewDocument | Mapping[str, Any]],
        *,
        wait: bool = False,
        wait_timeout: float | None = None,
    ) -> WriteResult:
        """See `SemsearchClient.put_documents`."""
        batches = slices(new_documents(docs), WRITE_BATCH)
        return merge_writes([await self._send(self._requests.write(b, wait, wait_timeout)) for b in batches])

    async def upload_document(
        self,
        file: UploadSource,
        *,
        name: str | None = None,
        doc_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        wait: bool = False,
        wait_timeout: float | None = None,
    ) -> WriteResult:
        """See `SemsearchClient.upload_document`."""
        return await self._send(self._requests.upload(file, name, doc_id, metadata, wait, wait_timeout))

    async def get_document(self, doc_id: str) -> Document:
        """See `SemsearchClient.get_document`."""
        return await self._send(self._requests.get(doc_id))

    async def list_documents(self, offset: int = 0, limit: int = 100) -> DocumentPage:
        """See `SemsearchClient.list_documents`."""
        return await self._send(self._requests.page(offset, limit))

    async def iter_documents(self, page_size: int = PAGE_LIMIT) -> AsyncIterator[Document]:
        """See `SemsearchClient.iter_documents`."""
        offset = 0
        while True:
            page = await self.list_documents(offset, page_size)
            for doc in page.documents:
                yield doc
            offset += len(page.documents)
            if not page.documents or offset >= page.total:
                return

    async def delete_document(self, doc_id: str) -> Deleted:
        """See `SemsearchClient.delete_document`."""
        return await self._send(self._requests.delete(doc_id))

    async def delete_documents(self, ids: Iterable[str]) -> list[str]:
        """See `SemsearchClient.delete_documents`."""
        deleted = []
        for doc_id in dict.fromkeys(ids):
            try:
                deleted.append((await self.delete_document(doc_id)).id)
            except NotFoundError:
                continue
        return deleted

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """See `SemsearchClient.embed`."""
        return [v for s in slices(texts, EMBED_BATCH) for v in await self._send(self._requests.embed(s))]

    async def stats(self) -> Stats:
        """See `SemsearchClient.stats`."""
        return await self._send(self._requests.stats())

    async def health(self) -> bool:
        """See `SemsearchClient.health`."""
        return await self._send(self._requests.health())

    async def create_key(
        self,
        role: str,
        *,
        collections: Sequence[str] | None = None,
        expires_at: datetime | str | None = None,
        name: str = "",
    ) -> NewApiKey:
        """See `SemsearchClient.create_key`."""
        return await self._send(self._requests.create_key(role, collections, expires_at, name))

    async def list_keys(self) -> list[ApiKey]:
        """See `SemsearchClient.list_keys`."""
        return await self._send(self._requests.list_keys())

    async def revoke_key(self, key_id: str) -> ApiKey:
        """See `SemsearchClient.revoke_key`."""
        return await self._send(self._requests.revoke_key(key_id))

    async def create_collection(self, name: str, **settings: Any) -> dict[str, Any]:
        """See `SemsearchClient.create_collection`."""
        return await self._send(self._requests.create_collection(name, settings))

    async def list_collections(self) -> list[dict[str, Any]]:
        """See `SemsearchClient.list_collections`."""
        return await self._send(self._requests.list_collections())

    async def delete_collection(self, name: str) -> dict[str, Any]:
        """See `SemsearchClient.delete_collection`."""
        return await self._send(self._requests.delete_collection(name))

    async def aclose(self) -> None:
        """Close the connections (not those of an `http_client` the caller brought)."""
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> AsyncSemsearchClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
