"""The requests of the semsearch HTTP API, built once and sent by either client (api/client/blocking.py,
api/client/async_client.py), with the retry policy they share."""

from __future__ import annotations

import json
import mimetypes
import os
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel

from api.client.types import (
    RETRY_STATUSES,
    ApiKey,
    BatchResults,
    Deleted,
    Document,
    DocumentPage,
    NewApiKey,
    NewDocument,
    SearchResults,
    SemsearchError,
    Stats,
    WriteResult,
    raise_for_status,
)

# The server's own limits per request (api/server/documents.py, api/server/embeddings.py, api/server/schemas.py):
# more is sent in slices. tests/api/client/test_client_schema.py checks each against the server's.
WRITE_BATCH = 1000
EMBED_BATCH = 2048
DEFAULT_COLLECTION = "default"  # the collection the server's unprefixed routes act on
QUERY_BATCH = 256
# Hits (queries x top_k) one search request may ask for at the server's default (SEMSEARCH_SEARCH_MAX_HITS).
QUERY_HITS = 10_000
PAGE_LIMIT = 1000  # documents per page of GET /documents
MMR_FETCH_K = 20  # the server's default `mmr.fetch_k`
_MAX_RETRY_AFTER = 30.0
# Errors raised before the request left this machine: retrying them cannot apply a write twice.
_UNSENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)
# A file to upload: its path, or its bytes (with a name to tell its type).
UploadSource = str | os.PathLike[str] | bytes


@dataclass(frozen=True)
class Call(Generic[T]):
    """One request and how to read its answer: built once, sent by either client."""

    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    params: dict[str, Any] = field(default_factory=dict)
    json: Any = None
    timeout: float | None = None
    # A multipart form instead of JSON: {field: (file name, bytes, media type)} and text fields.
    files: dict[str, tuple[str, bytes, str]] | None = None
    data: dict[str, str] | None = None
    # False for what belongs to no one collection (health, keys, the collections themselves).
    scoped: bool = True


def document_path(doc_id: str) -> str:
    """The URL path of a document: every character of the id percent-encoded (slashes too), and the
    ids '.' and '..' spelled out, since a URL would otherwise read them as path steps."""
    if not doc_id:
        raise ValueError("a document id must not be empty")
    quoted = quote(doc_id, safe="")
    return "/documents/" + (quoted.replace(".", "%2E") if doc_id in (".", "..") else quoted)


def encode_json(body: Any) -> bytes:
    """`body` as JSON, as httpx would send it. A value strict JSON has no form for (NaN, a lone
    surrogate) is written as Python's json writes it, which the server reads: its rules then refuse
    the value naming the field, and the client keeps no copy of those rules (search/validation.py)."""
    try:
        return json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")
    except ValueError:  # UnicodeEncodeError is one
        return json.dumps(body, separators=(",", ":")).encode("ascii")


def _model(kind: type[M]) -> Callable[[httpx.Response], M]:
    return lambda response: kind.model_validate(response.json())


def _embeddings(response: httpx.Response) -> list[list[float]]:
    data = sorted(response.json()["data"], key=lambda item: item["index"])
    return [item["embedding"] for item in data]


def _api_keys(response: httpx.Response) -> list[ApiKey]:
    return [ApiKey.model_validate(key) for key in response.json()["keys"]]


def _json_object(response: httpx.Response) -> dict[str, Any]:
    return dict(response.json())


def _healthy(response: httpx.Response) -> bool:
    return bool(response.json().get("status") == "ok")


def merge_writes(results: Sequence[WriteResult]) -> WriteResult:
    reasons = list(dict.fromkeys(r.reason for r in results if r.reason))
    return WriteResult(
        added=[i for r in results for i in r.added],
        updated=[i for r in results for i in r.updated],
        unchanged=[i for r in results for i in r.unchanged],
        indexed=all(r.indexed for r in results),
        reason="; ".join(reasons) or None,
    )


def merge_batches(parts: Sequence[BatchResults]) -> BatchResults:
    return BatchResults(results=[hits for p in parts for hits in p.results], took_ms=sum(p.took_ms for p in parts))


def slices(items: Sequence[T], size: int) -> list[Sequence[T]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def query_slices(queries: Sequence[str], top_k: int, mmr: Mapping[str, Any] | None = None) -> list[Sequence[str]]:
    """`queries` in requests the server takes: at most QUERY_BATCH queries and QUERY_HITS hits each
    (MMR's fetch_k candidates count as hits). A top_k the server refuses anyway goes one query a
    request, for its 422 to name the problem."""
    fetch_k = (mmr or {}).get("fetch_k", MMR_FETCH_K if mmr is not None else 0)
    depth = max(top_k, fetch_k if isinstance(fetch_k, int) else 0)
    return slices(queries, max(1, min(QUERY_BATCH, QUERY_HITS // max(depth, 1))))


def new_documents(docs: Iterable[NewDocument | Mapping[str, Any]]) -> list[NewDocument]:
    return [d if isinstance(d, NewDocument) else NewDocument.model_validate(d) for d in docs]


class Requests:
    """The API's requests as `_Call`s, and the retry policy; the two clients below only send them."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        timeout: float,
        retries: int,
        backoff: float,
        collection: str = DEFAULT_COLLECTION,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        # The collection's routes are under /collections/{name}/; `default`'s also unprefixed, as before.
        self.prefix = "" if collection == DEFAULT_COLLECTION else "/collections/" + quote(collection, safe="")
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff

    def send_args(self, call: Call[Any]) -> dict[str, Any]:
        """The arguments of httpx's `request` for `call`, its body encoded once for every retry."""
        headers = dict(self.headers)
        content = None
        if call.json is not None:
            content = encode_json(call.json)
            headers["Content-Type"] = "application/json"
        url = self.base_url + (self.prefix if call.scoped else "") + call.path
        timeout = call.timeout or self.timeout
        return {
            "method": call.method,
            "url": url,
            "params": call.params,
            "content": content,
            "headers": headers,
            "timeout": timeout,
            "files": call.files,
            "data": call.data,
        }

    def delay(self, attempt: int, response: httpx.Response | None) -> float:
        """Seconds before retry `attempt` (0-based): the server's Retry-After when it gives seconds,
        else exponential backoff with jitter, so that many clients do not all come back at once."""
        header = response.headers.get("retry-after", "") if response is not None else ""
        try:
            return min(max(float(header), 0.0), _MAX_RETRY_AFTER)
        except ValueError:  # absent, or an HTTP date: back off on our own schedule
            return float(self.backoff * 2**attempt * (0.5 + random.random()))

    def retry(self, attempt: int, outcome: httpx.Response | Exception) -> bool:
        """Whether to try again after `outcome` (an answer, or a transport error) of attempt `attempt`."""
        if attempt >= self.retries:
            return False
        if isinstance(outcome, Exception):
            return isinstance(outcome, _UNSENT)
        return outcome.status_code in RETRY_STATUSES

    def finish(self, call: Call[T], outcome: httpx.Response | Exception) -> T:
        """The parsed answer, or the error it amounts to."""
        if isinstance(outcome, Exception):
            raise SemsearchError(f"cannot reach the semsearch server at {self.base_url}: {outcome!r}") from outcome
        raise_for_status(outcome)
        return call.parse(outcome)

    @staticmethod
    def paging(offset: int, sort: str | Mapping[str, Any] | None, facets: Sequence[str] | None) -> dict[str, Any]:
        """The paging fields of a search body that differ from the server's defaults."""
        sent: dict[str, Any] = {}
        if offset:
            sent["offset"] = offset
        if sort is not None:
            sent["sort"] = sort if isinstance(sort, str) else dict(sort)
        if facets:
            sent["facets"] = list(facets)
        return sent

    @staticmethod
    def _query(
        top_k: int,
        filter: Mapping[str, Any] | None,
        mode: str | None,
        min_score: float | None = None,
        mmr: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"top_k": top_k}
        if filter is not None:
            body["filter"] = dict(filter)
        if mode is not None:  # sent only when asked for: a server without search modes then refuses nothing
            body["mode"] = mode
        if min_score is not None:
            body["min_score"] = min_score
        if mmr is not None:
            body["mmr"] = dict(mmr)
        return body

    def search(
        self,
        query: str | None,
        top_k: int,
        filter: Mapping[str, Any] | None,
        mode: str | None,
        paging: Mapping[str, Any] | None = None,
        min_score: float | None = None,
        vector: Sequence[float] | None = None,
        mmr: Mapping[str, Any] | None = None,
    ) -> Call[SearchResults]:
        """A search by `query` or by `vector` (the server refuses both, or neither, by name); `paging`:
        offset, sort and facets, each sent only when set (a server without them then refuses nothing)."""
        body: dict[str, Any] = {**self._query(top_k, filter, mode, min_score, mmr), **(paging or {})}
        if query is not None:
            body["query"] = query
        if vector is not None:
            body["vector"] = [float(x) for x in vector]
        return Call("POST", "/search", _model(SearchResults), json=body)

    def search_batch(
        self,
        queries: Sequence[str],
        top_k: int,
        filter: Mapping[str, Any] | None,
        mode: str | None,
        min_score: float | None = None,
        mmr: Mapping[str, Any] | None = None,
    ) -> Call[BatchResults]:
        body = {"queries": list(queries), **self._query(top_k, filter, mode, min_score, mmr)}
        return Call("POST", "/search/batch", _model(BatchResults), json=body)

    def write(self, docs: Sequence[NewDocument], wait: bool, wait_timeout: float | None) -> Call[WriteResult]:
        """One PUT for a single document, else one POST (at most WRITE_BATCH documents)."""
        params: dict[str, Any] = {"wait": "true"} if wait else {}
        if wait and wait_timeout is not None:
            params["timeout"] = wait_timeout
        # The HTTP timeout must outlast the server's own wait (30 s unless told).
        timeout = self.timeout + ((wait_timeout or 30.0) if wait else 0.0)
        parse = _model(WriteResult)
        # An empty id has no path: sent in a list, it is refused by the server's rule, by name.
        if len(docs) == 1 and docs[0].id:
            body = docs[0].model_dump(exclude={"id"})
            return Call("PUT", document_path(docs[0].id), parse, params=params, json=body, timeout=timeout)
        body_list = [d.model_dump() for d in docs]
        return Call("POST", "/documents", parse, params=params, json=body_list, timeout=timeout)

    def upload(
        self,
        file: UploadSource,
        name: str | None,
        doc_id: str | None,
        metadata: Mapping[str, Any] | None,
        wait: bool,
        wait_timeout: float | None,
    ) -> Call[WriteResult]:
        """A file for POST /documents/upload: read by the server with the reader of its type."""
        if isinstance(file, bytes):
            if not name:
                raise ValueError("upload_document needs `name` (with its extension) when given bytes")
            content = file
        else:
            content = Path(file).read_bytes()
            name = name or Path(file).name
        media_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
        form: dict[str, str] = {}
        if doc_id is not None:
            form["id"] = doc_id
        if metadata is not None:
            form["metadata"] = encode_json(dict(metadata)).decode("utf-8")
        params: dict[str, Any] = {"wait": "true"} if wait else {}
        if wait and wait_timeout is not None:
            params["timeout"] = wait_timeout
        timeout = self.timeout + ((wait_timeout or 30.0) if wait else 0.0)
        files = {"file": (name, content, media_type)}
        return Call(
            "POST", "/documents/upload", _model(WriteResult), params=params, timeout=timeout, files=files, data=form
        )

    def get(self, doc_id: str) -> Call[Document]:
        return Call("GET", document_path(doc_id), _model(Document))

    def page(self, offset: int, limit: int) -> Call[DocumentPage]:
        return Call("GET", "/documents", _model(DocumentPage), params={"offset": offset, "limit": limit})

    def delete(self, doc_id: str) -> Call[Deleted]:
        return Call("DELETE", document_path(doc_id), _model(Deleted))

    def embed(self, texts: Sequence[str]) -> Call[list[list[float]]]:
        return Call("POST", "/v1/embeddings", _embeddings, json={"input": list(texts)})

    def stats(self) -> Call[Stats]:
        return Call("GET", "/stats", _model(Stats))

    def health(self) -> Call[bool]:
        return Call("GET", "/health", _healthy, scoped=False)

    def create_key(
        self, role: str, collections: Sequence[str] | None, expires_at: datetime | str | None, name: str
    ) -> Call[NewApiKey]:
        expiry = expires_at.isoformat() if isinstance(expires_at, datetime) else expires_at
        body = {"role": role, "collections": None if collections is None else list(collections), "name": name}
        return Call("POST", "/keys", _model(NewApiKey), json={**body, "expires_at": expiry}, scoped=False)

    def list_keys(self) -> Call[list[ApiKey]]:
        return Call("GET", "/keys", _api_keys, scoped=False)

    def revoke_key(self, key_id: str) -> Call[ApiKey]:
        return Call("DELETE", "/keys/" + quote(key_id, safe=""), _model(ApiKey), scoped=False)

    def create_collection(self, name: str, settings: Mapping[str, Any]) -> Call[dict[str, Any]]:
        path = "/collections/" + quote(name, safe="")
        return Call("PUT", path, _json_object, json=dict(settings), scoped=False)

    def list_collections(self) -> Call[list[dict[str, Any]]]:
        return Call("GET", "/collections", lambda r: list(r.json()["collections"]), scoped=False)

    def delete_collection(self, name: str) -> Call[dict[str, Any]]:
        return Call("DELETE", "/collections/" + quote(name, safe=""), _json_object, scoped=False)
