"""Metadata filters through an index: each document's top-level scalar metadata values are rows of
`metadata_values` (key, kind, value), written in the same transaction as the document, so a filter
looks its matches up by index instead of reading every document's JSON, and a rare filter costs in
proportion to what it matches.

Semantics (the same on SQLite and PostgreSQL): equality is on a top-level value of the same JSON type
(a string, a number, a boolean; never membership in a list); ranges hold for numbers only; numbers
compare by exact value as Python compares them, so 2001 equals 2001.0 and 2**53 + 1 is greater than
2.0**53 (the index keeps each number exactly: search/storage/models.py's ExactNumber); `$exists`
holds for a key with a row. A negated condition is the complement of its positive one (NOT EXISTS of
its rows), so a document without the key passes it, as `Condition.holds` says in Python."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    CompoundSelect,
    Select,
    Table,
    and_,
    delete,
    exists,
    false,
    func,
    literal,
    or_,
    select,
    union_all,
)
from sqlalchemy.orm import Session

from search.filters import MAX_FIELD_CHARS, AllOf, AnyOf, Condition, MetadataFilter, Node
from search.storage.bulk import insert_rows
from search.storage.models import Chunk, MetadataValue, NumberType
from search.validation import is_utf8

TEXT, NUMBER, BOOL = "s", "n", "b"


def text_hash(value: str) -> str:
    """The digest under which a string value is indexed (any length, exact equality)."""
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def value_rows(doc_id: int, metadata: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The index rows of one document's metadata; values no filter can match (lists, objects, null,
    non-finite numbers, over-long keys) get none."""
    rows: list[dict[str, Any]] = []
    for key, value in metadata.items():
        if not isinstance(key, str) or not key or len(key) > MAX_FIELD_CHARS or not is_utf8(key):
            continue  # no filter can name it (filter fields are valid UTF-8), and SQL could not store it
        row: dict[str, Any] = {"document_id": doc_id, "key": key, "text_hash": None, "number": None}
        if isinstance(value, bool):
            row.update(kind=BOOL, number=int(value))
        elif isinstance(value, str):
            row.update(kind=TEXT, text_hash=text_hash(value))
        elif isinstance(value, int) or (isinstance(value, float) and math.isfinite(value)):
            row.update(kind=NUMBER, number=value)  # kept exactly: models.ExactNumber
        else:
            continue
        rows.append(row)
    return rows


def write_values(s: Session, docs: Sequence[tuple[int, Mapping[str, Any]]], replace: bool) -> None:
    """Index the metadata of documents (`replace`: drop their previous rows first), in transaction `s`."""
    if replace:
        ids = [doc_id for doc_id, _ in docs]
        for start in range(0, len(ids), 10_000):
            s.execute(delete(MetadataValue).where(MetadataValue.document_id.in_(ids[start : start + 10_000])))
    insert_rows(
        s, cast(Table, MetadataValue.__table__), [row for doc_id, meta in docs for row in value_rows(doc_id, meta)]
    )


def documents_matching(c: Condition) -> Select[Any]:
    """The ids of documents whose metadata passes one condition's positive form (`negated` aside): an
    index range on `metadata_values`."""
    stmt = select(MetadataValue.document_id).where(MetadataValue.key == c.field)
    if c.op == "$exists":
        return stmt
    if c.op == "$in":
        assert isinstance(c.value, tuple)
        return stmt.where(_one_of(c.value))
    if c.op == "$eq":
        assert not isinstance(c.value, tuple)
        return stmt.where(_one_of((c.value,)))
    number = _number(c.value)
    column = MetadataValue.number
    compare = {"$gt": column > number, "$gte": column >= number, "$lt": column < number, "$lte": column <= number}
    return stmt.where(MetadataValue.kind == NUMBER, compare[c.op])


def _one_of(values: tuple[Any, ...]) -> ColumnElement[bool]:
    texts = [text_hash(v) for v in values if isinstance(v, str)]
    bools = [int(v) for v in values if isinstance(v, bool)]
    numbers = [_number(v) for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
    parts: list[ColumnElement[bool]] = []
    if texts:
        parts.append(and_(MetadataValue.kind == TEXT, MetadataValue.text_hash.in_(texts)))
    if bools:
        parts.append(and_(MetadataValue.kind == BOOL, MetadataValue.number.in_(bools)))
    if numbers:
        parts.append(and_(MetadataValue.kind == NUMBER, MetadataValue.number.in_(numbers)))
    if not parts:
        return false()
    return or_(*parts)


def _number(value: Any) -> Any:
    # Bound as the column's own type, which keeps the value exact on either database.
    return literal(value, NumberType)


def chunk_condition(flt: MetadataFilter, postgres: bool) -> ColumnElement[bool]:
    """A condition on `chunks` rows: their document passes the filter."""
    return _passes(flt.root, postgres)


def _passes(node: Node, postgres: bool) -> ColumnElement[bool]:
    documents = _documents(node)
    if documents is not None:
        return Chunk.document_id.in_(documents)
    if isinstance(node, Condition):
        # A negation costs what its positive form matches, on either database: PostgreSQL runs NOT
        # EXISTS as an anti-join (its NOT IN is a per-row scan once the list outgrows work_mem);
        # SQLite builds a NOT IN list once (its NOT EXISTS would scan the key's rows for every chunk).
        if postgres:
            return ~exists(documents_matching(node).where(MetadataValue.document_id == Chunk.document_id))
        return Chunk.document_id.not_in(documents_matching(node))
    parts = [_passes(part, postgres) for part in node.parts]
    return and_(*parts) if isinstance(node, AllOf) else or_(*parts)


def _documents(node: Node) -> Select[Any] | CompoundSelect[Any] | None:
    """The ids of the documents passing `node` as one query when it is a positive condition or an $or
    of them (a union: one semi-join, where an OR of IN lists is one subquery probe per branch); else None."""
    if isinstance(node, Condition):
        return None if node.negated else documents_matching(node)
    if isinstance(node, AnyOf) and all(isinstance(p, Condition) and not p.negated for p in node.parts):
        return union_all(*(documents_matching(p) for p in node.parts if isinstance(p, Condition)))
    return None


def chunks_matching(flt: MetadataFilter, postgres: bool) -> Select[Any]:
    """The ids of the chunks whose document passes the filter, ascending."""
    return select(Chunk.id).where(chunk_condition(flt, postgres)).order_by(Chunk.id)


def estimate(s: Session, flt: MetadataFilter, total: int) -> int:
    """An upper bound on the documents that pass, of `total`: each condition's matches counted (an
    index range scan; exact, since a document has one row per key), then combined: the fewest of an
    AND, the sum of an $or, the rest of the documents for a negated condition."""
    counts: dict[str, int] = {}
    for c in flt.conditions:
        key = _count_key(c)
        if key not in counts:
            counts[key] = int(s.scalar(select(func.count()).select_from(documents_matching(c).subquery())) or 0)
    return _bound(flt.root, counts, total)


def _count_key(c: Condition) -> str:
    # The positive form's repr, not the condition itself: True == 1 in Python, not in a filter.
    return repr(replace(c, negated=False))


def _bound(node: Node, counts: dict[str, int], total: int) -> int:
    if isinstance(node, Condition):
        count = counts[_count_key(node)]
        return total - count if node.negated else count
    bounds = [_bound(part, counts, total) for part in node.parts]
    return min(bounds) if isinstance(node, AllOf) else min(total, sum(bounds))
