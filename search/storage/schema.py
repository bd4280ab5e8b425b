"""The schema's version: brought to the newest Alembic revision once, when a writing process starts
(`upgrade`), and checked, not migrated, wherever a store is opened (`require_current`), so that a
read-only command neither takes the database's write lock nor changes a schema under a running
server."""

from __future__ import annotations

import threading

from alembic import command
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect
from sqlalchemy.engine import make_url

from search.storage.db import alembic_config, own_schema

# Alembic runs a migration through module-level state (`alembic.context`): two threads of a process
# migrating at once (a new collection made by the API while the worker opens another) would run in
# each other's context. One at a time, then; each is quick when there is nothing to do.
_ALEMBIC = threading.Lock()


class SchemaBehindError(RuntimeError):
    """The database's schema is not the one this semsearch reads and writes."""


def upgrade(engine: Engine, url: str, deployment: bool = True) -> None:
    """Bring the schema to the newest Alembic revision (idempotent), all in one transaction: a
    process killed midway leaves the schema it found. Python's sqlite3 commits before every DDL
    statement on its own, so on SQLite the transaction is begun by hand (IMMEDIATE: two
    processes starting at once migrate one after the other).

    `deployment` is False for a collection's own database, which holds no deployment-wide tables
    (API keys, the collections themselves: the migrations that make them skip it); a collection's
    PostgreSQL schema is created here, in the same transaction."""
    with _ALEMBIC, engine.connect() as connection:
        raw = connection.connection.dbapi_connection
        sqlite = engine.dialect.name == "sqlite" and raw is not None
        if sqlite:
            raw.isolation_level = None  # type: ignore[union-attr]  # the driver stops managing transactions
        try:
            with connection.begin():
                if sqlite:
                    connection.exec_driver_sql("BEGIN IMMEDIATE")
                schema = own_schema(url)
                if schema is not None:
                    connection.exec_driver_sql(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
                config = alembic_config(url)
                config.attributes["connection"] = connection
                config.attributes["deployment"] = deployment
                command.upgrade(config, "head")
        finally:
            if sqlite:
                raw.isolation_level = ""  # type: ignore[union-attr]  # the driver's default, for the pool


def revisions(engine: Engine, url: str) -> tuple[str | None, str]:
    """(the database's Alembic revision, None when it has none; the newest revision this code knows)."""
    with engine.connect() as connection:
        current = MigrationContext.configure(connection).get_current_revision()
    head = ScriptDirectory.from_config(alembic_config(url)).get_current_head()
    assert head is not None, "the migrations folder holds no revision"
    return current, head


def require_current(engine: Engine, url: str, deployment: bool = True) -> None:
    """Check that the database's schema is the newest, without migrating it; a SchemaBehindError
    tells what to run when it is not. An empty database (a first start) is created here: there is
    nothing in it to migrate, and a read-only command then finds an empty store, not an error."""
    current, head = revisions(engine, url)
    if current == head:
        return
    if current is None and not _tables(engine, url):
        upgrade(engine, url, deployment)
        return
    where = make_url(url).render_as_string(hide_password=True)
    known = {script.revision for script in ScriptDirectory.from_config(alembic_config(url)).walk_revisions()}
    if current is not None and current not in known:
        raise SchemaBehindError(
            f"the database {where} has schema revision {current}, which this semsearch does not know "
            f"(its newest is {head}): was it written by a newer version? Upgrade semsearch"
        )
    raise SchemaBehindError(
        f"the database {where} has schema revision {current or 'none'}, this semsearch needs {head}: "
        "run `semsearch migrate` (or a writing command: index, add, worker, serve) to bring it up to date"
    )


def _tables(engine: Engine, url: str) -> list[str]:
    """The tables of the database (of a collection's schema, which may not exist yet)."""
    schema = own_schema(url)
    inspector = inspect(engine)
    if schema is not None and schema not in inspector.get_schema_names():
        return []
    return inspector.get_table_names(schema=schema)
