"""The change log replaces the `published` flag and the tombstone table; generations get base segments.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    """Create `changes` and `derived_state`; what the old flag and tombstones said was still to be
    published becomes log entries after the existing files' `base_seq` of 0, so readers apply it."""
    op.create_table(
        "changes",
        sa.Column("seq", _SEQ, nullable=False),
        sa.Column("op", sa.String(length=3), nullable=False),
        sa.Column("chunk_id", sa.BigInteger(), nullable=False),
        sa.Column("space", sa.String(length=16), nullable=True),
        sa.PrimaryKeyConstraint("seq"),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "derived_state",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.execute(
        "INSERT INTO changes (op, chunk_id, space) SELECT 'vec', chunk_id, space FROM chunk_vectors "
        "WHERE NOT published ORDER BY chunk_id"
    )
    op.execute("INSERT INTO changes (op, chunk_id, space) SELECT 'del', chunk_id, NULL FROM removed_chunks")
    op.execute("UPDATE documents SET status = 'indexed' WHERE status = 'embedded'")
    with op.batch_alter_table("chunk_vectors") as batch:
        batch.drop_index("ix_chunk_vectors_space_published")
        batch.drop_column("published")
    op.drop_table("removed_chunks")
    with op.batch_alter_table("index_generations") as batch:
        batch.add_column(sa.Column("index_type", sa.String(length=256), nullable=False, server_default=""))
        batch.add_column(sa.Column("base_seq", sa.BigInteger(), nullable=False, server_default="0"))
    op.execute("UPDATE index_generations SET index_type = factory")


def downgrade() -> None:
    """Back to the flag and tombstones: everything counts as unpublished, so the next sync re-adds it."""
    with op.batch_alter_table("index_generations") as batch:
        batch.drop_column("base_seq")
        batch.drop_column("index_type")
    op.create_table(
        "removed_chunks",
        sa.Column("chunk_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.PrimaryKeyConstraint("chunk_id"),
    )
    with op.batch_alter_table("chunk_vectors") as batch:
        batch.add_column(sa.Column("published", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.create_index("ix_chunk_vectors_space_published", ["space", "published"])
    op.drop_table("derived_state")
    op.drop_table("changes")
