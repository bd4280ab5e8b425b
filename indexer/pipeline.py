"""The indexing pipeline: records -> upserted rows -> chunk vectors -> the FAISS index, store first."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from itertools import islice

import numpy as np

from indexer.chunking import Chunker, embedding_input
from indexer.sources import Record, Rejected
from search.catalog import IndexCatalog
from search.components import make_encoder, open_store
from search.encoder import Encoder
from search.settings import Settings
from search.store import DocumentIn, Store

log = logging.getLogger(__name__)


@dataclass
class IndexSummary:
    """What one indexing run did."""

    added: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    rejected: int = 0
    chunks: int = 0
    seconds: float = 0.0
    rejections: list[str] = field(default_factory=list)

    @property
    def documents(self) -> int:
        """Documents read and accepted."""
        return self.added + self.updated + self.unchanged

    def as_dict(self) -> dict[str, float | int]:
        """The summary as JSON-ready numbers (rejection messages go to stderr, not here)."""
        data = {k: v for k, v in asdict(self).items() if k != "rejections"}
        data["documents"] = self.documents
        data["docs_per_s"] = round(self.documents / self.seconds, 2) if self.seconds else 0.0
        return data


@dataclass(frozen=True)
class _Prepared:
    """A batch whose rows are committed: the new chunk ids, their embedding inputs, replaced chunk ids."""

    ids: np.ndarray
    inputs: list[str]
    removed: np.ndarray


class Indexer:
    """Keeps the store and the index in step. Rows are committed before vectors are added, so a
    crash can leave a chunk without a vector (re-embedded on the next run) but never a vector
    whose row is unknown to the searcher."""

    def __init__(
        self,
        encoder: Encoder,
        store: Store,
        catalog: IndexCatalog,
        chunker: Chunker,
        factory: str = "Flat",
        batch_docs: int = 512,
        checkpoint_seconds: float = 60.0,
    ) -> None:
        self.encoder = encoder
        self.store = store
        self.catalog = catalog
        self.chunker = chunker
        self.batch_docs = batch_docs
        self.index, self.generation = catalog.open_or_create(encoder, factory)
        # An index that must be trained (IVF, PQ, `auto`) waits for every vector of the run.
        self._deferred: list[tuple[np.ndarray, np.ndarray]] = []
        self.checkpoint_seconds = checkpoint_seconds
        self._saved_at = time.monotonic()

    def publish(self) -> None:
        """Save the index atomically and record it; readers opening it afterwards see every vector so far."""
        self.generation = self.catalog.publish(self.index, self.generation)
        self._saved_at = time.monotonic()

    def remove_vectors(self, ids: np.ndarray) -> None:
        """Remove vectors whose rows are gone. Index types that cannot remove (HNSW) keep them until a
        rebuild; the searcher skips them anyway, since their rows no longer exist."""
        try:
            self.index.remove(ids)
        except NotImplementedError:
            log.warning("index %s keeps %d stale vectors until the next rebuild", self.index.resolved_factory, len(ids))

    def run(
        self,
        records: Iterable[Record],
        on_reject: Callable[[Rejected], None] | None = None,
        on_progress: Callable[[IndexSummary], None] | None = None,
    ) -> IndexSummary:
        """Index every record; rejected ones are counted and passed to `on_reject`; `on_progress` gets
        the running summary (its `seconds` so far) after every batch.

        While the model embeds one batch, a background thread reads, chunks and commits the rows of
        the next, so the model is not kept waiting for SQL and tokenisation."""
        summary = IndexSummary()
        started = time.perf_counter()
        self.reconcile()
        batches = _batched(records, self.batch_docs)
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="prepare") as pool:
            pending = pool.submit(self._prepare, batches, summary, on_reject)
            while (prepared := pending.result()) is not None:
                pending = pool.submit(self._prepare, batches, summary, on_reject)
                self._embed(prepared, summary)
                if on_progress:
                    summary.seconds = time.perf_counter() - started
                    on_progress(summary)
                # A checkpoint now and then bounds what a crash costs to re-embed.
                if time.monotonic() - self._saved_at > self.checkpoint_seconds and not self._deferred:
                    self.publish()
        self._flush_deferred()
        self.publish()
        summary.seconds = time.perf_counter() - started
        return summary

    def _prepare(
        self, batches: Iterator[list[Record]], summary: IndexSummary, on_reject: Callable[[Rejected], None] | None
    ) -> _Prepared | None:
        """Read the next batch, commit its rows and return what must be embedded; None at the end."""
        for batch in batches:
            docs: list[DocumentIn] = []
            for record in batch:
                if isinstance(record, DocumentIn):
                    docs.append(record)
                    continue
                summary.rejected += 1
                summary.rejections.append(str(record))
                if on_reject:
                    on_reject(record)
            prepared = self._write_rows(docs, summary)
            if prepared is not None:
                return prepared
        return None

    def _write_rows(self, docs: list[DocumentIn], summary: IndexSummary) -> _Prepared | None:
        stored = self.store.content_hashes([d.external_id for d in docs]) if docs else {}
        changed = [d for d in docs if stored.get(d.external_id) != d.content_hash]
        summary.unchanged += len(docs) - len(changed)
        # Metadata is not embedded: an unchanged text with new metadata only updates the row.
        same = {d.external_id: d.metadata for d in docs if stored.get(d.external_id) == d.content_hash}
        if same:
            self.store.update_metadata(same)
        if not changed:
            return None
        chunk_lists = self.chunker.split(changed)
        result = self.store.write_documents(list(zip(changed, chunk_lists, strict=True)))
        summary.added += len(result.added)
        summary.updated += len(result.updated)
        return _Prepared(
            ids=np.asarray(result.new_chunk_ids, dtype=np.int64),
            inputs=[embedding_input(d.title, c.text) for d, cs in zip(changed, chunk_lists, strict=True) for c in cs],
            removed=np.asarray(result.removed_chunk_ids, dtype=np.int64),
        )

    def _embed(self, prepared: _Prepared, summary: IndexSummary) -> None:
        vectors = self.encoder.encode(prepared.inputs)
        summary.chunks += len(prepared.ids)
        if len(prepared.removed):
            self.remove_vectors(prepared.removed)
        self._add(prepared.ids, vectors)

    def mismatches(self) -> tuple[np.ndarray, np.ndarray]:
        """(vector ids without a chunk row, chunk ids without a vector)."""
        stored = np.asarray(self.store.all_chunk_ids(), dtype=np.int64)
        held = self.index.ids()
        return np.setdiff1d(held, stored), np.setdiff1d(stored, held)

    def reconcile(self) -> tuple[int, int]:
        """Make the index hold exactly the store's chunks: drop orphan vectors, embed missing ones.

        After a crash between a commit and the next index save this re-embeds only what was lost.
        Returns (orphans removed, missing embedded)."""
        orphans, missing = self.mismatches()
        if len(orphans):
            self.remove_vectors(orphans)
        for start in range(0, len(missing), 4096):
            ids = missing[start : start + 4096]
            inputs = self.store.chunk_inputs(ids.tolist())
            vectors = self.encoder.encode([embedding_input(*inputs[int(i)]) for i in ids])
            self._add(ids, vectors)
        if len(orphans) or len(missing):
            log.info(
                "reconciled the index: %d orphan vectors removed, %d missing embedded",
                len(orphans),
                len(missing),
            )
        return len(orphans), len(missing)

    def _add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if self.index.ntotal == 0 and self.index.needs_training:
            self._deferred.append((ids, vectors))
            return
        self.index.add(ids, vectors)
        self.store.mark_indexed(ids.tolist())

    def _flush_deferred(self) -> None:
        if not self._deferred:
            return
        ids = np.concatenate([i for i, _ in self._deferred])
        vectors = np.concatenate([v for _, v in self._deferred])
        self._deferred.clear()
        self.index.add(ids, vectors)
        self.store.mark_indexed(ids.tolist())


def open_indexer(settings: Settings, encoder: Encoder | None = None, store: Store | None = None) -> Indexer:
    """An indexer wired as the settings describe (encoder, store, catalog, chunker, index type)."""
    encoder = encoder or make_encoder(settings)
    store = store or open_store(settings)
    chunker = Chunker(encoder, settings.chunk_size, settings.chunk_overlap, settings.chunking)
    catalog = IndexCatalog(store, settings.index_dir)
    return Indexer(
        encoder, store, catalog, chunker, settings.index_factory, checkpoint_seconds=settings.checkpoint_seconds
    )


def _batched(records: Iterable[Record], n: int) -> Iterator[list[Record]]:
    it = iter(records)
    while batch := list(islice(it, n)):
        yield batch
