"""Metadata indexes that cover their lookups: `document_id` joins each value index, so a filter reads
its matching document ids from the index alone instead of one table row per match.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_OLD = {"ix_metadata_values_text": ["key", "kind", "text_hash"], "ix_metadata_values_number": ["key", "kind", "number"]}


def upgrade() -> None:
    """Rebuild the two value indexes with `document_id` as their last column."""
    for name, columns in _OLD.items():
        op.drop_index(name, table_name="metadata_values")
        op.create_index(name, "metadata_values", [*columns, "document_id"])


def downgrade() -> None:
    """The value indexes without `document_id`."""
    for name, columns in _OLD.items():
        op.drop_index(name, table_name="metadata_values")
        op.create_index(name, "metadata_values", columns)
