"""Where a collection's rows and files live.

The collection `default` is the deployment's own data directory and database, as before collections
existed, so a store written by an earlier release is that collection without moving a byte. Every
other collection has a folder of its own under `<data_dir>/collections/`, and its own database: on
SQLite a file in that folder, on PostgreSQL a schema of the deployment's database (selected through
the connection's `search_path`). Each collection thus has its own tables, change log, FAISS
generations and keyword index: a search costs what its collection holds, and deleting one is
dropping its schema and folder, which touches no row of another.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from search.access import DEFAULT_COLLECTION

COLLECTIONS_FOLDER = "collections"
# How a PostgreSQL URL selects a collection's schema (search/storage/db.py reads it back).
SEARCH_PATH_OPTION = "-csearch_path="
SCHEMA_PREFIX = "c_"
_PG_IDENTIFIER_BYTES = 63  # PostgreSQL cuts longer names, so two long collection names could meet


def collection_dir(data_dir: Path, name: str) -> Path:
    """The folder of a collection's index files (and its SQLite database)."""
    return data_dir if name == DEFAULT_COLLECTION else data_dir / COLLECTIONS_FOLDER / name


def schema_name(name: str) -> str:
    """A collection's PostgreSQL schema: `c_` and its name, `-` written `$` (both are allowed in an
    unquoted identifier, and `$` in no collection name); a name too long for PostgreSQL ends in a
    digest of the whole, so that no two collections share a schema."""
    schema = SCHEMA_PREFIX + name.replace("-", "$")
    if len(schema) > _PG_IDENTIFIER_BYTES:
        digest = hashlib.sha256(name.encode()).hexdigest()[:12]
        schema = f"{schema[: _PG_IDENTIFIER_BYTES - 13]}_{digest}"
    return schema


def database_url(deployment_url: str, data_dir: Path, name: str) -> str:
    """The URL of a collection's database, given the deployment's."""
    if name == DEFAULT_COLLECTION:
        return deployment_url
    if deployment_url.startswith("sqlite"):
        return f"sqlite:///{(collection_dir(data_dir, name) / 'semsearch.db').resolve()}"
    url = make_url(deployment_url)
    options = url.query.get("options")
    given = " ".join(options) if isinstance(options, tuple) else (options or "")
    joined = f"{given} {SEARCH_PATH_OPTION}{schema_name(name)}".strip()
    return url.update_query_dict({"options": joined}).render_as_string(hide_password=False)


def remove(deployment: Engine, deployment_url: str, data_dir: Path, name: str) -> None:
    """Drop a collection's schema (PostgreSQL) and folder: its rows and files; idempotent."""
    assert name != DEFAULT_COLLECTION, "the default collection is the deployment's own database"
    if not deployment_url.startswith("sqlite"):
        with deployment.begin() as connection:
            connection.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema_name(name)}" CASCADE')
    shutil.rmtree(collection_dir(data_dir, name), ignore_errors=True)
