"""A typed client of the semsearch HTTP API on httpx: `SemsearchClient` (blocking) and `AsyncSemsearchClient`.

It imports nothing of the server (no FastAPI, torch or SQL), so an application that only queries a
semsearch service pays for httpx and pydantic alone. Errors are `SemsearchError`s carrying the
server's own message (api/client/types.py); 429 and 503 answers are retried with exponential backoff
(or after the server's `Retry-After`), and so are connections refused before a request was sent.

    with SemsearchClient("http://127.0.0.1:8000", api_key=None) as client:
        client.put_document("cats", "the cat sat on the mat", metadata={"kind": "animal"}, wait=True)
        hits = client.search("where did the cat sit?", top_k=5, filter={"kind": "animal"}).results
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
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


class SemsearchClient:
    """A blocking client. `api_key` is SEMSEARCH_API_KEY of the server; `retries` bounds the retries
    of 429/503 answers and refused connections; `http_client` lets the caller bring its own httpx.Client."""

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8000",
        *,
        api_key: str | None = None,
        timeout: float = 60.0,
        retries: int = 3,
        backoff: float = 0.5,
        http_client: httpx.Client | None = None,
        collection: str = DEFAULT_COLLECTION,
    ) -> None:
        self._requests = Requests(base_url, api_key, timeout, retries, backoff, collection)
        self._owns_http = http_client is None
        self._http = http_client or httpx.Client(timeout=timeout)

    @property
    def base_url(self) -> str:
        """The server's base URL, without a trailing slash."""
        return self._requests.base_url

    def _send(self, call: Call[T]) -> T:
        req = self._requests
        args = req.send_args(call)
        attempt = 0
        while True:
            outcome: httpx.Response | Exception
            try:
                outcome = self._http.request(**args)
            except httpx.TransportError as exc:
                outcome = exc
            if not req.retry(attempt, outcome):
                return req.finish(call, outcome)
            time.sleep(req.delay(attempt, outcome if isinstance(outcome, httpx.Response) else None))
            attempt += 1

    def search(
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
        """The `top_k` best documents for `query`, or for its embedding `vector` (dense mode), whose
        metadata passes `filter` and whose score is at least `min_score`, after the first `offset`;
        `mode` where the server has modes; `mmr` (e.g. `{"lambda": 0.5, "fetch_k": 20}`) diversifies
        them by maximal marginal relevance. `sort`: a metadata field to order the most relevant
        documents by, as {"field": "year", "order": "desc"} or "-year"; `facets`: fields to count
        values of (in the answer's `facets`)."""
        paging = self._requests.paging(offset, sort, facets)
        return self._send(
            self._requests.search(query, top_k, filter, mode, paging, min_score=min_score, vector=vector, mmr=mmr)
        )

    def search_batch(
        self,
        queries: Sequence[str],
        *,
        top_k: int = 10,
        filter: Mapping[str, Any] | None = None,
        mode: str | None = None,
        min_score: float | None = None,
        mmr: Mapping[str, Any] | None = None,
    ) -> BatchResults:
        """One hit list per query, in query order, sent in requests of at most QUERY_BATCH queries and
        QUERY_HITS hits (queries x top_k) each."""
        parts = [
            self._send(self._requests.search_batch(s, top_k, filter, mode, min_score, mmr))
            for s in query_slices(queries, top_k, mmr)
        ]
        return merge_batches(parts)

    def put_document(
        self,
        doc_id: str,
        text: str,
        *,
        title: str = "",
        metadata: Mapping[str, Any] | None = None,
        wait: bool = False,
        wait_timeout: float | None = None,
    ) -> WriteResult:
        """Create or replace one document. With `wait`, answer once it is searchable (`indexed` false
        if `wait_timeout` passed first: stored and queued, not failed)."""
        doc = NewDocument(id=doc_id, text=text, title=title, metadata=dict(metadata or {}))
        return self._send(self._requests.write([doc], wait, wait_timeout))

    def put_documents(
        self,
        docs: Iterable[NewDocument | Mapping[str, Any]],
        *,
        wait: bool = False,
        wait_timeout: float | None = None,
    ) -> WriteResult:
        """Create or replace many documents ({"id", "text", "title"?, "metadata"?} each), WRITE_BATCH a request."""
        batches = slices(new_documents(docs), WRITE_BATCH)
        return merge_writes([self._send(self._requests.write(b, wait, wait_timeout)) for b in batches])

    def upload_document(
        self,
        file: UploadSource,
        *,
        name: str | None = None,
        doc_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        wait: bool = False,
        wait_timeout: float | None = None,
    ) -> WriteResult:
        """Send a file (a path, or bytes with `name`) to be read by the server's reader of its type
        (.pdf, .html, .docx, .md, .txt) and stored under `doc_id` (default: its name); `metadata` is
        laid over what the file gives. An unknown type or an unreadable file is InvalidRequestError."""
        return self._send(self._requests.upload(file, name, doc_id, metadata, wait, wait_timeout))

    def get_document(self, doc_id: str) -> Document:
        """A stored document with its status; NotFoundError when there is none."""
        return self._send(self._requests.get(doc_id))

    def list_documents(self, offset: int = 0, limit: int = 100) -> DocumentPage:
        """One page of documents, in the order they were first written."""
        return self._send(self._requests.page(offset, limit))

    def iter_documents(self, page_size: int = PAGE_LIMIT) -> Iterator[Document]:
        """Every stored document, a page at a time."""
        offset = 0
        while True:
            page = self.list_documents(offset, page_size)
            yield from page.documents
            offset += len(page.documents)
            if not page.documents or offset >= page.total:
                return

    def delete_document(self, doc_id: str) -> Deleted:
        """Delete a document (it leaves the results at once); NotFoundError when there is none."""
        return self._send(self._requests.delete(doc_id))

    def delete_documents(self, ids: Iterable[str]) -> list[str]:
        """Delete each id; returns those that existed (missing ones are no error here)."""
        deleted = []
        for doc_id in dict.fromkeys(ids):
            try:
                deleted.append(self.delete_document(doc_id).id)
            except NotFoundError:
                continue
        return deleted

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """The server's vectors of `texts` (same model and pooling as its index), EMBED_BATCH a request."""
        return [v for s in slices(texts, EMBED_BATCH) for v in self._send(self._requests.embed(s))]

    def stats(self) -> Stats:
        """Documents, chunks and vectors held; index type; model, pooling and dimension."""
        return self._send(self._requests.stats())

    def health(self) -> bool:
        """True while the server answers."""
        return self._send(self._requests.health())

    def create_key(
        self,
        role: str,
        *,
        collections: Sequence[str] | None = None,
        expires_at: datetime | str | None = None,
        name: str = "",
    ) -> NewApiKey:
        """A new API key (this needs an admin key for every collection): `role` read, write or admin,
        the `collections` it reaches (None: all), `expires_at` a time or a duration such as "30d".
        Its `key` is the secret, which the server shows this once."""
        return self._send(self._requests.create_key(role, collections, expires_at, name))

    def list_keys(self) -> list[ApiKey]:
        """Every API key, revoked and expired ones too; never a secret."""
        return self._send(self._requests.list_keys())

    def revoke_key(self, key_id: str) -> ApiKey:
        """Revoke an API key by id (every server refuses it within seconds); NotFoundError when there is none."""
        return self._send(self._requests.revoke_key(key_id))

    def create_collection(self, name: str, **settings: Any) -> dict[str, Any]:
        """Create a collection (PUT /collections/{name}, an admin key): its own `settings` (model,
        pooling, chunk_size...), the server's for the rest; the same again is no error, other settings a 409."""
        return self._send(self._requests.create_collection(name, settings))

    def list_collections(self) -> list[dict[str, Any]]:
        """The collections this client's key reaches: name, settings, documents and chunks."""
        return self._send(self._requests.list_collections())

    def delete_collection(self, name: str) -> dict[str, Any]:
        """Delete a collection with its documents and index files (an admin key); NotFoundError when there is none."""
        return self._send(self._requests.delete_collection(name))

    def close(self) -> None:
        """Close the connections (not those of an `http_client` the caller brought)."""
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> SemsearchClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
