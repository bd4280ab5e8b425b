"""What the semsearch HTTP API answers, as the client reads it: the errors it raises and the typed results.

Each model has the fields of the server's schema of the same answer (tests/api/client/test_client_schema.py
checks them against the server's OpenAPI schema); fields an older server lacks have defaults. Every
model also keeps fields it does not know (a newer server's additions), reachable as attributes and
in `model_dump()`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field

RETRY_STATUSES = frozenset({429, 503})


class SemsearchError(Exception):
    """The server refused a request (`status_code` set) or could not be reached (`status_code` None).

    `message` is the server's own explanation (its `detail`), `body` the decoded response."""

    def __init__(self, message: str, status_code: int | None = None, body: Any = None) -> None:
        super().__init__(message if status_code is None else f"{status_code}: {message}")
        self.message = message
        self.status_code = status_code
        self.body = body


class AuthenticationError(SemsearchError):
    """401: the API key is missing, wrong, expired or revoked."""


class PermissionDeniedError(SemsearchError):
    """403: the API key is valid, but its role (or the collections it reaches) may not do this."""


class NotFoundError(SemsearchError):
    """404: no document (or API key) with that id, a key that does not reach the collection, or no such
    route (is the base URL right?)."""


class InvalidRequestError(SemsearchError):
    """400, 413 or 422: the request was refused as it is (a bad filter, an empty text, a body too large)."""


class ServerBusyError(SemsearchError):
    """429 or 503 still after every retry."""


class ServerError(SemsearchError):
    """Any other answer of 500 or above."""


class _Model(BaseModel):
    # Fields a newer server adds (e.g. hybrid search's per-retriever scores) are kept, not dropped.
    model_config = ConfigDict(extra="allow")


class RetrieverSignal(_Model):
    """What one retriever said of a document: its rank there (from 1) and its score (cosine or BM25)."""

    rank: int
    score: float


class Hit(_Model):
    """One ranked document with its best chunk; `start`/`end` are the chunk's offsets in the document text.
    `dense` and `keyword`: each retriever's rank and score (None where it did not return the document);
    `matched_terms`: words of the title and chunk that match the query's terms; `page`: the page the
    chunk starts on, for documents read from paged files (PDF), else None."""

    id: str
    chunk_id: int
    score: float
    title: str = ""
    text: str
    metadata: dict[str, Any] = Field(default_factory=dict)
    start: int
    end: int
    dense: RetrieverSignal | None = None
    keyword: RetrieverSignal | None = None
    matched_terms: list[str] = Field(default_factory=list)
    page: int | None = None


class FacetValue(_Model):
    """One value of a facet field and how many of the search's candidates hold it."""

    value: str | int | float | bool
    count: int


class SearchResults(_Model):
    """The ranked hits of one query, the server's time for it, and the value counts of the fields asked
    for as `facets` ({field: most frequent values first})."""

    results: list[Hit]
    took_ms: float
    facets: dict[str, list[FacetValue]] = Field(default_factory=dict)


class BatchResults(_Model):
    """One hit list per query, in query order."""

    results: list[list[Hit]]
    took_ms: float


class NewDocument(_Model):
    """A document to write: the server chunks and embeds the text; metadata is stored and filterable."""

    id: str
    text: str
    title: str = ""
    metadata: dict[str, Any] = Field(default_factory=dict)


# pending: queued for the indexing worker; indexed: its vectors are committed.
DocumentStatus = Literal["pending", "indexed"]


class Document(_Model):
    """A stored document and how far its indexing got."""

    id: str
    title: str
    text: str
    metadata: dict[str, Any]
    status: DocumentStatus | str  # a status of a newer server is kept as its name


class WriteResult(_Model):
    """Ids added, updated (re-embedded) and unchanged; `indexed` is true once all are searchable, and
    `reason` says why not, when a `wait` timed out because the indexing worker is known to be failing."""

    added: list[str]
    updated: list[str]
    unchanged: list[str]
    indexed: bool
    reason: str | None = None


class DocumentPage(_Model):
    """A page of documents in the order they were first written."""

    documents: list[Document]
    total: int
    offset: int
    limit: int


class Deleted(_Model):
    """A deleted document and the number of its chunks."""

    id: str
    chunks: int


KeyRole = Literal["read", "write", "admin"]


class ApiKey(_Model):
    """An API key as the server lists it (never its secret): `collections` None reaches every collection."""

    id: str
    name: str
    role: KeyRole | str  # a role of a newer server is kept as its name
    collections: list[str] | None
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None


class NewApiKey(ApiKey):
    """A key just created: `key` is the secret to pass as `api_key`, which the server shows this once."""

    key: str


class QueueHealth(_Model):
    """Written documents that are not searchable yet, and how long the oldest has waited."""

    unindexed_documents: int
    oldest_unindexed_seconds: float | None


class WorkerHealth(_Model):
    """The indexing worker running in the server's process (None when it runs elsewhere)."""

    consecutive_failures: int
    failures_total: int
    last_error: str | None
    seconds_since_last_error: float | None
    backoff_seconds: float
    failing: bool
    # Derived indexes (keyword, dense) that failed to catch up with SQL, with the error: stale until mended.
    stale_indexes: dict[str, str] = {}


class IndexLag(_Model):
    """How far one derived index the server searches has applied the change log: `lag` entries still
    to apply after seq `applied`, for `behind_seconds` as far as the server has seen."""

    applied: int | None
    head: int
    lag: int
    behind_seconds: float


class Stats(_Model):
    """What the service holds and how it embeds; `queue`: what waits for the indexing worker."""

    documents: int
    chunks: int
    vectors: int
    index_type: str
    generation: int | None
    model: str
    pooling: str
    dimension: int
    max_length: int
    queue: QueueHealth | None = None
    worker: WorkerHealth | None = None
    # Each derived index (dense, keyword) this server searches.
    indexes: dict[str, IndexLag] | None = None


def error_message(response: httpx.Response) -> str:
    """The server's explanation: its JSON `detail` (validation errors as `where: what` lines), or its text."""
    try:
        body = response.json()
    except ValueError:
        text = response.text.strip()
        return text[:2000] or response.reason_phrase or f"HTTP {response.status_code}"
    detail = body.get("detail", body) if isinstance(body, dict) else body
    if isinstance(body, dict) and isinstance(body.get("error"), dict) and "message" in body["error"]:
        detail = body["error"]["message"]  # the OpenAI-compatible routes (/v1/*) answer in OpenAI's shape
    if isinstance(detail, list):
        parts = []
        for item in detail:
            if isinstance(item, dict) and "msg" in item:
                where = ".".join(str(p) for p in item.get("loc", []))
                parts.append(f"{where}: {item['msg']}" if where else str(item["msg"]))
            else:
                parts.append(str(item))
        return "; ".join(parts)
    return detail if isinstance(detail, str) else str(detail)


def raise_for_status(response: httpx.Response) -> None:
    """A `SemsearchError` of the right kind for a 4xx or 5xx answer; nothing for 1xx-3xx."""
    status = response.status_code
    if status < 400:
        return
    try:
        body = response.json()
    except ValueError:
        body = response.text
    kinds: dict[int, type[SemsearchError]] = {401: AuthenticationError, 403: PermissionDeniedError, 404: NotFoundError}
    kind = kinds.get(status, SemsearchError)
    if status in (400, 413, 415, 422):
        kind = InvalidRequestError
    elif status in RETRY_STATUSES:
        kind = ServerBusyError
    elif status >= 500:
        kind = ServerError
    raise kind(error_message(response), status, body)
