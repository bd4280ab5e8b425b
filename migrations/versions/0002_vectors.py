"""Chunk vectors in SQL per embedding space, and tombstones of removed chunks.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create chunk_vectors and removed_chunks. Existing indexes keep serving; their vectors reach SQL
    when a rebuild or `check --repair` re-embeds the chunks that have none."""
    op.create_table(
        "chunk_vectors",
        sa.Column("chunk_id", sa.Integer(), nullable=False),
        sa.Column("space", sa.String(length=16), nullable=False),
        sa.Column("vector", sa.LargeBinary(), nullable=False),
        sa.Column("published", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["chunk_id"], ["chunks.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("chunk_id", "space"),
    )
    op.create_index("ix_chunk_vectors_space_published", "chunk_vectors", ["space", "published"])
    op.create_table(
        "removed_chunks",
        sa.Column("chunk_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.PrimaryKeyConstraint("chunk_id"),
    )


def downgrade() -> None:
    """Drop both tables."""
    op.drop_table("removed_chunks")
    op.drop_table("chunk_vectors")
