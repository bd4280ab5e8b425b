"""Bulk inserts through the database driver's own executemany, and id lists bound as one parameter.

SQLAlchemy's per-row parameter processing costs more than SQLite's insert itself (about 25 µs a
row, several rows a document); here each column's bind processor is looked up once and the driver
gets plain tuples, which keeps the write path well above 5,000 documents a second.

Likewise an expanding `IN` of a few hundred ids is rendered and bound anew on every call, which cost
as much as the query itself on the read path; `in_ids` binds the whole list as one value."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

from sqlalchemy import JSON, BigInteger, ColumnElement, Dialect, Table, any_, bindparam, func, literal_column, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session
from sqlalchemy.sql import Select

from search.storage import json_text


def insert_rows(s: Session, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert `rows` (all with the same keys, which are column names) into `table` in transaction `s`."""
    if not rows:
        return
    connection = s.connection()
    dialect = connection.dialect
    names = list(rows[0])
    quote = dialect.identifier_preparer.quote
    mark = "?" if dialect.paramstyle == "qmark" else "%s"
    sql = (
        f"INSERT INTO {quote(table.name)} ({', '.join(quote(n) for n in names)}) "
        f"VALUES ({', '.join([mark] * len(names))})"
    )
    processors = [_processor(table, n, dialect) for n in names]
    params = [
        tuple(
            value if p is None or value is None else p(value)
            for value, p in zip(map(row.__getitem__, names), processors, strict=True)
        )
        for row in rows
    ]
    connection.exec_driver_sql(sql, params)


def _processor(table: Table, name: str, dialect: Dialect) -> Callable[[Any], Any] | None:
    """How one column's Python values become the driver's parameters."""
    column_type = table.c[name].type
    if dialect.name == "postgresql" and isinstance(column_type, JSON):
        from psycopg.types.json import Jsonb  # the driver of PostgreSQL URLs here

        return lambda value: Jsonb(value, json_text.dumps)
    processor: Callable[[Any], Any] | None = column_type.bind_processor(dialect)
    return processor


def in_ids(column: Any, postgres: bool) -> ColumnElement[bool]:
    """`column IN :ids` with the ids bound as ONE value at execution (`ids_value`): an array on
    PostgreSQL (`= ANY`), a JSON array read by `json_each` on SQLite. A statement using it is built
    once and run for every list (search/storage/reads.py)."""
    if postgres:
        return cast(ColumnElement[bool], column == any_(bindparam("ids", type_=ARRAY(BigInteger))))
    listed: Select[int] = select(literal_column("value", BigInteger))
    listed = listed.select_from(func.json_each(bindparam("ids")))
    return cast(ColumnElement[bool], column.in_(listed.scalar_subquery()))


def ids_value(ids: Sequence[int], postgres: bool) -> list[int] | str:
    """The value bound to `in_ids`' parameter for `ids`."""
    values = [int(i) for i in ids]  # numpy's integers are no bound values
    return values if postgres else json.dumps(values)
