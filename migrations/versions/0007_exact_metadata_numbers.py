"""Exact metadata numbers: the numeric rows of `metadata_values` written before ExactNumber hold
integers above 2**53 as doubles (SQLite and PostgreSQL) and floats cut to 15 significant digits
(PostgreSQL), so a narrow filter on them missed or over-matched. They are computed again from the
documents' metadata; the column's type (NUMERIC) does not change.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_BLOCK = 5_000


def upgrade() -> None:
    """Replace every numeric row by one computed from the document's metadata, a block of documents
    at a time (each block one DELETE and one multi-row INSERT)."""
    from search.storage.metadata_index import NUMBER, value_rows
    from search.storage.models import ExactNumber

    values = sa.table(
        "metadata_values",
        *(sa.column(name) for name in ("document_id", "key", "kind", "text_hash")),
        sa.column("number", ExactNumber()),
    )
    connection = op.get_bind()
    after = 0
    while True:
        documents = connection.execute(
            sa.text("SELECT id, metadata FROM documents WHERE id > :after ORDER BY id LIMIT :n"),
            {"after": after, "n": _BLOCK},
        ).all()
        if not documents:
            return
        first, after = int(documents[0][0]), int(documents[-1][0])
        connection.execute(
            sa.delete(values).where(
                values.c.kind == NUMBER, values.c.document_id >= first, values.c.document_id <= after
            )
        )
        rows = [
            row
            for doc_id, meta in documents
            for row in value_rows(int(doc_id), _as_dict(meta))
            if row["kind"] == NUMBER
        ]
        if rows:
            connection.execute(sa.insert(values), rows)


def _as_dict(meta: Any) -> dict[str, Any]:
    value = json.loads(meta) if isinstance(meta, str) else meta
    return value if isinstance(value, dict) else {}


def downgrade() -> None:
    """Nothing to undo: the exact rows are what the older code meant to write."""
