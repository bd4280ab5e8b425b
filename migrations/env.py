"""Alembic environment: runs on the connection semsearch hands over, or on the configured URL."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from search.storage.models import Base

config = context.config
target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things in place; batch mode rebuilds the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    """Migrate on the connection semsearch passes in, else on one opened from the URL."""
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    from search.settings import Settings
    from search.storage.db import make_engine

    url = config.get_main_option("sqlalchemy.url") or Settings().resolved_database_url
    with make_engine(url).begin() as conn:
        _run(conn)


if context.is_offline_mode():
    raise SystemExit("semsearch migrations run online only")
run_online()
