"""The document each chunk belongs to, remembered by the process that ranks.

Ranking asks for the owner of every chunk a retriever returns (a few hundred per retriever per query),
and reading them from SQL was the largest single cost of a hybrid search under load (py-spy: a quarter
of the time the Python lock was held). Which document a chunk id belongs to never changes: chunk ids
are never reused (AUTOINCREMENT on SQLite, a sequence on PostgreSQL) and a document's id is never
rewritten, so a remembered owner cannot become another document's.

What can change is whether the chunk still exists. The rows decide that, later and for certain: the
hits shown are read from SQL (`Store.chunk_hits`), a chunk found gone there is forgotten here, and
its query is ranked again (search/query/hybrid.py), where SQL answers for it. Metadata, which
writes change, is never remembered."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence

from search.storage.records import ChunkOwner

# Owners remembered at most (about 150 bytes each: a few hundred MiB would be a million). Past it the
# memory starts over: the chunks that queries return are read again, a query at a time.
LIMIT = 500_000


class OwnerCache:
    """chunk id -> its document (the user's id), for the chunks ranking has seen."""

    def __init__(self, limit: int = LIMIT) -> None:
        self.limit = limit
        self._owners: dict[int, ChunkOwner] = {}
        self._lock = threading.Lock()  # writers only: readers see a whole dict either way

    def __len__(self) -> int:
        return len(self._owners)

    def known(self, chunk_ids: Sequence[int]) -> tuple[dict[int, ChunkOwner], list[int]]:
        """The remembered owners among `chunk_ids`, and the ids to read from SQL."""
        owners = self._owners
        found: dict[int, ChunkOwner] = {}
        missing: list[int] = []
        for chunk_id in chunk_ids:
            owner = owners.get(chunk_id)
            if owner is None:
                missing.append(chunk_id)
            else:
                found[chunk_id] = owner
        return found, missing

    def remember(self, rows: Iterable[tuple[int, ChunkOwner]]) -> None:
        """Owners just read from SQL (rows that exist)."""
        with self._lock:
            if len(self._owners) >= self.limit:
                self._owners = {}
            self._owners.update(rows)

    def forget(self, chunk_ids: Iterable[int]) -> None:
        """Chunks found gone: their next lookup goes to SQL."""
        with self._lock:
            for chunk_id in chunk_ids:
                self._owners.pop(chunk_id, None)
