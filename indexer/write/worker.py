"""The long-lived indexer: embeds documents that `semsearch add` and the API queue (readers see their
vectors from SQL at once), and publishes at a bounded interval: catches every derived index up."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

from indexer.ingest.chunking import Chunker
from indexer.write.derived import DerivedIndex, DerivedIndexes, beside_dense
from indexer.write.embedding import FairEmbedder, embed_missing
from indexer.write.maintenance import DenseIndex
from indexer.write.publisher import Publisher
from indexer.write.rebuild import run_queued
from search.components import encoder_factory, make_encoder, open_store
from search.dense.catalog import IndexCatalog, IndexMismatchError, follow
from search.embedding.encoder import Encoder
from search.settings import Settings
from search.storage.models import IndexGeneration
from search.storage.outage import describe, logged_here
from search.storage.store import Store
from search.work.state import WorkerState

log = logging.getLogger(__name__)

# A sync that merges rewrites the base file (O(corpus)) and every server reloads it: after one that
# took t seconds the next waits at least this many times t, so merging takes at most a fifth of the
# worker's time however large the index. A sync with nothing to merge costs one SQL count.
PUBLISH_COST_FACTOR = 4.0


class Worker:
    """Takes pending documents in batches, embeds them (vectors committed to SQL), and publishes what
    was embedded at most `publish_seconds` later. Several may run on PostgreSQL: each batch is claimed
    with row locks, so no document is taken twice, and publishing is serialised by the Publisher.
    `derived` are the indexes it keeps up besides the dense one (see indexer/write/derived.py)."""

    def __init__(
        self,
        encoder: Encoder,
        store: Store,
        catalog: IndexCatalog,
        chunker: Chunker,
        factory: str = "Flat",
        publish_seconds: float = 1.0,
        batch_docs: int = 256,
        encoder_for: Callable[[IndexGeneration], Encoder] | None = None,
        jobs: Callable[[], bool] | None = None,
        state: WorkerState | None = None,
        derived: Sequence[DerivedIndex] = (),
    ) -> None:
        self.encoder = encoder
        self.store = store
        self.chunker = chunker
        self.publisher = Publisher(catalog, encoder, factory)
        self.publish_seconds = publish_seconds
        self.batch_docs = batch_docs
        self.embedder = FairEmbedder(batch_docs)
        self.encoder_for = encoder_for
        # Runs one job another process queued for the holder of the indexing slot (a rebuild); True if one ran.
        self.jobs = jobs
        # Its error budget and backoff, read by /health, /stats and /metrics when served beside the API.
        self.state = state or WorkerState()
        # The dense index last: its merge compacts the log, past what the others have applied by then.
        self.derived = DerivedIndexes(store, [*derived, DenseIndex(self.publisher)])

    def _follow(self) -> bool:
        """After a rebuild with another model or pooling, embed with the serving generation's encoder
        (when `encoder_for` can make one); True when it embeds for the serving generation now."""
        generation = self.store.active_generation()
        try:
            encoder = None if generation is None else follow(generation, self.encoder, self.encoder_for)
        except IndexMismatchError:
            encoder = None
        if generation is None or encoder is None:
            log.error("the serving index was rebuilt with another model; restart the worker with its settings")
            return False
        if encoder is self.encoder:  # switched back meanwhile: nothing to follow
            return True
        log.info("following generation %d: model %s, %s pooling", generation.id, generation.model, generation.pooling)
        self.encoder = encoder
        self.chunker = Chunker(self.encoder, self.chunker.size, self.chunker.overlap, self.chunker.enabled)
        self.publisher.follow(self.encoder)  # the other derived indexes follow no model
        self.embedder = FairEmbedder(self.batch_docs)  # a half-embedded large document starts over
        # What this worker embedded with the old model after the switch needs the new model's vectors.
        embed_missing(self.publisher.rows, self.encoder)
        return True

    def _catch_up(self, eager_only: bool = False) -> None:
        """Catch the derived indexes up; the ones that failed are in the state /health reads (a failing
        index never stops the embedding: it is retried at the next catch-up, which mends it from SQL)."""
        self.state.indexes_stale(self.derived.catch_up(eager_only), self.derived.public)

    def start_up(self) -> None:
        """Check the serving generation (its space, a readable base file) in O(changes); pending
        documents a crashed process left are simply still pending."""
        self._catch_up()

    def step(self) -> int:
        """Embed one step's worth of pending documents (see FairEmbedder); 0 when the queue is empty."""
        return self.embedder.step(self.publisher.rows, self.encoder, self.chunker)

    def drain(self) -> int:
        """Embed everything pending, then publish; returns the number of documents embedded."""
        total = 0
        while n := self.step():
            total += n
        self._catch_up()
        return total

    def run(self, stop: threading.Event, idle_poll: float = 0.2) -> None:
        """Work until `stop` is set; publishes `publish_seconds` after a batch is embedded, or later
        when the last publish took long (see PUBLISH_COST_FACTOR). A failing step (or start-up) is
        retried after a backoff that doubles per consecutive failure (see WorkerState)."""
        while not stop.is_set() and not self._attempt(self.start_up, stop):
            pass
        published_at, interval = time.monotonic(), self.publish_seconds
        while not stop.is_set():
            try:
                if self.jobs is not None and self.jobs():
                    continue
                busy = self.step() > 0
                if busy:
                    # Keyword search sees what was embedded at once, not at the next publish (a
                    # `?wait=true` write answers then): the eager indexes commit the batch's chunks.
                    self._catch_up(eager_only=True)
                if time.monotonic() - published_at >= interval:
                    started = time.monotonic()
                    self._catch_up()
                    published_at = time.monotonic()
                    interval = max(self.publish_seconds, PUBLISH_COST_FACTOR * (published_at - started))
                self.state.succeeded()
            except IndexMismatchError as exc:
                busy = self._follow_or_wait(exc, stop)
            except Exception as exc:
                # A database hiccup must not end a long-lived worker; the batch stays pending.
                stop.wait(self._failed(exc))
                continue
            if not busy:
                stop.wait(min(idle_poll, self.publish_seconds))
        self._attempt(self._catch_up, stop)

    def _attempt(self, action: Callable[[], object], stop: threading.Event) -> bool:
        """Run `action`; on an error, record it and wait out the backoff. True when it went through."""
        try:
            action()
        except IndexMismatchError as exc:
            # A rebuild with another model can land before start-up: follow it; the caller tries again.
            self._follow_or_wait(exc, stop)
            return False
        except Exception as exc:
            stop.wait(self._failed(exc))
            return False
        self.state.succeeded()
        return True

    def _follow_or_wait(self, mismatch: IndexMismatchError, stop: threading.Event) -> bool:
        """Follow the serving generation's model; when that cannot be done, count a failure and back off."""
        try:
            if self._follow():
                return True
        except Exception as exc:
            stop.wait(self._failed(exc))
            return False
        stop.wait(self._failed(mismatch))
        return False

    def _failed(self, exc: Exception) -> float:
        delay = self.state.failed(exc)
        snapshot = self.state.snapshot()
        # The whole traceback once per streak (and when the budget runs out), then one line per failure;
        # none for the database unavailable or its disk full, which search.storage.outage logs once.
        if logged_here(exc):
            log.debug("worker step failed (%d in a row): %s", snapshot.consecutive_failures, describe(exc))
        elif snapshot.consecutive_failures in (1, self.state.failure_budget):
            log.exception("worker step failed (%d in a row); retrying in %.1f s", snapshot.consecutive_failures, delay)
        else:
            log.warning(
                "worker step failed (%d in a row): %s; retrying in %.1f s", snapshot.consecutive_failures, exc, delay
            )
        return delay


def open_worker(settings: Settings, encoder: Encoder | None = None, store: Store | None = None) -> Worker:
    """A worker wired as the settings describe; it follows the serving generation's model."""
    encoder = encoder or make_encoder(settings)
    store = store or open_store(settings)
    chunker = Chunker(encoder, settings.chunk_size, settings.chunk_overlap, settings.chunking)
    worker = Worker(
        encoder,
        store,
        IndexCatalog(store, settings.index_dir),
        chunker,
        settings.index_factory,
        settings.publish_seconds,
        encoder_for=encoder_factory(settings),
        jobs=lambda: run_queued(settings, store),
        state=WorkerState(settings.worker_failure_budget, max_delay=settings.worker_max_backoff_seconds),
        derived=beside_dense(settings),
    )
    return worker


class BackgroundWorker:
    """A worker on a thread of its own, for `semsearch serve`."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self._stop = threading.Event()
        self._thread = threading.Thread(target=worker.run, args=(self._stop,), name="indexing-worker", daemon=True)

    def start(self) -> None:
        """Start working in the background."""
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Finish the batch in hand, publish, and stop."""
        self._stop.set()
        self._thread.join(timeout)
