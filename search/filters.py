"""Metadata filters: a small MongoDB-like language, validated here; search/storage/metadata_index.py runs them.

    {"kind": "animal"}                       equality (a string, number or boolean)
    {"kind": {"$in": ["animal", "sky"]}}     one of several values
    {"year": {"$gte": 2000, "$lt": 2010}}    numeric range; operators on one field combine with AND

Several fields combine with AND. Field names and values always travel as bound parameters. The size
of a filter is bounded (fields, and values over all its `$in` lists), and each `$in` is one SQL IN
list, so the cost per document grows with the number of fields, not with the number of values.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from search.validation import INT64, is_utf8

Scalar = str | int | float | bool
RANGE_OPS = ("$gt", "$gte", "$lt", "$lte")
OPERATORS = ("$in", *RANGE_OPS)
MAX_FIELDS = 32
MAX_IN_VALUES = 1024
# Over all the fields' $in lists together: SQLite binds at most 32,766 parameters a statement.
MAX_FILTER_VALUES = 4096
MAX_FIELD_CHARS = 128
# SQLite reads a field as a JSON path ('$."name"'), so a quote or backslash would change the path's
# meaning; control characters (NUL above all) cannot be stored in PostgreSQL text at all.
_BAD_FIELD = re.compile(r'["\\\x00-\x1f]')


@dataclass(frozen=True)
class Condition:
    """One test on one field: `op` is "$eq", "$in" or a range operator."""

    field: str
    op: str
    value: Scalar | tuple[Scalar, ...]

    def holds(self, metadata: Mapping[str, Any]) -> bool:
        """Whether a document's metadata passes, with the metadata index's semantics: a top-level
        value of the same JSON type, numbers compared by value, ranges on numbers only."""
        value = metadata.get(self.field)
        if self.op in RANGE_OPS:
            wanted = self.value
            if not isinstance(value, int | float) or not _is_number(value) or not isinstance(wanted, int | float):
                return False
            if self.op == "$gt":
                return value > wanted
            if self.op == "$gte":
                return value >= wanted
            return value < wanted if self.op == "$lt" else value <= wanted
        options = self.value if isinstance(self.value, tuple) else (self.value,)
        return any(_same(value, option) for option in options)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _same(value: object, wanted: Scalar) -> bool:
    if isinstance(wanted, bool) or isinstance(value, bool):
        return value is wanted
    if isinstance(wanted, str):
        return isinstance(value, str) and value == wanted
    return _is_number(value) and value == wanted


@dataclass(frozen=True)
class MetadataFilter:
    """A validated filter: every condition must hold (AND)."""

    conditions: tuple[Condition, ...]

    def holds(self, metadata: Mapping[str, Any]) -> bool:
        """Whether a document's metadata passes every condition (checked on search results)."""
        return isinstance(metadata, Mapping) and all(c.holds(metadata) for c in self.conditions)


def parse_filter(raw: Mapping[str, Any] | MetadataFilter | None) -> MetadataFilter | None:
    """Validate a filter as sent by a client; raises ValueError naming the bad field, operator or value."""
    if raw is None or isinstance(raw, MetadataFilter):
        return raw
    if not isinstance(raw, Mapping):
        raise ValueError(f"filter must be an object of field: condition, got {_show(raw)}")
    if not raw:
        return None  # {} filters nothing out: the same as no filter
    check_filter_size(raw)
    conditions: list[Condition] = []
    for field, spec in raw.items():
        check_field(field)
        if isinstance(spec, Mapping):
            conditions.extend(_operators(field, spec))
        else:
            conditions.append(Condition(field, "$eq", _scalar(field, "equality", spec)))
    values = sum(len(c.value) if isinstance(c.value, tuple) else 1 for c in conditions)
    if values > MAX_FILTER_VALUES:
        raise ValueError(f"filter holds {values} values over all its fields; at most {MAX_FILTER_VALUES} are allowed")
    return MetadataFilter(tuple(conditions))


def check_filter_size(raw: object) -> None:
    """Raise ValueError when `raw` holds more fields than a filter may: the one check that needs no
    walk, made before anything (pydantic's copy of each key among them) walks it."""
    if isinstance(raw, Mapping) and len(raw) > MAX_FIELDS:
        raise ValueError(f"filter has {len(raw)} fields; at most {MAX_FIELDS} are allowed")


def check_field(field: object, role: str = "filter field") -> None:
    """The rules of every metadata field a request names (`role`: what names it, for the message):
    filters, and search/query/paging.py's sort and facets."""
    if not isinstance(field, str) or not field:
        raise ValueError(f"{role} names must be non-empty strings, got {_show(field)}")
    if field.startswith("$"):
        raise ValueError(f"{role} {field!r}: top-level operators are not supported; name a metadata field")
    if len(field) > MAX_FIELD_CHARS or _BAD_FIELD.search(field) or not is_utf8(field):
        raise ValueError(
            f"{role} {field[:40]!r}: field names have at most {MAX_FIELD_CHARS} characters "
            "and no quotes, backslashes or control characters"
        )


def _operators(field: str, spec: Mapping[str, Any]) -> list[Condition]:
    if not spec:
        raise ValueError(f"filter field {field!r}: an empty object; use a value or one of {', '.join(OPERATORS)}")
    out: list[Condition] = []
    for op, value in spec.items():
        if op == "$in":
            if not isinstance(value, list):
                raise ValueError(f"filter field {field!r}: $in needs a list of values, got {_show(value)}")
            if len(value) > MAX_IN_VALUES:
                raise ValueError(f"filter field {field!r}: $in has {len(value)} values; at most {MAX_IN_VALUES}")
            out.append(Condition(field, op, tuple(_scalar(field, op, v) for v in value)))
        elif op in RANGE_OPS:
            out.append(Condition(field, op, _number(field, op, value)))
        else:
            raise ValueError(f"filter field {field!r}: unknown operator {_show(op)}; use one of {', '.join(OPERATORS)}")
    return out


def _scalar(field: str, op: str, value: object) -> Scalar:
    if isinstance(value, str):
        if "\x00" in value or not is_utf8(value):
            raise ValueError(f"filter field {field!r}: {op} value holds a NUL or an unpaired surrogate character")
        return value
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return _number(field, op, value)
    raise ValueError(f"filter field {field!r}: {op} needs a string, number or boolean, got {_show(value)}")


def _number(field: str, op: str, value: object) -> int | float:
    # bool is an int in Python, but `{"$gt": true}` is a mistake worth naming.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"filter field {field!r}: {op} needs a number, got {_show(value)}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"filter field {field!r}: {op} needs a finite number, got {value}")
    if isinstance(value, int) and not -INT64 <= value < INT64:
        raise ValueError(f"filter field {field!r}: {op} value {value} is outside the 64-bit integer range")
    return value


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
