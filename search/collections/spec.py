"""What a collection may set for itself, and the settings it runs with: the server's `SEMSEARCH_*`
values with the collection's own on top. Each field's allowed values and bounds are the server
setting's (search/settings.py), checked there, once."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from search.embedding.space import Pooling
from search.settings import Fusion, KeywordLanguage, Settings
from search.validation import FieldError

# The settings that fix a collection's vectors: a collection created with others is another space.
EMBEDDING_FIELDS = ("model", "pooling", "max_length")


class CollectionSettings(BaseModel):
    """A collection's own settings; each one left out follows the server's SEMSEARCH_* setting."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    model: str | None = Field(default=None, description="Model name or local folder.")
    pooling: Pooling | None = None
    max_length: int | None = Field(default=None, description="Token limit of the model.")
    index_factory: str | None = Field(default=None, description="A FAISS index-factory string, or auto.")
    keyword_language: KeywordLanguage | None = None
    chunking: bool | None = None
    chunk_size: int | None = None
    chunk_overlap: int | None = None
    fusion: Fusion | None = None
    fusion_weight: float | None = None
    rrf_k: int | None = None
    candidates: int | None = None

    def given(self) -> dict[str, Any]:
        """The settings the collection sets itself."""
        return self.model_dump(exclude_none=True)


def effective(server: Settings, name: str, own: dict[str, Any]) -> Settings:
    """The settings collection `name` runs with: `server`'s, with the collection's `own` on top; a
    value the server's settings refuse is a FieldError naming the setting."""
    values = {**server.model_dump(exclude={"collection"}), **own, "collection": name}
    try:
        return Settings.model_validate(values)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "settings"
        raise FieldError(f"settings.{field}", first["msg"]) from None


def conflicts(stored: dict[str, Any], given: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """The settings `given` for an existing collection that differ from those it was made with (a
    setting it left to the server counts as the value `given` only when that is None)."""
    return {key: (stored.get(key), value) for key, value in given.items() if stored.get(key) != value}
