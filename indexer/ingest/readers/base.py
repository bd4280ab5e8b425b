"""What every reader gives and how it fails: one interface, so the CLI and the upload route treat all
formats alike."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class Extracted:
    """A file's text as it will be stored and served (chunk offsets point into it), its title where
    the file names one, and the metadata it carries (front matter, language, page starts)."""

    text: str
    title: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


class ReadError(ValueError):
    """A file of a supported type that could not be read: `reason` says why in words a user can act on
    (an encrypted PDF, a PDF without a text layer, text that is not UTF-8, a damaged file)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Reader(Protocol):
    """One document format: the file extensions (lower case, with the dot) and media types it reads,
    and `read`, which turns a file's bytes (`name` is its file name, for messages and a default
    title) into text or raises ReadError."""

    @property
    def suffixes(self) -> tuple[str, ...]: ...

    @property
    def media_types(self) -> tuple[str, ...]: ...

    def read(self, data: bytes, name: str) -> Extracted: ...


def decode_utf8(data: bytes) -> str:
    """`data` as UTF-8 text (a leading byte-order mark dropped), else ReadError saying where it is not."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ReadError(f"not UTF-8 (byte {exc.start})") from exc


def plain_values(value: Any) -> Any:
    """`value` with dates and times as ISO 8601 strings (YAML and document properties give them as
    objects, which JSON has not); anything else is left for search.validation to judge."""
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {k: plain_values(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain_values(v) for v in value]
    return value
