"""Keeping the index honest: deletes, and the consistency check between SQL rows and vectors."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

from indexer.pipeline import Indexer


@dataclass(frozen=True)
class Consistency:
    """What `semsearch check` reports: every chunk row should have one vector, and no vector lack a row."""

    documents: int
    chunks: int
    vectors: int
    orphan_vectors: int
    missing_vectors: int

    @property
    def ok(self) -> bool:
        """True when rows and vectors match one to one."""
        return self.orphan_vectors == 0 and self.missing_vectors == 0 and self.chunks == self.vectors

    def as_dict(self) -> dict[str, int | bool]:
        """The report as JSON-ready values."""
        return {**asdict(self), "ok": self.ok}


def check(indexer: Indexer) -> Consistency:
    """Compare the store's chunk ids with the ids the serving index holds."""
    orphans, missing = indexer.mismatches()
    counts = indexer.store.counts()
    return Consistency(
        documents=counts["documents"],
        chunks=counts["chunks"],
        vectors=indexer.index.ntotal,
        orphan_vectors=len(orphans),
        missing_vectors=len(missing),
    )


def repair(indexer: Indexer) -> Consistency:
    """Embed what lacks a vector, drop orphan vectors, publish; returns the state afterwards."""
    indexer.reconcile()
    return check(indexer)


def delete(indexer: Indexer, external_ids: Sequence[str]) -> tuple[list[str], int]:
    """Delete documents: rows first (from then on they never show in results), then their vectors.

    Returns the ids that existed and how many chunks went with them."""
    found, chunk_ids = indexer.store.delete_documents(list(dict.fromkeys(external_ids)))
    if chunk_ids:
        indexer.publish()
    return found, len(chunk_ids)
