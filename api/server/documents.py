"""The documents resource's bodies and answers, with the checks every write passes at the door (the
routes are in api/server/document_routes.py)."""

from __future__ import annotations

import unicodedata
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

from api.server.schemas import MAX_DOCUMENT_CHARS
from search.validation import check_metadata, check_text

MAX_WRITE_BATCH = 1000
MAX_ID_CHARS = 512
Status = Literal["pending", "indexed"]


def check_id(doc_id: str) -> str:
    """A document id as the store keeps it: 1 to 512 characters, no control characters."""
    if not 1 <= len(doc_id) <= MAX_ID_CHARS:
        raise ValueError(f"document id is {len(doc_id)} characters long; it must have 1 to {MAX_ID_CHARS}")
    bad = next((c for c in doc_id if unicodedata.category(c) in ("Cc", "Cs")), None)
    if bad is not None:
        raise ValueError(f"document id {doc_id[:40]!r} holds the control character {bad!r}")
    return doc_id


class DocumentBody(BaseModel):
    """A document's content: the text is chunked and embedded; the title is prepended to every chunk's
    embedding input; metadata is stored as it is and can be filtered on: a JSON object of finite
    numbers, strings and booleans, at most 32 levels deep and 64 KiB as JSON."""

    title: str = Field(default="", max_length=4096)
    text: str = Field(min_length=1, max_length=MAX_DOCUMENT_CHARS, description="The text to index.")
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("text")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("text is blank: there is nothing to embed")
        return check_text(value, "text")

    @field_validator("title")
    @classmethod
    def _valid_title(cls, value: str) -> str:
        return check_text(value, "title")

    # What every later read depends on is checked here, at the door (search.validation owns the rules).
    @field_validator("metadata")
    @classmethod
    def _valid_metadata(cls, value: dict[str, Any]) -> dict[str, Any]:
        return check_metadata(value)


class DocumentWrite(DocumentBody):
    """A document with its id, for `POST /documents`."""

    id: str = Field(min_length=1, max_length=MAX_ID_CHARS, description="Your id of the document.")

    @field_validator("id")
    @classmethod
    def _valid_id(cls, value: str) -> str:
        return check_id(value)


class DocumentOut(BaseModel):
    """A stored document and how far its indexing got: pending (queued for the worker) or indexed (its
    vectors are committed; every server applies them within its reload interval)."""

    id: str
    title: str
    text: str
    metadata: dict[str, Any]
    status: Status


class WriteResult(BaseModel):
    """What a write did: ids added, updated (new text, queued again) and unchanged (same title and
    text; only the metadata was replaced, nothing re-embedded)."""

    added: list[str]
    updated: list[str]
    unchanged: list[str]
    indexed: bool = Field(description="True when `wait=true` saw every written document searchable.")
    reason: str | None = Field(
        default=None, description="Why `wait=true` timed out, when the indexing worker is known to be failing."
    )


class DocumentPage(BaseModel):
    """A page of documents in the order they were first written."""

    documents: list[DocumentOut]
    total: int
    offset: int
    limit: int


class Deleted(BaseModel):
    """A deleted document: from this response on, it is in no search result."""

    id: str
    chunks: int
