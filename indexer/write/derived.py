"""The derived indexes a writing process keeps up with SQL, the source of truth: the dense index's base
files (indexer/write/maintenance.py's DenseIndex, over the Publisher) and the keyword index
(indexer/write/keyword_writer.py). One protocol, one list per process (`beside_dense` names the
indexes besides the dense one, in one place), one loop per action: the worker, `index`, `delete` and
`check` drive them the same way.

A failing index never stops the others or the embedding: its failure is logged (once while it
lasts) and kept under its name (`failures`) until its next catch-up succeeds, which mends it from SQL."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from contextlib import suppress
from typing import Protocol

from indexer.write.keyword_writer import KeywordWriter
from search.components import open_keyword
from search.dense.catalog import IndexMismatchError
from search.settings import Settings
from search.storage.outage import classify, describe, error_text, logged_here
from search.storage.store import Store

log = logging.getLogger(__name__)


class Report(Protocol):
    """What `check` and `repair` say of an index (what `semsearch check` prints)."""

    @property
    def ok(self) -> bool:
        """True when the index is right as of what it applied."""
        ...

    def as_dict(self) -> Mapping[str, object]:
        """JSON-ready, with the verdict."""
        ...

    @property
    def lag(self) -> str | None:
        """How far behind the change log it is, in words, when that makes it not ok (None: it is not)."""
        ...


class DerivedIndex(Protocol):
    """A writer of one index derived from SQL; every method is safe to repeat after a crash."""

    @property
    def name(self) -> str:
        """What messages and reports call it ("dense", "keyword")."""
        ...

    @property
    def eager(self) -> bool:
        """True when it is caught up after every embedded batch, not only at the publish interval:
        readers (and `?wait=true`) see only what it applied. False when readers apply the change log
        themselves and a catch-up is a costly merge."""
        ...

    def catch_up(self, store: Store) -> object:
        """Apply what changed in SQL since it last did, in O(changes)."""
        ...

    def rebuild(self, store: Store) -> object:
        """Build it afresh from SQL."""
        ...

    def check(self, store: Store) -> Report:
        """Compare it with SQL."""
        ...

    def repair(self, store: Store) -> Report:
        """Mend what the check finds wrong; the check afterwards."""
        ...


def beside_dense(settings: Settings) -> list[DerivedIndex]:
    """The derived indexes besides the dense one that a writing process keeps: the keyword index.
    Its directory's keeper lock is taken now, so that a server started beside this process (`serve`
    with its worker) leaves that index to it from the start."""
    keyword = KeywordWriter(open_keyword(settings))
    with suppress(OSError):  # a folder that cannot be made: its catch-up fails and says so
        keyword.claim()
    return [keyword]


class DerivedIndexes:
    """Every derived index one writing process keeps, driven in one loop per action."""

    def __init__(self, store: Store, indexes: Sequence[DerivedIndex]) -> None:
        self.store = store
        self.indexes = list(indexes)
        # The indexes whose last catch-up failed, with the error; cleared by the next that succeeds.
        self.failures: dict[str, str] = {}
        # The same errors in words safe to show anyone (search.storage.outage.describe).
        self.public: dict[str, str] = {}

    def catch_up(self, eager_only: bool = False) -> dict[str, str]:
        """Catch every index up (with `eager_only`, those that follow every batch); returns the
        failures afterwards. A serving generation of another model is not an index's failure: its
        IndexMismatchError goes to the caller, which follows the model."""
        for index in self.indexes:
            if eager_only and not index.eager:
                continue
            try:
                index.catch_up(self.store)
            except IndexMismatchError:
                raise
            except Exception as exc:
                self._failed(index.name, exc)
            else:
                self._caught_up(index.name)
        return dict(self.failures)

    def check(self) -> dict[str, Report]:
        """Each index compared with SQL, by name."""
        return {index.name: index.check(self.store) for index in self.indexes}

    def repair(self) -> dict[str, Report]:
        """Each index mended where wrong, by name; the checks afterwards."""
        return {index.name: index.repair(self.store) for index in self.indexes}

    def _failed(self, name: str, exc: Exception) -> None:
        self.failures[name] = log_failure(
            f"the {name} index", exc, self.failures.get(name), "retried at the next catch-up"
        )
        self.public[name] = describe(exc)

    def _caught_up(self, name: str) -> None:
        self.public.pop(name, None)
        if self.failures.pop(name, None) is not None:
            log.warning("the %s index caught up with SQL again", name)


def log_failure(what: str, exc: Exception, last: str | None, retried: str) -> str:
    """Log that `what` failed to catch up with SQL, once while the failure lasts (`last`: the text
    this returned for the previous one, None after a success): the traceback when a failure starts
    or changes, one line for a full disk (whose message may name another file each time), nothing
    for the database unavailable or full, which search.storage.outage logs. Returns the failure's
    text to keep (search.storage.outage.error_text)."""
    error = error_text(exc)
    failure = classify(exc)
    full = None if failure is None or failure.kind != "disk_full" else failure.describe()
    if last == error or (full is not None and last is not None and last.startswith(full)) or logged_here(exc):
        log.debug("%s failed again: %s", what, error)
    elif full is not None:
        log.error("%s failed to catch up with SQL: %s; %s", what, error, retried)
    else:
        log.exception("%s failed to catch up with SQL; %s", what, retried)
    return error
