"""The metadata index: each document's top-level scalar metadata values as rows, for filters.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    """Create `metadata_values` and fill it from the stored documents (once, in blocks)."""
    from search.storage.metadata_index import value_rows

    op.create_table(
        "metadata_values",
        sa.Column("id", _SEQ, nullable=False),
        sa.Column("document_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=128), nullable=False),
        sa.Column("kind", sa.String(length=1), nullable=False),
        sa.Column("text_hash", sa.String(length=32), nullable=True),
        # NUMERIC on both: exact on PostgreSQL; on SQLite integers stay integers.
        sa.Column("number", sa.Numeric(), nullable=True),
        sa.ForeignKeyConstraint(["document_id"], ["documents.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_metadata_values_text", "metadata_values", ["key", "kind", "text_hash"])
    op.create_index("ix_metadata_values_number", "metadata_values", ["key", "kind", "number"])
    op.create_index("ix_metadata_values_document", "metadata_values", ["document_id"])
    # Inserted with Float binds: SQLAlchemy's Numeric would hand SQLite Decimals.
    table = sa.table(
        "metadata_values",
        *(sa.column(name) for name in ("document_id", "key", "kind", "text_hash")),
        sa.column("number", sa.Float()),
    )
    connection = op.get_bind()
    after = 0
    while True:
        rows = connection.execute(
            sa.text("SELECT id, metadata FROM documents WHERE id > :after ORDER BY id LIMIT 10000"), {"after": after}
        ).all()
        if not rows:
            return
        after = int(rows[-1][0])
        values = [row for doc_id, meta in rows for row in value_rows(int(doc_id), _as_dict(meta))]
        if values:
            connection.execute(sa.insert(table), values)


def _as_dict(meta: Any) -> dict[str, Any]:
    value = json.loads(meta) if isinstance(meta, str) else meta
    return value if isinstance(value, dict) else {}


def downgrade() -> None:
    """Drop the table (filters then read nothing: downgrade the code with it)."""
    op.drop_table("metadata_values")
