"""Keeping the index honest: deletes, and the consistency check between SQL rows and vectors."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

from indexer.write.pipeline import Indexer
from search.dense.catalog import BaseFileState


@dataclass(frozen=True)
class Consistency:
    """What `semsearch check` reports: every chunk row should have one vector, and no vector lack a row."""

    documents: int
    chunks: int
    vectors: int
    orphan_vectors: int
    missing_vectors: int
    base_file: BaseFileState

    @property
    def ok(self) -> bool:
        """True when rows and vectors match one to one and the base file can be read."""
        matched = self.orphan_vectors == 0 and self.missing_vectors == 0 and self.chunks == self.vectors
        return matched and self.base_file is not BaseFileState.UNREADABLE

    def as_dict(self) -> dict[str, int | bool]:
        """The report as JSON-ready values."""
        return {**asdict(self), "ok": self.ok}


def check(indexer: Indexer) -> Consistency:
    """Compare the store's chunk ids with the ids readers serve (the base file plus the change log)."""
    view = indexer.index
    orphans, missing = indexer.mismatches(view)
    counts = indexer.store.counts()
    return Consistency(
        documents=counts["documents"],
        chunks=counts["chunks"],
        vectors=view.ntotal,
        orphan_vectors=len(orphans),
        missing_vectors=len(missing),
        base_file=indexer.base_file_state(),
    )


def repair(indexer: Indexer) -> Consistency:
    """Embed what lacks a vector, rebuild the base file from the stored vectors; returns the state afterwards."""
    indexer.reconcile()
    return check(indexer)


def delete(indexer: Indexer, external_ids: Sequence[str]) -> tuple[list[str], int]:
    """Delete documents: rows and their change-log entries in one transaction (from then on they never
    show in results; readers drop their vectors at their next look, a merge from the base file).

    Returns the ids that existed and how many chunks went with them."""
    found, chunk_ids = indexer.store.delete_documents(list(dict.fromkeys(external_ids)))
    return found, len(chunk_ids)
