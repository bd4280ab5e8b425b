"""The collections of a deployment in SQL, each function in the caller's session (and transaction).

The rows live in the deployment's own database; each collection's documents live in its own
(search/collections/placement.py). A row is written `ready` once its database exists, and marked
`deleting` before its database is dropped, so a collection is never served half made or half gone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from search.storage.models import CollectionRow, CollectionStatus


@dataclass(frozen=True)
class CollectionInfo:
    """A collection as stored: its name, the settings it was created with, its status."""

    name: str
    settings: dict[str, Any]
    status: CollectionStatus
    created_at: datetime


def _info(row: CollectionRow) -> CollectionInfo:
    created = row.created_at if row.created_at.tzinfo else row.created_at.replace(tzinfo=UTC)
    return CollectionInfo(row.name, dict(row.settings or {}), CollectionStatus(row.status), created)


def listed(session: Session, with_deleting: bool = False) -> list[CollectionInfo]:
    """The collections by name (those being deleted only `with_deleting`)."""
    query = select(CollectionRow).order_by(CollectionRow.name)
    if not with_deleting:
        query = query.where(CollectionRow.status == CollectionStatus.READY)
    return [_info(row) for row in session.scalars(query)]


def found(session: Session, name: str) -> CollectionInfo | None:
    """The collection `name`, ready or being deleted; None when there is none."""
    row = session.get(CollectionRow, name)
    return None if row is None else _info(row)


def add(session: Session, name: str, settings: dict[str, Any]) -> CollectionInfo:
    """Record a new, ready collection (its database made already)."""
    row = CollectionRow(name=name, settings=settings, status=CollectionStatus.READY)
    session.add(row)
    session.flush()
    return _info(row)


def mark_deleting(session: Session, name: str) -> bool:
    """Hide the collection from every reader before its database is dropped; False when there is none."""
    row = session.get(CollectionRow, name, with_for_update=True)
    if row is None:
        return False
    row.status = CollectionStatus.DELETING
    return True


def forget(session: Session, name: str) -> None:
    """Remove the row of a collection whose database is gone."""
    session.execute(delete(CollectionRow).where(CollectionRow.name == name))
