"""The worker of every collection: turns in a ring (a collection's backlog does not hold another's few
documents back), collections made and deleted meanwhile picked up, and one collection's failing
worker shown, by name, in the state /health reads."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from indexer.write.fleet import Fleet
from search.collections import catalog
from search.collections.spec import CollectionSettings
from search.components import migrate, open_store
from search.settings import Settings
from search.storage.records import DocumentIn
from search.work.queue import enqueue


@pytest.fixture
def server(settings: Settings) -> Settings:
    migrate(settings)
    return settings


@pytest.fixture
def fleet(server: Settings) -> Iterator[Fleet]:
    made = Fleet(server, refresh_seconds=0.0)
    yield made
    made.close()


def _collection(server: Settings, name: str, docs: int) -> Settings:
    deployment = open_store(server)
    try:
        own, _ = catalog.create(server, deployment, name, CollectionSettings())
    finally:
        deployment.close()
    store = open_store(own)
    enqueue(store, [DocumentIn(f"{name}-{i}", f"text number {i} of the {name} collection") for i in range(docs)])
    store.close()
    return own


def _pending(settings: Settings) -> int:
    store = open_store(settings)
    try:
        return sum(1 for status in store.statuses(store.external_ids()).values() if status == "pending")
    finally:
        store.close()


def test_a_backlog_does_not_hold_back_another_collection(server: Settings, fleet: Fleet) -> None:
    big = _collection(server, "big", 600)
    small = _collection(server, "small", 3)
    for _ in range(6):  # start-up turns, then one round in which each collection takes a step
        fleet.turn()
        if _pending(small) == 0:
            break
    assert _pending(small) == 0
    assert _pending(big) > 0, "the big collection's backlog was not yet embedded when the small one was done"


def test_collections_made_and_deleted_meanwhile(server: Settings, fleet: Fleet) -> None:
    fleet.turn()
    assert set(fleet.workers) == {"default"}
    late = _collection(server, "late", 2)
    while _pending(late):
        fleet.turn()
    deployment = open_store(server)
    catalog.delete(server, deployment, "late")
    deployment.close()
    fleet.turn()
    assert set(fleet.workers) == {"default"}


def test_a_failing_collection_is_named_in_the_state(
    server: Settings, fleet: Fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    _collection(server, "broken", 1)
    fleet.refresh()
    worker = fleet.workers["broken"]

    def fail() -> int:
        raise RuntimeError("the disk caught fire")

    monkeypatch.setattr(worker, "step", fail)
    for _ in range(worker.state.failure_budget + 1):
        worker.resume_at = 0.0  # no backoff waits in a test
        fleet.turn()
    snapshot = fleet.state.snapshot()
    assert snapshot.failing
    assert (
        snapshot.last_error is not None
        and "collection broken: RuntimeError: the disk caught fire" in snapshot.last_error
    )
    assert not fleet.workers["default"].state.snapshot().failing
