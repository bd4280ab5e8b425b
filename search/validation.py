"""What a write must satisfy for every later read to serve it, and how a read serves rows older than the rule.

One owner for the rules at the door, which the API, the CLI and (through the API) the client apply
alike: `check_document` checks one incoming document. Its id has 1 to `MAX_ID_CHARS` characters,
not all blank, and no control character; its title at most `MAX_TITLE_CHARS`; its text is not
blank and at most `MAX_DOCUMENT_CHARS`. Texts are valid Unicode (no lone UTF-16 surrogate, which no
UTF-8 encoder takes) and, where they are stored, hold no NUL (PostgreSQL text cannot); metadata is
a JSON object of finite numbers, 64-bit integers, valid strings, at most `MAX_METADATA_DEPTH`
levels deep and `MAX_METADATA_BYTES` as JSON. Each rule raises `FieldError` (a ValueError) naming
the field and the place inside it, which the API turns into a 422 and the CLI into `file:line: reason`.

`json_safe` is the other side: a stored value (written before these rules, or by hand) made into
something every JSON encoder takes, so one old document never fails a read.
"""

from __future__ import annotations

import json
import math
import unicodedata
from collections.abc import Mapping
from typing import Any

# Deep enough for any real record; pydantic refuses to serialise values much deeper than 250 levels.
MAX_METADATA_DEPTH = 32
MAX_METADATA_BYTES = 64 * 1024
MAX_KEY_CHARS = 256
INT64 = 2**63  # JSON integers outside [-INT64, INT64) have no exact SQL or FAISS type
TOO_DEEP = "[nested too deep to show]"
MAX_ID_CHARS = 512
MAX_TITLE_CHARS = 4096
# Longest document text a write accepts: a million characters is a long book, which chunking splits
# into a few thousand vectors; with the API's default 16 MiB body limit a request holds several such
# documents. Longer documents should be split by the client.
MAX_DOCUMENT_CHARS = 1_000_000


class FieldError(ValueError):
    """A value refused at the door: `field` names it ("id", "text", "metadata.tags[2]"), `reason` says why."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def check_document(
    *, doc_id: object, title: object, text: object, metadata: object
) -> tuple[str, str, str, dict[str, Any]]:
    """Every rule for one incoming document (values as JSON decoded them): (id, title, text, metadata)
    when it passes, else FieldError naming the first field that breaks one."""
    return check_id(doc_id), check_title(title), check_document_text(text), check_metadata(metadata)


def check_id(doc_id: object) -> str:
    """A document id as the store keeps it: 1 to 512 characters, not only blanks, no control characters."""
    value = _string("id", doc_id)
    if not 1 <= len(value) <= MAX_ID_CHARS:
        raise FieldError("id", f"has {len(value)} characters; it must have 1 to {MAX_ID_CHARS}")
    if not value.strip():
        raise FieldError("id", f"{value!r} is blank")
    bad = next((c for c in value if unicodedata.category(c) in ("Cc", "Cs")), None)
    if bad is not None:
        raise FieldError("id", f"{value[:40]!r} holds the control character {bad!r}")
    return value


def check_title(title: object) -> str:
    """A title: valid Unicode without NUL, at most MAX_TITLE_CHARS characters."""
    value = _string("title", title)
    if len(value) > MAX_TITLE_CHARS:
        raise FieldError("title", f"has {len(value)} characters; at most {MAX_TITLE_CHARS} characters are allowed")
    return check_text(value, "title")


def check_document_text(text: object) -> str:
    """A document's text: not blank (there would be nothing to embed), at most MAX_DOCUMENT_CHARS
    characters, valid Unicode without NUL."""
    value = _string("text", text)
    if not value.strip():
        raise FieldError("text", "is blank: there is nothing to embed")
    if len(value) > MAX_DOCUMENT_CHARS:
        raise FieldError("text", f"has {len(value)} characters; at most {MAX_DOCUMENT_CHARS} characters are allowed")
    return check_text(value, "text")


def _string(field: str, value: object) -> str:
    if value is None:
        raise FieldError(field, "is required")
    if not isinstance(value, str):
        raise FieldError(field, f"must be a string, got {type(value).__name__}")
    return value


def is_utf8(text: str) -> bool:
    """Whether `text` encodes as UTF-8 (no lone UTF-16 surrogate)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_text(value: str, field: str, stored: bool = True) -> str:
    """`value` when it is valid Unicode (and, if `stored`, free of NUL); else FieldError naming `field`."""
    bad = _bad_char(value, stored)
    if bad is not None:
        raise FieldError(field, bad)
    return value


def check_metadata(meta: object, field: str = "metadata") -> dict[str, Any]:
    """`meta` as a dict when it satisfies every rule; else FieldError naming the path of the first bad value.

    Its size as JSON is counted from below as the walk goes, each container's share (brackets and
    separators, two bytes an item) before any of its items: a list of millions of items is refused
    at once, and no walk goes further than MAX_METADATA_BYTES of JSON would take it."""
    if not isinstance(meta, Mapping):
        raise FieldError(field, f"must be a JSON object, got {type(meta).__name__}")
    # Iterative: a value nested past the limit is reported, never a RecursionError.
    stack: list[tuple[str, Any, int]] = [(field, meta, 1)]
    size = 0  # bytes that json.dumps will write at least
    while stack:
        path, value, depth = stack.pop()
        if isinstance(value, Mapping | list) and depth > MAX_METADATA_DEPTH:
            raise FieldError(path, f"nested deeper than {MAX_METADATA_DEPTH} levels")
        size += _least_json_bytes(value)
        if size > MAX_METADATA_BYTES:
            raise FieldError(field, f"at least {size} bytes as JSON; at most {MAX_METADATA_BYTES} are allowed")
        if isinstance(value, Mapping):
            for key, item in value.items():
                _check_key(path, key)
                size += len(key)
                stack.append((f"{path}.{key}", item, depth + 1))
        elif isinstance(value, list):
            stack.extend((f"{path}[{i}]", item, depth + 1) for i, item in enumerate(value))
        else:
            _check_scalar(path, value)
    size = len(json.dumps(meta, ensure_ascii=False).encode("utf-8"))
    if size > MAX_METADATA_BYTES:
        raise FieldError(field, f"{size} bytes as JSON; at most {MAX_METADATA_BYTES} are allowed")
    return dict(meta)


def _least_json_bytes(value: object) -> int:
    """The fewest bytes json.dumps writes for `value`, not counting its keys' characters or its
    items: for a container its brackets and separators (and each key's quotes and colon), for a
    string its quotes and characters (each one byte at least), for any other scalar one."""
    if isinstance(value, Mapping):
        return 6 * len(value) if value else 2  # {}, '"": ' each key, ', ' between items
    if isinstance(value, list):
        return 2 * len(value) if value else 2  # [], ', ' between items
    if isinstance(value, str):
        return 2 + len(value)
    return 1


def _check_key(path: str, key: object) -> None:
    if not isinstance(key, str):
        raise FieldError(path, f"keys must be strings, got {type(key).__name__}")
    if len(key) > MAX_KEY_CHARS:
        raise FieldError(path, f"the key {key[:40]!r}... has {len(key)} characters; at most {MAX_KEY_CHARS}")
    bad = _bad_char(key, stored=True)
    if bad is not None:
        raise FieldError(path, f"the key {key[:40]!r} {bad}")


def _check_scalar(path: str, value: object) -> None:
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, str):
        check_text(value, path)
    elif isinstance(value, int):
        if not -INT64 <= value < INT64:
            raise FieldError(path, f"the integer {str(value)[:30]}... is outside the 64-bit range")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise FieldError(path, f"{value} is not a finite number (JSON has no NaN or Infinity)")
    else:
        raise FieldError(path, f"{type(value).__name__} is not a JSON value")


def _bad_char(text: str, stored: bool) -> str | None:
    """What is wrong with `text` (a phrase starting with "holds"), or None."""
    if stored and "\x00" in text:
        return f"holds a NUL character at position {text.index(chr(0))}, which the database cannot store"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"holds a lone UTF-16 surrogate {text[exc.start]!r} at position {exc.start}: it is not valid Unicode"
    return None


def json_safe(value: Any, max_depth: int = MAX_METADATA_DEPTH) -> Any:
    """`value` as every JSON encoder takes it: non-finite floats as their name ("NaN", "Infinity"),
    lone surrogates as U+FFFD, containers deeper than `max_depth` as a short note. The common case
    (nothing to change) returns `value` itself, so a read pays one walk and no copy."""
    changed, out = _safe(value, max_depth)
    return out if changed else value


def _safe(value: Any, depth: int) -> tuple[bool, Any]:
    if isinstance(value, float):
        return (False, value) if math.isfinite(value) else (True, _FLOAT_NAMES.get(str(value), str(value)))
    if isinstance(value, str):
        return (False, value) if _bad_char(value, stored=False) is None else (True, _replace_surrogates(value))
    if isinstance(value, Mapping | list | tuple):
        if depth <= 0:
            return True, TOO_DEEP
        if isinstance(value, Mapping):
            pairs = [(_safe(k, depth - 1), _safe(v, depth - 1)) for k, v in value.items()]
            if any(k[0] or v[0] for k, v in pairs):
                return True, {k[1]: v[1] for k, v in pairs}
            return False, value
        items = [_safe(v, depth - 1) for v in value]
        return (True, [v for _, v in items]) if any(c for c, _ in items) else (False, value)
    return False, value


_FLOAT_NAMES = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}


def _replace_surrogates(text: str) -> str:
    return "".join("\ufffd" if "\ud800" <= c <= "\udfff" else c for c in text)
