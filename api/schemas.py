"""Request and response bodies of the query API."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from search.hybrid import Mode

MAX_QUERY_CHARS = 4096
MAX_BATCH = 256
# Longest document text the write endpoints accept: a million characters is a long book, which
# chunking splits into a few thousand vectors; with the default 16 MiB body limit a request holds
# several such documents. Longer documents should be split by the client.
MAX_DOCUMENT_CHARS = 1_000_000

_FILTER_DOC = (
    "Only documents whose metadata passes: equality on a field (a string, number or boolean), "
    '{"field": {"$in": [values]}}, or numeric {"field": {"$gt"|"$gte"|"$lt"|"$lte": number}}. '
    "Several operators on one field, and several fields, must all hold. The filter applies inside the "
    "nearest-neighbour search, so top_k matching documents come back whenever that many exist."
)
_FILTER_EXAMPLES: list[Any] = [{"kind": "animal"}, {"kind": {"$in": ["animal", "sky"]}, "year": {"$gte": 2000}}]


_MODE_DOC = (
    "hybrid (default): the dense and keyword (BM25) rankings fused per document; dense: vectors only; "
    "keyword: BM25 only (the query is not embedded)."
)


class SearchRequest(BaseModel):
    """A query and how many documents to return."""

    query: str = Field(min_length=1, max_length=MAX_QUERY_CHARS, description="Free text, embedded like documents.")
    top_k: int = Field(default=10, ge=1, le=1000, description="Number of documents to return.")
    filter: dict[str, Any] | None = Field(default=None, description=_FILTER_DOC, examples=_FILTER_EXAMPLES)
    mode: Mode = Field(default="hybrid", description=_MODE_DOC)


class BatchSearchRequest(BaseModel):
    """Several queries, embedded in one batch."""

    queries: list[str] = Field(min_length=1, max_length=MAX_BATCH)
    top_k: int = Field(default=10, ge=1, le=1000)
    filter: dict[str, Any] | None = Field(default=None, description=_FILTER_DOC, examples=_FILTER_EXAMPLES)
    mode: Mode = Field(default="hybrid", description=_MODE_DOC)


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


class SearchResponse(BaseModel):
    """Ranked results and the server-side time they took."""

    results: list[SearchResult]
    took_ms: float


class BatchSearchResponse(BaseModel):
    """One result list per query, in query order."""

    results: list[list[SearchResult]]
    took_ms: float


class Health(BaseModel):
    """Liveness."""

    status: Literal["ok"] = "ok"


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


class EmbeddingsRequest(BaseModel):
    """OpenAI-compatible embeddings request."""

    input: str | list[str] = Field(description="A text or a list of texts.")
    model: str | None = Field(default=None, description="Accepted for compatibility; the service's model is used.")
    encoding_format: Literal["float"] = "float"


class Embedding(BaseModel):
    """One vector, at its input position."""

    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float]


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
