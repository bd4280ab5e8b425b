"""Ranking remembers which document each chunk belongs to (search/storage/owners.py) instead of
reading it from SQL per query. A chunk deleted while the derived indexes still hold it must still
never be shown, and a page must still be full: on SQLite and PostgreSQL, in every mode."""

from __future__ import annotations

import pytest

from indexer.write.pipeline import open_indexer
from search.components import open_hybrid
from search.query.hits import MODES
from search.query.hybrid import HybridSearcher
from search.settings import Settings
from search.storage.records import DocumentIn

QUERY = "cat fish"


@pytest.fixture
def hybrid(settings: Settings, database_url: str) -> HybridSearcher:
    live = settings.model_copy(update={"database_url": database_url})
    indexer = open_indexer(live)
    words = ["cat", "fish", "dog", "tree", "moon"]
    indexer.run([DocumentIn(f"d{i}", " ".join(words[: 1 + i % 5]) + f" filler{i}", f"doc {i}") for i in range(30)])
    indexer.store.close()
    return open_hybrid(live)


@pytest.mark.parametrize("mode", MODES)
def test_a_document_deleted_after_its_owners_were_remembered_is_not_shown(hybrid: HybridSearcher, mode: str) -> None:
    before = hybrid.search(QUERY, k=5, mode=mode)
    assert len(before) == 5
    assert len(hybrid.store.owners) > 0  # the owners of the chunks ranked are remembered
    gone = [before[0].id, before[2].id]
    hybrid.store.delete_documents(gone)
    # The derived indexes have not caught up (the dense view looks at most once a second, the
    # keyword index only when its keeper applies the change): they still return the deleted chunks.
    after = hybrid.search(QUERY, k=5, mode=mode)
    assert not {h.id for h in after} & set(gone)
    assert len(after) == 5  # the page is still full: ranked again where SQL answers
    assert [h.id for h in after[:1]] == [before[1].id]


def test_the_memory_starts_over_past_its_limit(hybrid: HybridSearcher) -> None:
    hybrid.store.owners.limit = 3
    hits = hybrid.search(QUERY, k=5)
    assert len(hybrid.store.owners) <= 3 + 10 * 4 * 2  # at most one read past the limit is held
    assert [h.id for h in hybrid.search(QUERY, k=5)] == [h.id for h in hits]
