"""The keeper of the server's own keyword index, which `semsearch serve` hands to the app
(indexer/write/keyword_follower.py: the API layer does not import the write path)."""

from __future__ import annotations

from typing import Protocol

from search.keyword.index import KeywordIndex
from search.storage.store import Store


class KeywordKeeper(Protocol):
    """Applies the change log to the keyword index this process serves, where no other process does."""

    @property
    def error(self) -> str | None:
        """Why its last catch-up failed (None: it succeeded, or none ran)."""
        ...

    def start(self, store: Store, index: KeywordIndex) -> None:
        """Keep `index` caught up from now on."""
        ...

    def stop(self) -> None:
        """Stop keeping it."""
        ...
