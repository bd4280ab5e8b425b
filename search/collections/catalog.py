"""Creating, finding and deleting collections: the one place that keeps a collection's row (in the
deployment's database) and its own database and files in step, whatever process does it (the API's
`PUT`/`DELETE /collections/{name}`, `semsearch collections create|delete`).

Creating makes the collection's database first and records the row last; deleting marks the row
first, then drops the database and files, then removes the row. A process killed in between leaves
either an unrecorded database (dropped when the name is next created) or a row marked deleting
(hidden from every reader, and finished by the worker's `finish_deletes`, or the next delete of the name).
"""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError

from search.access import DEFAULT_COLLECTION, check_collection_name
from search.collections import placement
from search.collections.spec import CollectionSettings, conflicts, effective
from search.components import migrate
from search.settings import Settings
from search.storage import collections as rows
from search.storage.collections import CollectionInfo
from search.storage.models import CollectionStatus
from search.storage.store import Store


class UnknownCollectionError(LookupError):
    """No collection of that name (or one being deleted)."""

    def __init__(self, name: str) -> None:
        super().__init__(f"there is no collection {name!r}")
        self.name = name


class CollectionConflictError(ValueError):
    """A create that names an existing collection with other settings than it was made with."""


class DefaultCollectionError(ValueError):
    """The collection `default` is the deployment's own database: it cannot be deleted."""


def collection_settings(server: Settings, deployment: Store, name: str) -> Settings:
    """The settings collection `name` runs with; UnknownCollectionError when there is none."""
    check_collection_name(name)
    if name == DEFAULT_COLLECTION:
        return server.model_copy(update={"collection": DEFAULT_COLLECTION})
    info = found(deployment, name)
    if info is None:
        raise UnknownCollectionError(name)
    return effective(server, name, info.settings)


def listed(deployment: Store) -> list[CollectionInfo]:
    """The collections served, by name."""
    with deployment.session() as session:
        return rows.listed(session)


def found(deployment: Store, name: str) -> CollectionInfo | None:
    """The collection `name` when it is served (None: there is none, or it is being deleted)."""
    with deployment.session() as session:
        info = rows.found(session, name)
    return info if info is not None and info.status == CollectionStatus.READY else None


def every_collection(server: Settings, deployment: Store) -> list[tuple[CollectionInfo, Settings]]:
    """Every collection served, by name, with the settings it runs with (one read of the rows)."""
    return [(info, effective(server, info.name, info.settings)) for info in listed(deployment)]


def create(server: Settings, deployment: Store, name: str, own: CollectionSettings) -> tuple[Settings, bool]:
    """Make collection `name` with settings `own` (the server's for the rest): (its settings, True);
    for an existing one made with the same settings, (its settings, False), and one made with other
    settings is a CollectionConflictError."""
    check_collection_name(name)
    given = own.given()
    settings = effective(server, name, given)
    with deployment.session() as session:
        existing = rows.found(session, name)
    if existing is not None and existing.status == CollectionStatus.READY:
        return _same(server, existing, given), False
    if existing is not None:  # its delete is under way (or a killed one is finished by the worker)
        raise CollectionConflictError(f"the collection {name!r} is being deleted: create it again in a moment")
    if name != DEFAULT_COLLECTION:
        # What a killed create left of the name (a database not recorded): the new collection starts empty.
        placement.remove(deployment.engine, server.deployment_database_url, server.data_dir, name)
    migrate(settings)
    try:
        with deployment.session(write=True) as session:
            rows.add(session, name, given)
    except IntegrityError:  # made by another process meanwhile
        with deployment.session() as session:
            existing = rows.found(session, name)
        if existing is None:
            raise
        return _same(server, existing, given), False
    return settings, True


def _same(server: Settings, existing: CollectionInfo, given: dict[str, object]) -> Settings:
    differ = conflicts(existing.settings, given)
    if differ:
        said = ", ".join(f"{key} is {old!r}, not {new!r}" for key, (old, new) in differ.items())
        raise CollectionConflictError(f"the collection {existing.name!r} exists with other settings: {said}")
    return effective(server, existing.name, existing.settings)


def delete(server: Settings, deployment: Store, name: str) -> bool:
    """Delete collection `name`, its rows and files; False when there is none."""
    check_collection_name(name)
    if name == DEFAULT_COLLECTION:
        raise DefaultCollectionError("the collection 'default' holds the deployment itself and cannot be deleted")
    with deployment.session(write=True) as session:
        found = rows.found(session, name)
        if found is None:
            return False
        rows.mark_deleting(session, name)
    _remove(server, deployment, name)
    return found.status == CollectionStatus.READY


def _remove(server: Settings, deployment: Store, name: str) -> None:
    placement.remove(deployment.engine, server.deployment_database_url, server.data_dir, name)
    with deployment.session(write=True) as session:
        rows.forget(session, name)


def finish_deletes(server: Settings, deployment: Store) -> list[str]:
    """Finish the deletes a killed process left (rows marked deleting); the names finished."""
    with deployment.session() as session:
        left = [info.name for info in rows.listed(session, with_deleting=True) if info.status != CollectionStatus.READY]
    for name in left:
        _remove(server, deployment, name)
    return left
