"""Collections in SQL and on disk: each has its own database (a SQLite file or a PostgreSQL schema) and
folder, the same document id lives in two of them with different texts, and delete removes one
collection's rows and files only; on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from search.collections import catalog
from search.collections.spec import CollectionSettings
from search.components import migrate, open_store
from search.settings import Settings
from search.storage.records import DocumentIn
from search.storage.store import Store
from search.validation import FieldError
from search.work.queue import enqueue


@pytest.fixture
def server(settings: Settings, database_url: str) -> Settings:
    url = None if database_url.startswith("sqlite") else database_url
    return settings.model_copy(update={"database_url": url})


@pytest.fixture
def deployment(server: Settings) -> Iterator[Store]:
    migrate(server)
    store = open_store(server)
    yield store
    store.close()


def _put(settings: Settings, doc_id: str, text: str) -> None:
    store = open_store(settings)
    try:
        enqueue(store, [DocumentIn(external_id=doc_id, text=text)])
    finally:
        store.close()


def _text(settings: Settings, doc_id: str) -> str | None:
    store = open_store(settings)
    try:
        found = store.get_document(doc_id)
        return None if found is None else found.text
    finally:
        store.close()


def test_collections_hold_their_own_rows(server: Settings, deployment: Store) -> None:
    cls, created = catalog.create(server, deployment, "team-a", CollectionSettings(pooling="cls"))
    assert created and cls.pooling == "cls" and cls.model == server.model
    mean, _ = catalog.create(server, deployment, "team_b", CollectionSettings())
    default = catalog.collection_settings(server, deployment, "default")
    for settings, text in ((cls, "alpha text"), (mean, "beta text"), (default, "gamma text")):
        _put(settings, "same-id", text)
    assert [_text(s, "same-id") for s in (cls, mean, default)] == ["alpha text", "beta text", "gamma text"]
    assert [c.name for c in catalog.listed(deployment)] == ["default", "team-a", "team_b"]
    assert catalog.collection_settings(server, deployment, "team-a").pooling == "cls"

    assert catalog.delete(server, deployment, "team-a")
    assert not cls.collection_dir.exists()
    assert [c.name for c in catalog.listed(deployment)] == ["default", "team_b"]
    with pytest.raises(catalog.UnknownCollectionError):
        catalog.collection_settings(server, deployment, "team-a")
    assert [_text(s, "same-id") for s in (mean, default)] == ["beta text", "gamma text"]
    # The name made again starts empty.
    again, created = catalog.create(server, deployment, "team-a", CollectionSettings())
    assert created and again.pooling == "mean" and _text(again, "same-id") is None


def test_create_again_conflicts_only_with_other_settings(server: Settings, deployment: Store) -> None:
    catalog.create(server, deployment, "docs", CollectionSettings(pooling="cls", chunk_size=128))
    same, created = catalog.create(server, deployment, "docs", CollectionSettings(pooling="cls", chunk_size=128))
    assert not created and same.chunk_size == 128
    assert not catalog.create(server, deployment, "docs", CollectionSettings())[1]
    with pytest.raises(catalog.CollectionConflictError, match="pooling is 'cls', not 'mean'"):
        catalog.create(server, deployment, "docs", CollectionSettings(pooling="mean"))


def test_bad_names_settings_and_default(server: Settings, deployment: Store) -> None:
    for name in ("", "Upper", "-lead", "a" * 64, "sp ace", "a/b"):
        with pytest.raises(FieldError, match="collection"):
            catalog.create(server, deployment, name, CollectionSettings())
    with pytest.raises(FieldError, match=r"settings\.chunk_size"):
        catalog.create(server, deployment, "x", CollectionSettings(chunk_size=4))
    with pytest.raises(catalog.DefaultCollectionError):
        catalog.delete(server, deployment, "default")
    assert not catalog.delete(server, deployment, "never-made")


def test_a_killed_delete_is_finished(server: Settings, deployment: Store) -> None:
    made, _ = catalog.create(server, deployment, "half", CollectionSettings())
    _put(made, "d", "text")
    from search.storage import collections as rows

    with deployment.session(write=True) as session:
        rows.mark_deleting(session, "half")  # then the process was killed
    with pytest.raises(catalog.UnknownCollectionError):
        catalog.collection_settings(server, deployment, "half")
    with pytest.raises(catalog.CollectionConflictError, match="being deleted"):
        catalog.create(server, deployment, "half", CollectionSettings())
    assert catalog.finish_deletes(server, deployment) == ["half"]
    assert not made.collection_dir.exists() and catalog.listed(deployment)[-1].name == "default"


def test_long_names_get_distinct_schemas() -> None:
    from search.collections.placement import schema_name

    long_a, long_b = "a" * 62 + "b", "a" * 62 + "c"
    assert schema_name(long_a) != schema_name(long_b)
    assert max(len(schema_name(long_a)), len(schema_name("x-y"))) <= 63
    assert schema_name("x-y") != schema_name("x_y")
