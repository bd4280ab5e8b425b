"""Who may do what: the roles of API keys, the collections a key reaches, and what a new key must satisfy.

One owner for these rules: the API (`POST /keys`), the CLI (`semsearch keys create`) and the server's
checks all use `Role` and `KeySpec` from here.

    read   search, read documents, embeddings, /stats and /metrics
    write  what read may, and create, replace and delete documents
    admin  what write may, and manage API keys (and, later, collections)

A key reaches every collection (`collections` None) or those it names. Every route today acts on the
collection named `default` (DEFAULT_COLLECTION).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from search.validation import FieldError, check_text

DEFAULT_COLLECTION = "default"
COLLECTION_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
MAX_KEY_NAME_CHARS = 200
MAX_KEY_COLLECTIONS = 100
_DURATION = re.compile(r"(\d{1,6})([smhdw])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


class Role(StrEnum):
    """What a key may do; each role may do all that the roles below it may."""

    READ = "read"
    WRITE = "write"
    ADMIN = "admin"

    def allows(self, needed: Role) -> bool:
        """Whether a key of this role may do what `needed` may."""
        order = list(Role)
        return order.index(self) >= order.index(needed)


def check_collection_name(name: object, field: str = "collection") -> str:
    """A collection name: 1 to 63 characters of a-z, 0-9, `_` and `-`, starting with a letter or digit."""
    if not isinstance(name, str):
        raise FieldError(field, f"must be a string, got {type(name).__name__}")
    if COLLECTION_NAME.fullmatch(name) is None:
        raise FieldError(
            field, f"{name[:70]!r} is not a collection name: 1 to 63 of a-z, 0-9, _ and -, starting with a-z or 0-9"
        )
    return name


def parse_expiry(value: object, now: datetime | None = None) -> datetime | None:
    """When a key expires: an ISO 8601 time (without a zone it is UTC) or a duration from now such as
    `90m`, `12h`, `30d` or `2w`; None for never."""
    if value is None or isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        duration = _DURATION.fullmatch(value.strip())
        if duration is not None:
            amount, unit = duration.groups()
            return (now or datetime.now(UTC)) + timedelta(**{_UNITS[unit]: int(amount)})
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            raise FieldError(
                "expires_at", f"{value[:40]!r} is neither an ISO 8601 time nor a duration like 30d, 12h or 90m"
            ) from None
    else:
        raise FieldError("expires_at", f"must be a string, got {type(value).__name__}")
    if moment is not None and moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment


class KeySpec(BaseModel):
    """A new API key, as `POST /keys` and `semsearch keys create` take it."""

    model_config = ConfigDict(extra="forbid")

    role: Role = Field(description="read, write or admin.")
    collections: list[str] | None = Field(
        default=None,
        max_length=MAX_KEY_COLLECTIONS,
        description="The collections the key reaches (null: all of them). Today's routes act on `default`.",
    )
    expires_at: datetime | None = Field(
        default=None, description="When the key stops working (ISO 8601, or a duration such as 30d); null: never."
    )
    name: str = Field(default="", max_length=MAX_KEY_NAME_CHARS, description="What the key is for.")

    @field_validator("collections")
    @classmethod
    def _collections(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        if not value:
            raise ValueError("name at least one collection, or leave collections out (null) for all of them")
        names = [check_collection_name(name, f"collections[{i}]") for i, name in enumerate(value)]
        return list(dict.fromkeys(names))

    @field_validator("expires_at", mode="before")
    @classmethod
    def _expiry(cls, value: Any) -> datetime | None:
        moment = parse_expiry(value)
        if moment is not None and moment <= datetime.now(UTC):
            raise ValueError(f"{moment.isoformat()} has passed: a key must expire in the future")
        return moment

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        bad = next((c for c in value if c in "\r\n\t" or ord(c) < 32), None)
        if bad is not None:
            raise ValueError(f"holds the control character {bad!r}")
        return check_text(value, "name")
