"""What a write must satisfy for every later read to serve it, and how a read serves rows older than the rule.

One owner for the rules at the door: texts are valid Unicode (no lone UTF-16 surrogate, which no
UTF-8 encoder takes) and, where they are stored, hold no NUL (PostgreSQL text cannot); metadata is
a JSON object of finite numbers, 64-bit integers, valid strings, at most `MAX_METADATA_DEPTH`
levels deep and `MAX_METADATA_BYTES` as JSON. Each rule raises ValueError naming the field and the
place inside it, which the API turns into a 422.

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


def check_id(doc_id: str) -> str:
    """A document id as the store keeps it: 1 to 512 characters, no control characters."""
    if not 1 <= len(doc_id) <= MAX_ID_CHARS:
        raise ValueError(f"document id is {len(doc_id)} characters long; it must have 1 to {MAX_ID_CHARS}")
    bad = next((c for c in doc_id if unicodedata.category(c) in ("Cc", "Cs")), None)
    if bad is not None:
        raise ValueError(f"document id {doc_id[:40]!r} holds the control character {bad!r}")
    return doc_id


def is_utf8(text: str) -> bool:
    """Whether `text` encodes as UTF-8 (no lone UTF-16 surrogate)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_text(value: str, field: str, stored: bool = True) -> str:
    """`value` when it is valid Unicode (and, if `stored`, free of NUL); else ValueError naming `field`."""
    bad = _bad_char(value, stored)
    if bad is not None:
        raise ValueError(f"{field}: {bad}")
    return value


def check_metadata(meta: Mapping[str, Any], field: str = "metadata") -> dict[str, Any]:
    """`meta` as a dict when it satisfies every rule; else ValueError naming the path of the first bad value."""
    if not isinstance(meta, Mapping):
        raise ValueError(f"{field}: must be a JSON object, got {type(meta).__name__}")
    # Iterative: a value nested past the limit is reported, never a RecursionError.
    stack: list[tuple[str, Any, int]] = [(field, meta, 1)]
    while stack:
        path, value, depth = stack.pop()
        if isinstance(value, Mapping | list) and depth > MAX_METADATA_DEPTH:
            raise ValueError(f"{path}: nested deeper than {MAX_METADATA_DEPTH} levels")
        if isinstance(value, Mapping):
            for key, item in value.items():
                _check_key(path, key)
                stack.append((f"{path}.{key}", item, depth + 1))
        elif isinstance(value, list):
            stack.extend((f"{path}[{i}]", item, depth + 1) for i, item in enumerate(value))
        else:
            _check_scalar(path, value)
    size = len(json.dumps(meta, ensure_ascii=False).encode("utf-8"))
    if size > MAX_METADATA_BYTES:
        raise ValueError(f"{field}: {size} bytes as JSON; at most {MAX_METADATA_BYTES} are allowed")
    return dict(meta)


def _check_key(path: str, key: object) -> None:
    if not isinstance(key, str):
        raise ValueError(f"{path}: keys must be strings, got {type(key).__name__}")
    if len(key) > MAX_KEY_CHARS:
        raise ValueError(f"{path}: the key {key[:40]!r}... has {len(key)} characters; at most {MAX_KEY_CHARS}")
    bad = _bad_char(key, stored=True)
    if bad is not None:
        raise ValueError(f"{path}: the key {key[:40]!r} {bad}")


def _check_scalar(path: str, value: object) -> None:
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, str):
        check_text(value, path)
    elif isinstance(value, int):
        if not -INT64 <= value < INT64:
            raise ValueError(f"{path}: the integer {str(value)[:30]}... is outside the 64-bit range")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{path}: {value} is not a finite number (JSON has no NaN or Infinity)")
    else:
        raise ValueError(f"{path}: {type(value).__name__} is not a JSON value")


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
