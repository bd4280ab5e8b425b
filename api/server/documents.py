"""The documents resource's bodies and answers, with the checks every write passes at the door (the
routes are in api/server/document_routes.py)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

from api.server.schemas import RequestBody
from search.validation import (
    MAX_DOCUMENT_CHARS,
    MAX_ID_CHARS,
    MAX_TITLE_CHARS,
    check_document_text,
    check_id,
    check_metadata,
    check_title,
)

MAX_WRITE_BATCH = 1000
Status = Literal["pending", "indexed"]


class DocumentBody(RequestBody):
    """A document's content: the text is chunked and embedded; the title is prepended to every chunk's
    embedding input; metadata is stored as it is and can be filtered on: a JSON object of finite
    numbers, strings and booleans, at most 32 levels deep and 64 KiB as JSON."""

    # The schema declares search.validation's limits; its rules (the validators below) apply them.
    title: str = Field(default="", json_schema_extra={"maxLength": MAX_TITLE_CHARS})
    text: str = Field(
        description="The text to index.", json_schema_extra={"minLength": 1, "maxLength": MAX_DOCUMENT_CHARS}
    )
    metadata: dict[str, Any] = Field(default_factory=dict)

    # Every rule is search.validation's, which the CLI applies too: the doors refuse the same documents.
    @field_validator("text")
    @classmethod
    def _valid_text(cls, value: str) -> str:
        return check_document_text(value)

    @field_validator("title")
    @classmethod
    def _valid_title(cls, value: str) -> str:
        return check_title(value)

    # Before pydantic's own walk (a copy of every key): check_metadata refuses an oversized value
    # before walking it.
    @field_validator("metadata", mode="before")
    @classmethod
    def _valid_metadata(cls, value: object) -> dict[str, Any]:
        return check_metadata(value)


class DocumentWrite(DocumentBody):
    """A document with its id, for `POST /documents`."""

    id: str = Field(
        description="Your id of the document.", json_schema_extra={"minLength": 1, "maxLength": MAX_ID_CHARS}
    )

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
