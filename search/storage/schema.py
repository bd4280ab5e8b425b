"""The schema's version: brought to the newest Alembic revision (`upgrade`)."""

from __future__ import annotations

from alembic import command
from sqlalchemy import Engine

from search.storage.db import alembic_config


def upgrade(engine: Engine, url: str) -> None:
    """Bring the schema to the newest Alembic revision (idempotent), all in one transaction: a
    process killed midway leaves the schema it found. Python's sqlite3 commits before every DDL
    statement on its own, so on SQLite the transaction is begun by hand (IMMEDIATE: two
    processes starting at once migrate one after the other)."""
    with engine.connect() as connection:
        raw = connection.connection.dbapi_connection
        sqlite = engine.dialect.name == "sqlite" and raw is not None
        if sqlite:
            raw.isolation_level = None  # type: ignore[union-attr]  # the driver stops managing transactions
        try:
            with connection.begin():
                if sqlite:
                    connection.exec_driver_sql("BEGIN IMMEDIATE")
                config = alembic_config(url)
                config.attributes["connection"] = connection
                command.upgrade(config, "head")
        finally:
            if sqlite:
                raw.isolation_level = ""  # type: ignore[union-attr]  # the driver's default, for the pool
