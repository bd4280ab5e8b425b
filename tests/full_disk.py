"""A database whose disk is full, for real where it can be made: SQLite's own SQLITE_FULL ("database or
disk is full": PRAGMA max_page_count holds each new connection to the pages the file has), and a
PostgreSQL server's own error with SQLSTATE 53100 disk_full (a trigger raises it on every write of a
document, as the server does when it cannot extend a file). Test modules import this as `full_disk`
(tests/conftest.py puts tests/ on sys.path)."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

import search.storage.db as db

_TRIGGER = """
CREATE OR REPLACE FUNCTION disk_full() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'could not extend file "base/16384/16385": No space left on device'
        USING ERRCODE = 'disk_full', HINT = 'Check free disk space.';
END $$ LANGUAGE plpgsql;
CREATE TRIGGER disk_full BEFORE INSERT OR UPDATE ON documents FOR EACH ROW EXECUTE FUNCTION disk_full();
"""


class FullDisk:
    """Fills and frees the disk of the database at `url`. On SQLite it holds only the connections
    opened after `fill` (engines made after this was created): dispose a pool to reopen them."""

    def __init__(self, url: str, monkeypatch: pytest.MonkeyPatch) -> None:
        self.url = url
        self.sqlite = url.startswith("sqlite")
        self.full = False
        original = db._sqlite_pragmas

        def pragmas(dbapi_connection: Any, record: Any) -> None:
            original(dbapi_connection, record)
            if self.full:
                (pages,) = dbapi_connection.execute("PRAGMA page_count").fetchone()
                dbapi_connection.execute(f"PRAGMA max_page_count={pages}")

        monkeypatch.setattr(db, "_sqlite_pragmas", pragmas)

    def fill(self) -> None:
        self.full = True
        if not self.sqlite:
            self._postgres(_TRIGGER)

    def free(self) -> None:
        self.full = False
        if not self.sqlite:
            self._postgres("DROP TRIGGER disk_full ON documents")

    def _postgres(self, sql: str) -> None:
        with psycopg.connect(self.url.replace("postgresql+psycopg", "postgresql"), autocommit=True) as c:
            c.execute(sql)  # type: ignore[arg-type]
