"""The long-lived indexer: embeds documents that `semsearch add` and the API queue (readers see their
vectors from SQL at once), and publishes at a bounded interval: catches every derived index up."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Protocol

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
        # Where `turn` is: started up yet, when it last published, how long until the next publish,
        # and (after a failure) when it may try again.
        self._started = False
        self._published_at, self._interval = time.monotonic(), publish_seconds
        self.resume_at, self._backoff = 0.0, 0.0

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
        """Work until `stop` is set, a turn at a time (see `turn`), waiting `idle_poll` (or out a
        backoff) when there is nothing to do."""
        while not stop.is_set():
            busy = self.turn()
            if self.resume_at > time.monotonic():  # the turn failed: wait out its backoff
                stop.wait(self._backoff)
                self.resume_at = 0.0
            elif not busy:
                stop.wait(min(idle_poll, self.publish_seconds))
        self.finish()

    def turn(self) -> bool:
        """One turn: start-up (until it goes through), else a queued job or one step of embedding, and
        a publish `publish_seconds` after a batch is embedded (or later when the last publish took
        long, see PUBLISH_COST_FACTOR). True when it did work. A failing turn is retried after a
        backoff that doubles per consecutive failure (see WorkerState); until then a turn does nothing,
        so a caller taking turns of several workers never waits for one."""
        if time.monotonic() < self.resume_at:
            return False
        try:
            if not self._started:
                self.start_up()
                self._started = True
                self.state.succeeded()
                self._published_at = time.monotonic()
                return True
            if self.jobs is not None and self.jobs():
                return True
            busy = self.step() > 0
            if busy:
                # Keyword search sees what was embedded at once, not at the next publish (a
                # `?wait=true` write answers then): the eager indexes commit the batch's chunks.
                self._catch_up(eager_only=True)
            if time.monotonic() - self._published_at >= self._interval:
                started = time.monotonic()
                self._catch_up()
                self._published_at = time.monotonic()
                self._interval = max(self.publish_seconds, PUBLISH_COST_FACTOR * (self._published_at - started))
            self.state.succeeded()
            return busy
        except IndexMismatchError as exc:
            # A rebuild with another model: follow it; when that cannot be done, back off.
            return self._follow_or_back_off(exc)
        except Exception as exc:
            # A database hiccup must not end a long-lived worker; the batch stays pending.
            self._back_off(exc)
            return False

    def finish(self) -> None:
        """Publish what was embedded, as the worker stops (a failure is recorded, not raised)."""
        try:
            self._catch_up()
        except Exception as exc:
            self._failed(exc)

    def _follow_or_back_off(self, mismatch: IndexMismatchError) -> bool:
        """Follow the serving generation's model; when that cannot be done, count a failure and back off."""
        try:
            if self._follow():
                return True
        except Exception as exc:
            self._back_off(exc)
            return False
        self._back_off(mismatch)
        return False

    def _back_off(self, exc: Exception) -> None:
        self._backoff = self._failed(exc)
        self.resume_at = time.monotonic() + self._backoff

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


class Runs(Protocol):
    """What works until stopped: a Worker, or the Fleet of every collection's (indexer/write/fleet.py)."""

    def run(self, stop: threading.Event, idle_poll: float = 0.2) -> None: ...


class BackgroundWorker:
    """A worker on a thread of its own, for `semsearch serve`."""

    def __init__(self, worker: Runs) -> None:
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
