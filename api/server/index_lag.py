"""How far the derived indexes this server searches (dense, keyword) have applied the change log, for
/health and /stats; and the keeper of the server's own keyword index, which `semsearch serve` hands
to the app (indexer/write/keyword_follower.py: the API layer does not import the write path).

A replica's keyword index lives in its own data directory and is caught up by its own process, so
only the replica can say how stale its keyword results are: one whose index has been behind for
longer than SEMSEARCH_DEGRADED_INDEX_LAG_SECONDS is degraded."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from typing import Protocol

from sqlalchemy.orm import Session

from api.server.schemas import IndexLag
from search.keyword.index import KeywordIndex
from search.query.hybrid import HybridSearcher
from search.settings import Settings
from search.storage import changes
from search.storage.store import Store

log = logging.getLogger(__name__)

# Heads remembered per index while it is behind; past this many every other one is forgotten (the
# oldest stays, so the time behind is never understated).
_MARKS = 64


class KeywordKeeper(Protocol):
    """Applies the change log to the keyword index this process serves, where no other process does."""

    @property
    def error(self) -> str | None:
        """Why its last catch-up failed (None: it succeeded, or none ran)."""
        ...

    def start(self, store: Store, index: KeywordIndex) -> None:
        """Keep `index` caught up from now on."""
        ...

    def attach(self, store: Store, index: KeywordIndex) -> None:
        """Catch `index` up through `store` at each `tick` (no thread of its own)."""
        ...

    def tick(self) -> int:
        """One catch-up (when this process keeps the index); the entries applied."""
        ...

    def stop(self) -> None:
        """Stop keeping it."""
        ...


class LagClock:
    """How long an index has been behind: the time since this process first saw a log head that the
    index has not reached yet. Thread-safe."""

    def __init__(self) -> None:
        self._marks: deque[tuple[int, float]] = deque()  # (a head seen, when first seen), heads ascending
        self._lock = threading.Lock()

    def observe(self, head: int, reached: int, now: float | None = None) -> float:
        """Record a look (the log's `head`, and the seq the index has `reached`); the seconds it has
        been behind as far as this process has seen."""
        now = time.monotonic() if now is None else now
        with self._lock:
            marks = self._marks
            if head > reached and (not marks or head > marks[-1][0]):
                marks.append((head, now))
            while marks and marks[0][0] <= reached:
                marks.popleft()
            if len(marks) > _MARKS:
                kept = list(marks)
                marks.clear()
                marks.extend([kept[0], *kept[1::2]])
            return now - marks[0][1] if marks else 0.0


class IndexLags:
    """Reads and judges the lag of every derived index this server searches."""

    def __init__(self, hybrid: HybridSearcher, keeper: KeywordKeeper | None = None) -> None:
        self.hybrid = hybrid
        self.keeper = keeper
        self._clocks = {"dense": LagClock(), "keyword": LagClock()}

    def read(self) -> dict[str, IndexLag]:
        """Each index's applied seq and lag as of now (one look at the log)."""
        keyword = self.hybrid.keyword.applied()
        view = self.hybrid.dense.serving.index
        with self.hybrid.store.session() as s:
            head, floor = changes.head(s), changes.floor(s)
            dense_lag = _pending(s, view.seq, floor, head, (changes.Op.VEC, changes.Op.DEL), view.space)
            keyword_lag = _pending(s, keyword, floor, head, (changes.Op.ADD, changes.Op.DEL))
        return {
            "dense": self._judged("dense", view.seq, head, dense_lag),
            "keyword": self._judged("keyword", keyword, head, keyword_lag),
        }

    def _judged(self, name: str, applied: int | None, head: int, lag: int) -> IndexLag:
        # An index with nothing left to apply has reached the head, whatever seq it last applied.
        behind = self._clocks[name].observe(head, head if lag == 0 else (applied or 0))
        return IndexLag(applied=applied, head=head, lag=lag, behind_seconds=round(behind, 3))

    def problems(self, lags: dict[str, IndexLag] | None, settings: Settings) -> list[str]:
        """What /health reports: an index behind for longer than the bound, a failing keeper."""
        bound = settings.degraded_index_lag_seconds
        out = [
            f"the {name} index of this server has been behind the change log for {lag.behind_seconds:.0f} s "
            f"(limit {bound:g} s, SEMSEARCH_DEGRADED_INDEX_LAG_SECONDS): applied seq {lag.applied}, head "
            f"{lag.head}, {lag.lag} entries to apply, so its {name} results here miss recent writes"
            for name, lag in (lags or {}).items()
            if lag.behind_seconds > bound
        ]
        error = None if self.keeper is None else self.keeper.error
        if error is not None:
            out.append(
                "this server's keyword index failed to catch up with SQL, so keyword and hybrid results here "
                f"miss recent writes until it does (retried every {settings.reload_seconds:g} s); last error: {error}"
            )
        return out


def _pending(
    s: Session, applied: int | None, floor: int, head: int, ops: tuple[changes.Op, ...], space: str | None = None
) -> int:
    """The entries after `applied` an index of `ops` still has to apply (all of head - applied when
    compaction passed it, or it was never built)."""
    if applied is None or applied < floor:
        return head - (applied or 0)
    return changes.count(s, applied, space=space, ops=ops)


async def observe_forever(lags: IndexLags, interval: float) -> None:
    """Look at the lags every `interval` seconds, so that the time an index has been behind is
    known however rarely /health is asked. A failed look (the database) is /health's to report."""
    while True:
        await asyncio.sleep(interval)
        try:
            await asyncio.to_thread(lags.read)
        except Exception as exc:
            log.debug("reading the index lags failed: %s", exc)
