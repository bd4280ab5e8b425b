"""Keeping the dense index honest: deletes, and the dense index as a derived index (DenseIndex: the
Publisher's base files, checked against the chunk rows and mended from the vectors in SQL)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from indexer.write.embedding import embed_missing
from indexer.write.publisher import Merge, Publisher
from search.dense.catalog import BaseFileState, IndexWatcher
from search.storage import changes
from search.storage.store import Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Consistency:
    """What `semsearch check` reports: every chunk row should have one vector, and no vector lack a row;
    and the base file should not be behind the change log by a merge or more (one that failed, as on a
    full disk: readers then apply ever more of the log at every start)."""

    documents: int
    chunks: int
    vectors: int
    orphan_vectors: int
    missing_vectors: int
    base_file: BaseFileState
    stray_files: int  # files of the index directory nothing reads (`--repair` removes them)
    base_seq: int  # the change log seq the active generation's base file holds
    head: int  # the newest log seq
    unmerged: int  # log entries of its space after `base_seq`, which readers apply themselves
    merge_at: int  # unmerged entries that make a merge due (`--repair` merges them)

    @property
    def ok(self) -> bool:
        """True when rows and vectors match one to one, the base file can be read and no stray file is
        left, and no merge is overdue."""
        matched = self.orphan_vectors == 0 and self.missing_vectors == 0 and self.chunks == self.vectors
        files = self.base_file is not BaseFileState.UNREADABLE and not self.stray_files
        return matched and files and self.unmerged < self.merge_at

    @property
    def lag(self) -> str | None:
        """How far behind the change log it is, in words, when a merge is overdue."""
        if self.unmerged < self.merge_at:
            return None
        return (
            f"{self.unmerged} entries behind the change log in its base file (base seq {self.base_seq}, head "
            f"{self.head}; a merge is due at {self.merge_at})"
        )

    def as_dict(self) -> dict[str, int | bool]:
        """The report as JSON-ready values."""
        return {**asdict(self), "ok": self.ok}


class DenseIndex:
    """The FAISS side as a derived index (indexer/write/derived.py): the active generation's base
    file, merged from the change log by the Publisher; `store` is the Publisher's."""

    name = "dense"
    # Readers apply the change log themselves; a catch-up is a merge (O(corpus) when it happens),
    # which the worker spaces out.
    eager = False

    def __init__(self, publisher: Publisher) -> None:
        self.publisher = publisher

    def catch_up(self, store: Store) -> Merge | None:
        """Merge the change log into a new base file when enough changed since the last one."""
        return self.publisher.sync()

    def rebuild(self, store: Store) -> Merge | None:
        """Write the base file afresh from the stored vectors."""
        return self.publisher.sync(force=True, rebuild=True)

    def check(self, store: Store) -> Consistency:
        """Compare the store's chunk ids with the ids readers serve (the base file plus the change log)."""
        publisher = self.publisher
        view = IndexWatcher(publisher.catalog, publisher.encoder, publisher.factory).load().index
        stored = np.asarray(store.all_chunk_ids(), dtype=np.int64)
        held = view.ids()
        counts = store.counts()
        generation = store.active_generation()
        base_seq = 0 if generation is None else generation.base_seq
        with store.session() as s:
            head = changes.head(s)
            unmerged = 0 if generation is None else changes.count(s, base_seq, space=publisher.rows.space)
        return Consistency(
            documents=counts["documents"],
            chunks=counts["chunks"],
            vectors=view.ntotal,
            orphan_vectors=len(np.setdiff1d(held, stored)),
            missing_vectors=len(np.setdiff1d(stored, held)),
            base_file=self._base_file(store),
            stray_files=self._strays(),
            base_seq=base_seq,
            head=head,
            unmerged=unmerged,
            merge_at=publisher.merge_threshold(0 if generation is None else generation.vectors),
        )

    def repair(self, store: Store) -> Consistency:
        """Embed every chunk that lacks a vector, rebuild the base file from the stored vectors; the
        check afterwards."""
        embed_missing(self.publisher.rows, self.publisher.encoder)
        self.rebuild(store)
        return self.check(store)

    def _strays(self) -> int:
        with self.publisher.locked() as s:  # no merge between writing its file and committing it
            strays = self.publisher.catalog.strays(s)
        for path in strays:
            log.warning("stray file in the index directory: %s (check --repair removes it)", path.name)
        return len(strays)

    def _base_file(self, store: Store) -> BaseFileState:
        """Whether the active generation's base file reads (none: nothing merged yet)."""
        catalog = self.publisher.catalog
        generation = store.active_generation()
        if generation is None or (generation.base_seq == 0 and not catalog.path_of(generation).exists()):
            return BaseFileState.NONE
        readable = catalog.load_base(generation, mmap=True) is not None
        return BaseFileState.OK if readable else BaseFileState.UNREADABLE


def delete(store: Store, external_ids: Sequence[str]) -> tuple[list[str], int]:
    """Delete documents: rows and their change-log entries in one transaction (from then on they never
    show in results; readers drop their vectors at their next look, a merge from the base file).

    Returns the ids that existed and how many chunks went with them."""
    found, chunk_ids = store.delete_documents(list(dict.fromkeys(external_ids)))
    return found, len(chunk_ids)
