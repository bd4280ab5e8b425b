"""The collections of a deployment (search/storage/collections.py). The rows already stored become
the collection `default`, where they are: nothing is moved or embedded again.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from migrations.scope import deployment

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    """Create `collections` (in the deployment's database only), holding `default`."""
    if not deployment():
        return
    table = op.create_table(
        "collections",
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("settings", _JSON, nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.bulk_insert(table, [{"name": "default", "settings": {}, "status": "ready", "created_at": datetime.now(UTC)}])


def downgrade() -> None:
    """Drop `collections`."""
    if not deployment():
        return
    op.drop_table("collections")
