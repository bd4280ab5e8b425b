"""Connecting to the database: engines set up per dialect, and Alembic pointed at the packaged migrations."""

from __future__ import annotations

import importlib.util
import logging
from typing import Any

from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

from search.collections.placement import SEARCH_PATH_OPTION
from search.storage import json_text
from search.storage.outage import watch

MMAP_BYTES = 256 * 1024 * 1024


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets the API read while the indexer writes; foreign keys make chunk deletes cascade.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    # Reads through a memory map of the file's first 256 MiB, not a read call per page into each
    # connection's own 2 MiB cache: a search joins a few hundred chunk rows on scattered pages, and
    # the server reads from several connections at once (they then share the OS's page cache).
    cursor.execute(f"PRAGMA mmap_size={MMAP_BYTES}")
    cursor.close()


def _not_a_pipeline_aborted(record: logging.LogRecord) -> bool:
    """psycopg logs a warning when it ends a pipeline whose statement failed (a full disk, a conflict):
    that failure is raised, and reported, anyway; the warning only repeats it once per write, naming
    the database's host, port and user."""
    return not (record.msg == "error ignored terminating %r: %s" and "pipeline aborted" in str(record.args))


# A collection's own database on PostgreSQL keeps fewer idle connections than the deployment's: a
# process may hold a hundred collections open, against the server's max_connections (100 by default).
COLLECTION_POOL = {"pool_size": 2, "max_overflow": 8}


def make_engine(url: str, collection: bool = False) -> Engine:
    """An engine for `url`, with SQLite set up for one writer beside many readers, whose outages are
    logged once each (search.storage.outage). On PostgreSQL every pooled connection is pinged as it
    is taken: after a server restart the dead ones are replaced, not handed to a request."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
    else:
        # JSONB would turn floats of 1e16 or more into integers (search/storage/json_text.py).
        pool: dict[str, int] = COLLECTION_POOL if collection else {}
        engine = create_engine(url, pool_pre_ping=True, json_serializer=json_text.dumps, **pool)
        logging.getLogger("psycopg").addFilter(_not_a_pipeline_aborted)  # once: the same filter is kept once
    watch(engine)
    return engine


def alembic_config(url: str) -> Config:
    """Alembic configuration pointing at the packaged migrations folder."""
    spec = importlib.util.find_spec("migrations")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the semsearch migrations package is not installed")
    config = Config()
    config.set_main_option("script_location", next(iter(spec.submodule_search_locations)))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def own_schema(url: str) -> str | None:
    """The schema a PostgreSQL URL selects with `options=-csearch_path=...` (None: the database's own)."""
    if url.startswith("sqlite"):
        return None
    options = make_url(url).query.get("options")
    given = " ".join(options) if isinstance(options, tuple) else (options or "")
    found = [part.removeprefix(SEARCH_PATH_OPTION) for part in given.split() if part.startswith(SEARCH_PATH_OPTION)]
    return found[-1] if found else None
