"""Request and response bodies of the query API."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from api.server.search_options import MAX_VECTOR_DIM, MMR_DOC, VECTOR_DOC, FiniteFloat, MMRRequest
from search.filters import check_filter_size
from search.query.hits import Mode
from search.query.paging import FACET_VALUES, MAX_FACETS, SORT_CANDIDATES
from search.validation import check_text

MAX_QUERY_CHARS = 4096
MAX_BATCH = 256
MAX_EMBED_INPUTS = 2048

_FILTER_DOC = (
    "Only documents whose metadata passes: equality on a field (a string, number or boolean), or "
    '{"field": {op: value}} with $eq, $ne, $gt, $gte, $lt, $lte (numbers), $in, $nin (lists), $exists '
    "(true/false) or $not; filters join with $and, $or (lists) and $not. Several keys of one object must all "
    "hold; $ne, $nin, $not and $exists: false pass documents without the field. The filter applies inside the "
    "nearest-neighbour search, so top_k matching documents come back whenever that many exist."
)
_FILTER_EXAMPLES: list[Any] = [
    {"kind": "animal"},
    {"kind": {"$in": ["animal", "sky"]}, "year": {"$gte": 2000}},
    {"$or": [{"kind": "sky"}, {"year": {"$lt": 1970}}]},
]


_MODE_DOC = (
    "hybrid (default): the dense and keyword (BM25) rankings fused per document; dense: vectors only; "
    "keyword: BM25 only (the query is not embedded)."
)
_MIN_SCORE_DOC = (
    "Only hits scoring at least this (fewer than top_k then, or none). A score is the document's own: in hybrid "
    "mode in [0, 1] (half its cosine, half its BM25 over the query's bound), in dense mode its cosine, in "
    "keyword mode its BM25."
)


_OFFSET_DOC = (
    "Results to skip: a page is items offset+1 to offset+top_k of the ranking, the same items whatever the page "
    "size. offset + top_k is at most SEMSEARCH_SEARCH_MAX_HITS (default 10,000), and at most "
    f"{SORT_CANDIDATES} with sort or facets; past it, 422."
)
_SORT_DOC = (
    f"Order the {SORT_CANDIDATES} most relevant documents matching the query and filter by a metadata field: "
    '{"field": "year", "order": "desc"} or the short form "-year" ("year": ascending). Ascending: numbers, '
    "then false, true, then strings (by code point); descending is the reverse. Documents without the field "
    "come last; equal values keep relevance order."
)
_SORT_EXAMPLES: list[Any] = [{"field": "year", "order": "desc"}, "-year"]
_FACETS_DOC = (
    f"Up to {MAX_FACETS} metadata fields to count values of, over the {SORT_CANDIDATES} most relevant documents "
    "matching the query and filter (the candidates sort orders); named like filter fields."
)


class RequestBody(BaseModel):
    """Every JSON request body: a field the route does not know is a 422 naming it, never ignored."""

    model_config = ConfigDict(extra="forbid")


class SearchRequest(RequestBody):
    """A query (or its vector) and how many documents to return."""

    query: str | None = Field(
        default=None, min_length=1, max_length=MAX_QUERY_CHARS, description="Free text, embedded like documents."
    )
    vector: list[FiniteFloat] | None = Field(
        default=None, min_length=1, max_length=MAX_VECTOR_DIM, description=VECTOR_DOC
    )
    top_k: int = Field(default=10, ge=1, le=1000, description="Number of documents to return.")
    filter: dict[str, Any] | None = Field(default=None, description=_FILTER_DOC, examples=_FILTER_EXAMPLES)
    mode: Mode = Field(default="hybrid", description=_MODE_DOC + " With a vector: dense, the only mode it has.")
    min_score: float | None = Field(default=None, allow_inf_nan=False, description=_MIN_SCORE_DOC)
    offset: int = Field(default=0, ge=0, description=_OFFSET_DOC)
    sort: str | dict[str, Any] | None = Field(default=None, description=_SORT_DOC, examples=_SORT_EXAMPLES)
    facets: list[str] = Field(default_factory=list, description=_FACETS_DOC)
    mmr: MMRRequest | None = Field(default=None, description=MMR_DOC)

    @model_validator(mode="after")
    def _query_or_vector(self) -> SearchRequest:
        if (self.query is None) == (self.vector is None):
            raise ValueError("send either 'query' (text) or 'vector' (its embedding), exactly one of them")
        if self.vector is not None:
            if "mode" not in self.model_fields_set:
                self.mode = "dense"
            elif self.mode != "dense":
                raise ValueError(f"mode {self.mode!r} needs a query text: a 'vector' searches in dense mode only")
        if self.mmr is not None:
            self.mmr.settings().check_k(self.top_k)
        return self

    @field_validator("filter", mode="before")
    @classmethod
    def _filter_size(cls, value: Any) -> Any:
        check_filter_size(value)
        return value

    # Checked here, before the text can reach a forward pass shared with other requests.
    @field_validator("query")
    @classmethod
    def _valid_unicode(cls, value: str | None) -> str | None:
        return value if value is None else check_text(value, "query", stored=False)


class BatchSearchRequest(RequestBody):
    """Several queries, embedded in one batch."""

    queries: list[str] = Field(
        min_length=1,
        max_length=MAX_BATCH,
        description="The queries; with top_k, at most SEMSEARCH_SEARCH_MAX_HITS (default 10,000) hits in all "
        "(len(queries) x top_k), else 422: send more in several requests.",
    )
    top_k: int = Field(default=10, ge=1, le=1000)
    filter: dict[str, Any] | None = Field(default=None, description=_FILTER_DOC, examples=_FILTER_EXAMPLES)
    mode: Mode = Field(default="hybrid", description=_MODE_DOC)
    min_score: float | None = Field(default=None, allow_inf_nan=False, description=_MIN_SCORE_DOC)
    mmr: MMRRequest | None = Field(default=None, description=MMR_DOC)

    @model_validator(mode="after")
    def _mmr_depth(self) -> BatchSearchRequest:
        if self.mmr is not None:
            self.mmr.settings().check_k(self.top_k)
        return self

    @field_validator("filter", mode="before")
    @classmethod
    def _filter_size(cls, value: Any) -> Any:
        check_filter_size(value)
        return value

    @field_validator("queries")
    @classmethod
    def _valid_unicode(cls, value: list[str]) -> list[str]:
        for i, query in enumerate(value):
            check_text(query, f"queries[{i}]", stored=False)
        return value


class RetrieverSignal(BaseModel):
    """What one retriever said of a document."""

    rank: int = Field(description="The document's rank in that retriever's list, from 1.")
    score: float = Field(description="Its score there: cosine similarity (dense) or BM25 (keyword).")


class SearchResult(BaseModel):
    """One document with the chunk that matched best (character offsets into the document)."""

    id: str = Field(description="The document's id as it was indexed.")
    chunk_id: int = Field(description="The chunk's key (its vector's id).")
    score: float = Field(
        description="Ranking score: fused (RRF or convex) in hybrid mode, cosine in dense mode, BM25 in keyword mode."
    )
    title: str
    text: str = Field(description="The chunk text.")
    metadata: dict[str, Any]
    start: int = Field(description="Offset of the chunk's first character in the document text.")
    end: int = Field(description="Offset one past the chunk's last character.")
    dense: RetrieverSignal | None = Field(
        default=None, description="The dense retriever's rank and cosine score; null if it did not return the document."
    )
    keyword: RetrieverSignal | None = Field(
        default=None, description="The keyword retriever's rank and BM25 score; null if it did not return the document."
    )
    matched_terms: list[str] = Field(
        default_factory=list, description="Words of the title and chunk (as written) that match the query's terms."
    )
    page: int | None = Field(
        default=None,
        description="The page (from 1) the chunk starts on, for documents read from paged files (PDF); else null.",
    )


class FacetValue(BaseModel):
    """One value of a facet field and how many candidates hold it."""

    value: str | int | float | bool
    count: int


class SearchResponse(BaseModel):
    """Ranked results and the server-side time they took."""

    results: list[SearchResult]
    took_ms: float
    facets: dict[str, list[FacetValue]] = Field(
        default_factory=dict,
        description=f"Per field asked for in `facets`: its {FACET_VALUES} most frequent values among the candidates "
        "(most frequent first, ties in sort order).",
    )


class BatchSearchResponse(BaseModel):
    """One result list per query, in query order."""

    results: list[list[SearchResult]]
    took_ms: float


class WorkerHealth(BaseModel):
    """The indexing worker running in this process (absent when it runs elsewhere)."""

    consecutive_failures: int
    failures_total: int
    last_error: str | None
    seconds_since_last_error: float | None
    backoff_seconds: float = Field(description="How long it waits before its next try (doubles per failure).")
    failing: bool = Field(description="True once its consecutive failures used up the error budget.")
    stale_indexes: dict[str, str] = Field(
        default_factory=dict,
        description="Derived indexes (keyword, dense) whose last catch-up with SQL failed, with the error: "
        "their results miss recent writes until a catch-up succeeds (the worker retries at every publish).",
    )


class QueueHealth(BaseModel):
    """Written documents that are not searchable yet, read from SQL (so any worker process is covered)."""

    unindexed_documents: int
    oldest_unindexed_seconds: float | None


class IndexLag(BaseModel):
    """How far one derived index this server searches has applied the change log."""

    applied: int | None = Field(description="The last log seq it applied (null: never built).")
    head: int = Field(description="The newest log seq.")
    lag: int = Field(
        description="Log entries after `applied` it still has to apply (head - applied, less entries of no use "
        "to it; all of head - applied when the log was compacted past it and it must be rebuilt)."
    )
    behind_seconds: float = Field(
        description="How long ago this server first saw a log entry the index has not applied yet (0: caught up)."
    )


class Health(BaseModel):
    """Liveness, and whether indexing keeps up: `degraded`, with the reasons, when the worker is failing,
    a written document has waited too long, or the database does not answer."""

    status: Literal["ok", "degraded"] = "ok"
    problems: list[str] = Field(default_factory=list)
    queue: QueueHealth | None = None
    worker: WorkerHealth | None = None
    # Absent when the database did not answer.
    indexes: dict[str, IndexLag] | None = None


class Stats(BaseModel):
    """What the service holds and how it embeds."""

    documents: int
    chunks: int
    vectors: int
    index_type: str
    generation: int | None
    model: str
    pooling: str
    dimension: int
    max_length: int
    queue: QueueHealth
    worker: WorkerHealth | None
    indexes: dict[str, IndexLag] | None = None


class EmbeddingsRequest(RequestBody):
    """OpenAI-compatible embeddings request, as the official `openai` client sends it."""

    input: str | list[str] = Field(description="A text or a list of texts (token ids are not accepted).")
    model: str | None = Field(
        default=None,
        description="The serving model's name (GET /v1/models), or left out; another name is a 404 model_not_found.",
    )
    encoding_format: Literal["float", "base64"] = Field(
        default="float",
        description="float: lists of numbers; base64: each vector's little-endian float32 bytes in base64 "
        "(the `openai` client's default).",
    )
    dimensions: int | None = Field(
        default=None, ge=1, description="Vector length; the service's model only makes vectors of its own dimension."
    )
    user: str | None = Field(default=None, description="Accepted for compatibility; not used.")

    @field_validator("input", mode="before")
    @classmethod
    def _texts_only(cls, value: Any) -> Any:
        # The count first: every later check walks the list.
        if isinstance(value, list) and len(value) > MAX_EMBED_INPUTS:
            raise ValueError(f"'input' must hold 1 to {MAX_EMBED_INPUTS} texts, got {len(value)}")
        if isinstance(value, list) and any(isinstance(item, int | list) for item in value):
            raise ValueError(
                "token-id inputs are not supported: this service tokenises with its own model's tokenizer; "
                "send the texts themselves (a string or a list of strings)"
            )
        return value

    @field_validator("input")
    @classmethod
    def _valid_unicode(cls, value: str | list[str]) -> str | list[str]:
        for i, text in enumerate([value] if isinstance(value, str) else value):
            check_text(text, "input" if isinstance(value, str) else f"input[{i}]", stored=False)
        return value


class Embedding(BaseModel):
    """One vector, at its input position: numbers, or their float32 bytes in base64."""

    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class Usage(BaseModel):
    """Token counts, as the OpenAI protocol reports them."""

    prompt_tokens: int
    total_tokens: int


class EmbeddingsResponse(BaseModel):
    """OpenAI-compatible embeddings response."""

    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: Usage


class ErrorBody(BaseModel):
    """Every error: a message a person can act on."""

    detail: str | list[dict[str, Any]]
