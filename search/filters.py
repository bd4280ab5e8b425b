"""Metadata filters: the MongoDB-like language Chroma, Qdrant, Pinecone and PGVector accept, validated
here into a tree; search/storage/metadata_index.py answers it in SQL, `MetadataFilter.holds` in Python.

    {"kind": "animal"}                                  equality, the same as {"kind": {"$eq": "animal"}}
    {"kind": {"$ne": "animal"}}                         not equal (documents without `kind` pass)
    {"kind": {"$in": ["animal", "sky"]}}                one of several values ($nin: none of them)
    {"year": {"$gte": 2000, "$lt": 2010}}               numeric range; operators on one field all hold
    {"tags": {"$exists": true}}                         the field holds a string, number or boolean
    {"$or": [{"kind": "sky"}, {"year": {"$lt": 1970}}]} any of the filters ($and: all of them)
    {"$not": {"kind": "sky"}}                           the filter fails (also per field: {"kind": {"$not": ...}})

Several keys in one object combine with AND. A negation ($ne, $nin, $not, `$exists: false`) is the
exact complement of what it negates, so a document without the field, or whose value is of another
type, passes it (as in MongoDB, and Qdrant's must_not): parsing pushes every negation down onto the
conditions, and SQL and Python then agree by construction. Field names and values always travel as
bound parameters. The size of a filter is bounded (keys per object, conditions, values over all its
`$in` lists, and how deep $and, $or and $not nest)."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from search.validation import INT64, is_utf8

Scalar = str | int | float | bool
RANGE_OPS = ("$gt", "$gte", "$lt", "$lte")
# The one list of the language's operators: what a field's condition may use, and what may join filters.
FIELD_OPERATORS = ("$eq", "$ne", *RANGE_OPS, "$in", "$nin", "$exists", "$not")
LOGICAL_OPERATORS = ("$and", "$or", "$not")
# What each negative operator negates: a condition holds the positive one and whether it is negated.
_NEGATES = {"$ne": "$eq", "$nin": "$in"}
MAX_FIELDS = 32  # keys in any one object of a filter
MAX_CONDITIONS = 128  # field conditions in a whole filter (each one index lookup)
MAX_DEPTH = 8  # how deep $and, $or and $not may nest
MAX_IN_VALUES = 1024
# Over all the $in and $nin lists together: SQLite binds at most 32,766 parameters a statement.
MAX_FILTER_VALUES = 4096
MAX_FIELD_CHARS = 128
# SQLite reads a field as a JSON path ('$."name"'), so a quote or backslash would change the path's
# meaning; control characters (NUL above all) cannot be stored in PostgreSQL text at all.
_BAD_FIELD = re.compile(r'["\\\x00-\x1f]')
_MISSING = object()


@dataclass(frozen=True)
class Condition:
    """One test on one field: `op` is "$eq", "$in", "$exists" or a range operator, and `negated`
    turns it into its complement ($ne, $nin, `$exists: false`, or a $not pushed down onto it)."""

    field: str
    op: str
    value: Scalar | tuple[Scalar, ...]
    negated: bool = False

    def holds(self, metadata: Mapping[str, Any]) -> bool:
        """Whether a document's metadata passes, with the metadata index's semantics: a top-level
        value of the same JSON type, numbers compared by exact value, ranges on numbers only."""
        return self._positive(metadata.get(self.field, _MISSING)) != self.negated

    def _positive(self, value: object) -> bool:
        if self.op == "$exists":
            return is_filterable(value)
        if self.op in RANGE_OPS:
            wanted = self.value
            if not _is_number(value) or not isinstance(wanted, int | float):
                return False
            assert isinstance(value, int | float)
            if self.op == "$gt":
                return value > wanted
            if self.op == "$gte":
                return value >= wanted
            return value < wanted if self.op == "$lt" else value <= wanted
        options = self.value if isinstance(self.value, tuple) else (self.value,)
        return any(_same(value, option) for option in options)


@dataclass(frozen=True)
class AllOf:
    """Every part holds ($and, and several keys of one object)."""

    parts: tuple[Node, ...]

    def holds(self, metadata: Mapping[str, Any]) -> bool:
        return all(part.holds(metadata) for part in self.parts)


@dataclass(frozen=True)
class AnyOf:
    """At least one part holds ($or)."""

    parts: tuple[Node, ...]

    def holds(self, metadata: Mapping[str, Any]) -> bool:
        return any(part.holds(metadata) for part in self.parts)


Node = Condition | AllOf | AnyOf


def is_filterable(value: object) -> bool:
    """Whether a metadata value is one filters see (`$exists`): a string, a boolean or a finite
    number; null, lists and objects are as good as absent (the metadata index holds no row for them)."""
    return isinstance(value, str | bool) or _is_number(value)


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
    """A validated filter: a tree of AllOf/AnyOf over conditions, negations already pushed down."""

    root: Node

    @property
    def conditions(self) -> tuple[Condition, ...]:
        """The field conditions of the tree, in the order written."""
        return _leaves(self.root)

    def holds(self, metadata: Mapping[str, Any]) -> bool:
        """Whether a document's metadata passes (checked on search results)."""
        return self.root.holds(metadata if isinstance(metadata, Mapping) else {})


def _leaves(node: Node) -> tuple[Condition, ...]:
    if isinstance(node, Condition):
        return (node,)
    return tuple(leaf for part in node.parts for leaf in _leaves(part))


def negate(node: Node) -> Node:
    """The complement of `node`, negations on the conditions alone (De Morgan)."""
    if isinstance(node, Condition):
        return replace(node, negated=not node.negated)
    parts = tuple(negate(part) for part in node.parts)
    return AnyOf(parts) if isinstance(node, AllOf) else AllOf(parts)


def _joined(kind: type[AllOf] | type[AnyOf], parts: list[Node]) -> Node:
    """`parts` joined, nested joins of the same kind flattened (one SQL union or AND for them all)."""
    flat: list[Node] = []
    for part in parts:
        flat.extend(part.parts if isinstance(part, kind) else (part,))
    return flat[0] if len(flat) == 1 else kind(tuple(flat))


@dataclass
class _Budget:
    conditions: int = 0
    values: int = 0

    def take(self, condition: Condition) -> Condition:
        self.conditions += 1
        if self.conditions > MAX_CONDITIONS:
            raise ValueError(f"filter has more than {MAX_CONDITIONS} field conditions; at most {MAX_CONDITIONS}")
        self.values += len(condition.value) if isinstance(condition.value, tuple) else 1
        return condition


def parse_filter(raw: Mapping[str, Any] | MetadataFilter | None) -> MetadataFilter | None:
    """Validate a filter as sent by a client; raises ValueError naming the bad field, operator, value
    or place (e.g. `$or[1]`)."""
    if raw is None or isinstance(raw, MetadataFilter):
        return raw
    if not isinstance(raw, Mapping):
        raise ValueError(f"filter must be an object of field: condition, got {_show(raw)}")
    if not raw:
        return None  # {} filters nothing out: the same as no filter
    budget = _Budget()
    root = _object(raw, "", 0, budget)
    if budget.values > MAX_FILTER_VALUES:
        raise ValueError(
            f"filter holds {budget.values} values over all its fields; at most {MAX_FILTER_VALUES} are allowed"
        )
    return MetadataFilter(root)


def check_filter_size(raw: object, where: str = "filter") -> None:
    """Raise ValueError when `raw` holds more keys than a filter object may: the one check that needs
    no walk, made before anything (pydantic's copy of each key among them) walks it."""
    if isinstance(raw, Mapping) and len(raw) > MAX_FIELDS:
        raise ValueError(f"{where} has {len(raw)} fields; at most {MAX_FIELDS} are allowed")


def _object(raw: object, path: str, depth: int, budget: _Budget) -> Node:
    """One filter object: its keys (fields and logical operators) all hold."""
    where = f"filter at {path}" if path else "filter"
    if not isinstance(raw, Mapping):
        raise ValueError(f"{where} must be an object of field: condition, got {_show(raw)}")
    if not raw:
        raise ValueError(f"{where}: an empty object; name a field or one of {', '.join(LOGICAL_OPERATORS)}")
    check_filter_size(raw, where)
    parts: list[Node] = []
    for key, spec in raw.items():
        if isinstance(key, str) and key.startswith("$"):
            parts.append(_logical(key, spec, f"{path}.{key}" if path else key, depth, budget))
        else:
            _check_field(key)
            parts.append(_field(key, spec, path, depth, budget))
    return _joined(AllOf, parts)


def _logical(op: str, spec: object, path: str, depth: int, budget: _Budget) -> Node:
    if op not in LOGICAL_OPERATORS:
        raise ValueError(
            f"filter at {path}: unknown operator {_show(op)}; name a field or use one of {', '.join(LOGICAL_OPERATORS)}"
        )
    if depth >= MAX_DEPTH:
        raise ValueError(
            f"filter at {path}: $and, $or and $not nest {depth + 1} deep here; at most {MAX_DEPTH} levels are allowed"
        )
    if op == "$not":
        return negate(_object(spec, path, depth + 1, budget))
    if not isinstance(spec, list) or not spec:
        raise ValueError(f"filter at {path}: {op} needs a non-empty list of filter objects, got {_show(spec)}")
    if len(spec) > MAX_CONDITIONS:
        raise ValueError(f"filter at {path}: {op} has {len(spec)} filters; at most {MAX_CONDITIONS}")
    parts = [_object(item, f"{path}[{i}]", depth + 1, budget) for i, item in enumerate(spec)]
    return _joined(AllOf if op == "$and" else AnyOf, parts)


def _check_field(field: object) -> None:
    if not isinstance(field, str) or not field:
        raise ValueError(f"filter field names must be non-empty strings, got {_show(field)}")
    if len(field) > MAX_FIELD_CHARS or _BAD_FIELD.search(field) or not is_utf8(field):
        raise ValueError(
            f"filter field {field[:40]!r}: field names have at most {MAX_FIELD_CHARS} characters "
            "and no quotes, backslashes or control characters"
        )


def _field(field: str, spec: object, path: str, depth: int, budget: _Budget) -> Node:
    """A field's condition: a value (equality) or an object of operators that all hold."""
    where = f"filter field {field!r}" + (f" at {path}" if path else "")
    if not isinstance(spec, Mapping):
        return budget.take(Condition(field, "$eq", _scalar(where, "equality", spec)))
    if not spec:
        raise ValueError(f"{where}: an empty object; use a value or one of {', '.join(FIELD_OPERATORS)}")
    return _joined(AllOf, [_operator(field, where, op, value, path, depth, budget) for op, value in spec.items()])


def _operator(field: str, where: str, op: object, value: object, path: str, depth: int, budget: _Budget) -> Node:
    if op not in FIELD_OPERATORS:
        raise ValueError(f"{where}: unknown operator {_show(op)}; use one of {', '.join(FIELD_OPERATORS)}")
    if op == "$not":
        if depth >= MAX_DEPTH:
            raise ValueError(
                f"{where}: $and, $or and $not nest {depth + 1} deep here; at most {MAX_DEPTH} levels are allowed"
            )
        return negate(_field(field, value, path, depth + 1, budget))
    negated = op in _NEGATES
    positive = _NEGATES.get(str(op), str(op))
    if positive == "$in":
        if not isinstance(value, list):
            raise ValueError(f"{where}: {op} needs a list of values, got {_show(value)}")
        if len(value) > MAX_IN_VALUES:
            raise ValueError(f"{where}: {op} has {len(value)} values; at most {MAX_IN_VALUES}")
        return budget.take(Condition(field, positive, tuple(_scalar(where, str(op), v) for v in value), negated))
    if positive == "$exists":
        if not isinstance(value, bool):
            raise ValueError(f"{where}: $exists needs true or false, got {_show(value)}")
        return budget.take(Condition(field, positive, True, negated=not value))
    if positive in RANGE_OPS:
        return budget.take(Condition(field, positive, _number(where, positive, value)))
    return budget.take(Condition(field, positive, _scalar(where, str(op), value), negated))


def _scalar(where: str, op: str, value: object) -> Scalar:
    if isinstance(value, str):
        if "\x00" in value or not is_utf8(value):
            raise ValueError(f"{where}: {op} value holds a NUL or an unpaired surrogate character")
        return value
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return _number(where, op, value)
    raise ValueError(f"{where}: {op} needs a string, number or boolean, got {_show(value)}")


def _number(where: str, op: str, value: object) -> int | float:
    # bool is an int in Python, but `{"$gt": true}` is a mistake worth naming.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{where}: {op} needs a number, got {_show(value)}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{where}: {op} needs a finite number, got {value}")
    if isinstance(value, int) and not -INT64 <= value < INT64:
        raise ValueError(f"{where}: {op} value {value} is outside the 64-bit integer range")
    return value


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
