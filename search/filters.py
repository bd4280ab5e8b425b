"""Metadata filters: a small MongoDB-like language, validated, then turned into SQL over `Document.meta`.

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
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, Numeric, and_, case, cast, false, func, literal, or_, type_coerce
from sqlalchemy.dialects.postgresql import JSONB

from search.models import Document

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
_INT64 = 2**63


@dataclass(frozen=True)
class Condition:
    """One test on one field: `op` is "$eq", "$in" or a range operator."""

    field: str
    op: str
    value: Scalar | tuple[Scalar, ...]


@dataclass(frozen=True)
class MetadataFilter:
    """A validated filter: every condition must hold (AND)."""

    conditions: tuple[Condition, ...]

    def condition(self, dialect: str) -> ColumnElement[bool]:
        """The SQL condition on `Document.meta` for a database dialect ("sqlite" or "postgresql")."""
        if dialect == "postgresql":
            first, *rest = (_pg_condition(c) for c in self.conditions)
            return and_(first, *rest)
        first, *rest = (_sqlite_condition(c) for c in self.conditions)
        # A row whose metadata SQLite cannot parse (a NaN stored before writes were validated) would
        # fail the whole query in json_extract: it matches nothing instead. CASE is evaluated lazily.
        return case((func.json_valid(Document.meta) == 1, and_(first, *rest)), else_=false())


def parse_filter(raw: Mapping[str, Any] | MetadataFilter | None) -> MetadataFilter | None:
    """Validate a filter as sent by a client; raises ValueError naming the bad field, operator or value."""
    if raw is None or isinstance(raw, MetadataFilter):
        return raw
    if not isinstance(raw, Mapping):
        raise ValueError(f"filter must be an object of field: condition, got {_show(raw)}")
    if not raw:
        return None  # {} filters nothing out: the same as no filter
    if len(raw) > MAX_FIELDS:
        raise ValueError(f"filter has {len(raw)} fields; at most {MAX_FIELDS} are allowed")
    conditions: list[Condition] = []
    for field, spec in raw.items():
        _check_field(field)
        if isinstance(spec, Mapping):
            conditions.extend(_operators(field, spec))
        else:
            conditions.append(Condition(field, "$eq", _scalar(field, "equality", spec)))
    values = sum(len(c.value) if isinstance(c.value, tuple) else 1 for c in conditions)
    if values > MAX_FILTER_VALUES:
        raise ValueError(f"filter holds {values} values over all its fields; at most {MAX_FILTER_VALUES} are allowed")
    return MetadataFilter(tuple(conditions))


def _check_field(field: object) -> None:
    if not isinstance(field, str) or not field:
        raise ValueError(f"filter field names must be non-empty strings, got {_show(field)}")
    if field.startswith("$"):
        raise ValueError(f"filter field {field!r}: top-level operators are not supported; name a metadata field")
    if len(field) > MAX_FIELD_CHARS or _BAD_FIELD.search(field) or not _utf8(field):
        raise ValueError(
            f"filter field {field[:40]!r}: field names have at most {MAX_FIELD_CHARS} characters "
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
        if "\x00" in value or not _utf8(value):
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
    if isinstance(value, int) and not -_INT64 <= value < _INT64:
        raise ValueError(f"filter field {field!r}: {op} value {value} is outside the 64-bit integer range")
    return value


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# PostgreSQL: JSONB. Equality is containment (`@>`, type-exact and able to use a GIN index); ranges
# cast only values whose JSON type is number, inside a CASE, because PostgreSQL may evaluate the
# operands of AND in any order and a cast of a string would fail the whole query.


def _pg_condition(c: Condition) -> ColumnElement[bool]:
    meta = type_coerce(Document.meta, JSONB)
    if c.op == "$eq":
        return meta.contains({c.field: c.value})
    element = meta[c.field]
    if c.op == "$in":
        assert isinstance(c.value, tuple)
        if not c.value:
            return false()
        # jsonb equality is type-exact, as containment is: "1" is not 1, and true is not 1.
        return element.in_([type_coerce(v, JSONB) for v in c.value])
    # NUMERIC on both sides: JSON numbers may exceed a double's range, and ints compare exactly.
    number = case((func.jsonb_typeof(element) == "number", cast(element.astext, Numeric)), else_=None)
    return _compare(number, c.op, literal(Decimal(str(_as_number(c.value))), Numeric()))


# SQLite: JSON1. json_extract gives SQL values (integer, real, text; 1/0 for booleans), and SQLite
# compares numbers below all text, so json_type pins the type before comparing.


def _sqlite_condition(c: Condition) -> ColumnElement[bool]:
    path = literal('$."' + c.field + '"')
    kind = func.json_type(Document.meta, path)
    value = func.json_extract(Document.meta, path)
    if c.op == "$eq":
        return _sqlite_equals(kind, value, _as_scalar(c.value))
    if c.op == "$in":
        assert isinstance(c.value, tuple)
        return _sqlite_in(kind, value, c.value)
    return and_(kind.in_(["integer", "real"]), _compare(value, c.op, literal(_as_number(c.value))))


def _sqlite_in(kind: ColumnElement[Any], value: ColumnElement[Any], wanted: tuple[Scalar, ...]) -> ColumnElement[bool]:
    """One IN list per JSON type (at most three terms): an OR per value made SQLite's expression tree
    too deep past about 1,000 values, and cost a comparison per value on every row."""
    texts = [v for v in wanted if isinstance(v, str)]
    numbers = [v for v in wanted if isinstance(v, int | float) and not isinstance(v, bool)]
    flags = sorted({"true" if v else "false" for v in wanted if isinstance(v, bool)})
    terms = []
    if texts:
        terms.append(and_(kind == "text", value.in_(texts)))
    if numbers:
        terms.append(and_(kind.in_(["integer", "real"]), value.in_(numbers)))
    if flags:
        terms.append(kind.in_(flags))
    return or_(*terms) if terms else false()


def _sqlite_equals(kind: ColumnElement[Any], value: ColumnElement[Any], wanted: Scalar) -> ColumnElement[bool]:
    if isinstance(wanted, bool):
        return kind == ("true" if wanted else "false")
    if isinstance(wanted, str):
        return and_(kind == "text", value == wanted)
    return and_(kind.in_(["integer", "real"]), value == wanted)


def _compare(left: ColumnElement[Any], op: str, right: ColumnElement[Any]) -> ColumnElement[bool]:
    if op == "$gt":
        return left > right
    if op == "$gte":
        return left >= right
    if op == "$lt":
        return left < right
    return left <= right


def _as_scalar(value: Scalar | tuple[Scalar, ...]) -> Scalar:
    assert not isinstance(value, tuple)
    return value


def _as_number(value: Scalar | tuple[Scalar, ...]) -> int | float:
    assert isinstance(value, int | float) and not isinstance(value, bool)
    return value
