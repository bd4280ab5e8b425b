"""Which database a migration runs on: the deployment's own (which is also the collection `default`'s),
or another collection's, which holds no deployment-wide tables (search/collections/placement.py)."""

from __future__ import annotations

from alembic import context


def deployment() -> bool:
    """Whether the database being migrated is the deployment's own."""
    return bool(context.config.attributes.get("deployment", True))
