"""How the indexing worker is doing, for /health, /stats and /metrics.

Two sources: `WorkerState`, which a worker in this process updates as it runs (its error budget and
backoff), and `queue_state`, read from SQL, which covers a worker in any process (`semsearch serve
--no-worker` beside a `semsearch worker`): how many documents are not searchable yet and how long
the oldest of them has waited.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from search.storage.models import Document, DocumentStatus
from search.storage.outage import describe, error_text


@dataclass(frozen=True)
class WorkerSnapshot:
    """One consistent reading of a `WorkerState`."""

    consecutive_failures: int
    failures_total: int
    last_error: str | None
    seconds_since_last_error: float | None
    backoff_seconds: float
    failing: bool
    # Derived indexes (keyword, dense) whose last catch-up with SQL failed, with the error.
    stale_indexes: dict[str, str] = field(default_factory=dict)
    # The same errors in words safe to show anyone (search.storage.outage.describe): a driver's
    # message names the database's host, port and user, which only a keyed request may see.
    last_error_public: str | None = None
    stale_public: dict[str, str] = field(default_factory=dict)


class WorkerState:
    """A worker's error budget: after each failure it waits `base_delay` doubled per consecutive
    failure (at most `max_delay`), and past `failure_budget` consecutive failures it counts as
    failing, which /health reports as degraded. One success resets both. Beside them, the derived
    indexes that failed to catch up (stale until their next catch-up succeeds), which /health reports
    at once: the embedding goes on while they fail. Thread-safe: the worker thread writes, request
    threads read."""

    def __init__(self, failure_budget: int = 5, base_delay: float = 0.5, max_delay: float = 60.0) -> None:
        if failure_budget < 1 or base_delay <= 0 or max_delay <= 0:
            raise ValueError(f"bad error budget: {failure_budget}, delays {base_delay} to {max_delay}")
        self.failure_budget = failure_budget
        self.base_delay = min(base_delay, max_delay)
        self.max_delay = max_delay
        self._lock = threading.Lock()
        self._consecutive = 0
        self._total = 0
        self._last_error: str | None = None
        self._last_error_at: float | None = None
        self._backoff = 0.0
        self._stale: dict[str, str] = {}
        self._last_public: str | None = None
        self._stale_public: dict[str, str] = {}

    def indexes_stale(self, failures: Mapping[str, str], public: Mapping[str, str] | None = None) -> None:
        """The derived indexes whose last catch-up failed, with their errors (none: all caught up),
        and the same in words safe to show anyone (by default only that it failed)."""
        public = public or {}
        with self._lock:
            self._stale = dict(failures)
            self._stale_public = {name: public.get(name, "failed") for name in failures}

    def succeeded(self) -> None:
        """A step went through: the failure streak (and its backoff) ends."""
        with self._lock:
            self._consecutive = 0
            self._backoff = 0.0

    def failed(self, exc: BaseException) -> float:
        """Record a failure; returns how long to wait before the next try."""
        with self._lock:
            self._consecutive += 1
            self._total += 1
            self._last_error = error_text(exc)
            self._last_public = describe(exc)
            self._last_error_at = time.monotonic()
            self._backoff = min(self.max_delay, self.base_delay * 2 ** min(self._consecutive - 1, 30))
            return self._backoff

    @property
    def failing(self) -> bool:
        """True once the consecutive failures have used up the budget."""
        with self._lock:
            return self._consecutive >= self.failure_budget

    def snapshot(self) -> WorkerSnapshot:
        """The state now."""
        with self._lock:
            since = None if self._last_error_at is None else time.monotonic() - self._last_error_at
            return WorkerSnapshot(
                consecutive_failures=self._consecutive,
                failures_total=self._total,
                last_error=self._last_error,
                seconds_since_last_error=since,
                backoff_seconds=self._backoff,
                failing=self._consecutive >= self.failure_budget,
                stale_indexes=dict(self._stale),
                last_error_public=self._last_public,
                stale_public=dict(self._stale_public),
            )


@dataclass(frozen=True)
class QueueState:
    """Documents written but not searchable yet (pending or embedded), and the age of the oldest
    (seconds since it was last written or moved along; None when there is none)."""

    unindexed: int
    oldest_seconds: float | None


def queue_state(s: Session) -> QueueState:
    """Read in `s`: one aggregate over the indexed `status` column."""
    count, oldest = s.execute(
        select(func.count(), func.min(Document.updated_at)).where(Document.status == DocumentStatus.PENDING)
    ).one()
    return QueueState(int(count or 0), None if oldest is None else _age(oldest))


def _age(when: datetime | str) -> float:
    if isinstance(when, str):  # SQLite's MIN() of a timestamp may come back as its stored text
        when = datetime.fromisoformat(when)
    if when.tzinfo is None:  # SQLite keeps no zone; every timestamp is written in UTC
        when = when.replace(tzinfo=UTC)
    return max(0.0, (datetime.now(UTC) - when).total_seconds())
