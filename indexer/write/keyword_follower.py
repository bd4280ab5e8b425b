"""A server's own keyword index, kept caught up with the change log in the server's process.

Readers of the dense index apply the change log themselves (search/dense/catalog.py's IndexWatcher);
the keyword index lives in files, so a server whose data directory no worker writes (a replica:
`semsearch serve --no-worker` beside a `semsearch worker` elsewhere) applies the log to its own
index on a thread, at the cadence of the dense watcher (SEMSEARCH_RELOAD_SECONDS): in O(changes),
from any state (nothing built, behind, or passed by log compaction, which a replica's index does not
hold back: it is then rebuilt from the chunk rows).

Only the process holding the directory's keeper lock applies it (see indexer/write/keyword_writer.py):
a worker in the same directory (`serve` with its worker, or a `semsearch worker` there) takes it
first, and of several server processes (`serve --workers 2`) one does; the others look again at each
tick, so one takes over when the keeper ends."""

from __future__ import annotations

import logging
import threading

from indexer.write.derived import log_failure
from indexer.write.keyword_writer import KeywordWriter
from search.keyword.index import KeywordIndex
from search.storage.outage import error_text
from search.storage.store import Store

log = logging.getLogger(__name__)


class KeywordFollower:
    """Applies the change log to one server's keyword index every `interval` seconds (or at once when
    woken) while this process keeps it; `error` holds the last catch-up's failure until one succeeds."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.error: str | None = None
        self._writer: KeywordWriter | None = None
        self._store: Store | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def keeping(self) -> bool:
        """True while this process applies the log to its data directory's keyword index."""
        try:
            return self._writer is not None and self._writer.claim()
        except OSError:
            return False

    def attach(self, store: Store, index: KeywordIndex) -> None:
        """Keep `index` (the one this process serves, so that a search sees each catch-up at once)
        caught up through `store` at each `tick`."""
        self._store, self._writer = store, KeywordWriter(index, record=False)
        index.catch_up_now = self.wake

    def start(self, store: Store, index: KeywordIndex) -> None:
        """`attach`, and tick on a thread from now until `stop`; the first look is at once."""
        self.attach(store, index)
        self._thread = threading.Thread(target=self._run, name="keyword-follower", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Catch up now rather than at the next tick (a request waits to see a write)."""
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop after the catch-up in hand."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            self.tick()
            self._wake.wait(self.interval)

    def tick(self) -> int:
        """One look: apply what the log holds beyond the index, when this process keeps it; returns
        the entries applied."""
        if self._writer is None or self._store is None:
            return 0
        try:
            if not self._writer.claim():
                return 0
            done = self._writer.catch_up(self._store)
        except Exception as exc:  # an unwritable folder too: reported, retried
            self._failed(exc)
            return 0
        if self.error is not None:
            log.warning("the keyword index %s caught up with SQL again", self._writer.index.path)
            self.error = None
        return done

    def _failed(self, exc: Exception) -> None:
        # Logged when a failure starts or changes, not once a tick.
        self.error = log_failure("the keyword index", exc, self.error, f"retried every {self.interval:.1f} s")


def catch_up_once(store: Store, index: KeywordIndex) -> str | None:
    """One catch-up for a one-shot reader (`semsearch search`) of a data directory that no process
    keeps now; returns why it failed (the index then serves what it holds)."""
    writer = KeywordWriter(index, record=False)
    try:
        if not writer.claim():
            return None
        writer.catch_up(store)
    except Exception as exc:
        return error_text(exc)
    finally:
        writer.release()
    return None
