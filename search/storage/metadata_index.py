"""Metadata filters through an index: each document's top-level scalar metadata values are rows of
`metadata_values` (key, kind, value), written in the same transaction as the document, so a filter
looks its matches up by index instead of reading every document's JSON, and a rare filter costs in
proportion to what it matches.

Semantics (the same on SQLite and PostgreSQL): equality is on a top-level value of the same JSON type
(a string, a number, a boolean; never membership in a list); ranges hold for numbers only; numbers
compare by exact value as Python compares them, so 2001 equals 2001.0 and 2**53 + 1 is greater than
2.0**53 (the index keeps each number exactly: search/storage/models.py's ExactNumber)."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from typing import Any, cast

from sqlalchemy import ColumnElement, Select, Table, and_, delete, false, func, literal, or_, select
from sqlalchemy.orm import Session

from search.filters import MAX_FIELD_CHARS, Condition, MetadataFilter
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
    """The ids of documents whose metadata passes one condition (an index range on `metadata_values`)."""
    stmt = select(MetadataValue.document_id).where(MetadataValue.key == c.field)
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


def chunk_condition(flt: MetadataFilter) -> ColumnElement[bool]:
    """A condition on `chunks` rows: their document passes every condition of the filter."""
    return and_(*(Chunk.document_id.in_(documents_matching(c)) for c in flt.conditions))


def chunks_matching(flt: MetadataFilter) -> Select[Any]:
    """The ids of the chunks whose document passes every condition, ascending."""
    return select(Chunk.id).where(chunk_condition(flt)).order_by(Chunk.id)


def estimate(s: Session, flt: MetadataFilter) -> int:
    """An upper bound on the documents that pass: the fewest any single condition matches (each
    count is an index range scan)."""
    counts = [
        int(s.scalar(select(func.count()).select_from(documents_matching(c).subquery())) or 0) for c in flt.conditions
    ]
    return min(counts)
