"""Migration 0007: a store whose metadata index holds the inexact numbers the older code wrote
answers every numeric filter exactly once upgraded."""

from __future__ import annotations

from typing import Any

from alembic import command
from sqlalchemy import text

from search.filters import parse_filter
from search.storage.db import alembic_config
from search.storage.records import ChunkIn, DocumentIn
from search.storage.store import Store

NUMBERS: list[Any] = [2**53, 2**53 + 1, 2**63 - 1, -(2**63), 0.5110627055689232, 2.0**60, 0.1, 7, 2.5]

# What the older code left in `number`: on SQLite every integer bound as a double (a NUMERIC column
# makes an integral double an integer again), on PostgreSQL doubles cast with 15 significant digits.
_AS_BEFORE = {
    "sqlite": "UPDATE metadata_values SET number = CAST(number AS REAL) WHERE kind = 'n'",
    "postgresql": "UPDATE metadata_values SET number = number::float8::numeric WHERE kind = 'n'",
}


def _found(store: Store, spec: dict[str, Any]) -> set[str]:
    check = parse_filter(spec)
    assert check is not None
    ids = store.matching_chunk_ids(check)
    return {owner.document_id for owner in store.chunk_owners([int(i) for i in ids]).values()}


def _exact(store: Store) -> bool:
    """Whether each stored number is found by equality alone, and 2**53 + 1 is above 2.0**53."""
    every = all(_found(store, {"n": value}) == {f"d{i}"} for i, value in enumerate(NUMBERS))
    return every and _found(store, {"n": {"$gt": 2.0**53}}) == {"d1", "d2", "d5"}


def test_upgrade_recomputes_the_numbers_the_older_code_wrote(database_url: str) -> None:
    config = alembic_config(database_url)
    command.upgrade(config, "0006")
    old = Store(database_url, upgrade=False)
    docs = [
        (DocumentIn(f"d{i}", "text", metadata={"n": value, "s": "kept", "b": True}), [ChunkIn(0, "text", 0, 4)])
        for i, value in enumerate(NUMBERS)
    ]
    # Documents without numbers, whose rows the migration leaves alone.
    docs += [(DocumentIn(f"x{i}", "text", metadata={"s": "other"}), [ChunkIn(0, "text", 0, 4)]) for i in range(30)]
    old.write_documents(docs)
    with old.engine.begin() as connection:
        connection.execute(text(_AS_BEFORE[old.engine.dialect.name]))
    assert not _exact(old), "the store holds the older code's inexact numbers"
    old.close()

    store = Store(database_url)  # upgrades to the head
    assert _exact(store)
    # The other rows are left as they were, and no numeric row is doubled.
    assert _found(store, {"s": "kept"}) == {f"d{i}" for i in range(len(NUMBERS))}
    assert _found(store, {"b": True}) == {f"d{i}" for i in range(len(NUMBERS))}
    with store.engine.connect() as connection:
        counts = connection.execute(text("SELECT kind, count(*) FROM metadata_values GROUP BY kind")).all()
    assert dict(counts) == {"n": len(NUMBERS), "s": len(NUMBERS) + 30, "b": len(NUMBERS)}
    store.close()
