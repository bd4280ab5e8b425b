"""The indexing pipeline: records -> upserted rows -> chunk vectors -> the FAISS index, store first."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from itertools import islice
from typing import Any

from indexer.ingest.chunking import Chunker
from indexer.ingest.files import Skipped
from indexer.ingest.sources import Record, Rejected
from indexer.write.derived import DerivedIndex, DerivedIndexes, beside_dense
from indexer.write.embedding import embed_pending, split_rows
from indexer.write.maintenance import DenseIndex
from indexer.write.publisher import Publisher
from search.components import make_encoder, open_store
from search.dense.catalog import IndexCatalog, IndexWatcher
from search.dense.segments import SegmentView
from search.embedding.encoder import Encoder
from search.embedding.space import chunk_input
from search.settings import Settings
from search.storage import documents
from search.storage.records import ChunkIn, DocumentIn
from search.storage.retry import retry_write
from search.storage.store import Store
from search.storage.vectors import Embedded

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
    # Files not read because no reader takes their type: said, but not errors.
    skipped: list[Skipped] = field(default_factory=list)

    @property
    def documents(self) -> int:
        """Documents read and accepted."""
        return self.added + self.updated + self.unchanged

    def as_dict(self) -> dict[str, Any]:
        """The summary as JSON-ready values: counts, and each file skipped by path and reason
        (rejection messages go to stderr, one a line, as they happen)."""
        data: dict[str, Any] = {k: v for k, v in asdict(self).items() if k not in ("rejections", "skipped")}
        data["documents"] = self.documents
        data["docs_per_s"] = round(self.documents / self.seconds, 2) if self.seconds else 0.0
        data["skipped"] = len(self.skipped)
        data["skipped_files"] = [{"path": str(s.path), "reason": s.reason} for s in self.skipped]
        return data


@dataclass(frozen=True)
class _Prepared:
    """A batch whose rows are committed: each document's vectors-to-be, and the texts to embed."""

    items: list[tuple[int, str, list[int], list[ChunkIn]]]
    inputs: list[str]


class Indexer:
    """Keeps the store and the index in step. Rows are committed first, then their vectors (in SQL,
    recorded in the change log that readers apply), and base segment files are merged from those: a
    crash at any point leaves work that the next run finishes without redoing anything committed.
    `derived` are the indexes it keeps up besides the dense one (see indexer/write/derived.py)."""

    def __init__(
        self,
        encoder: Encoder,
        store: Store,
        catalog: IndexCatalog,
        chunker: Chunker,
        factory: str = "Flat",
        batch_docs: int = 512,
        checkpoint_seconds: float = 60.0,
        derived: Sequence[DerivedIndex] = (),
    ) -> None:
        self.encoder = encoder
        self.store = store
        self.catalog = catalog
        self.chunker = chunker
        self.batch_docs = batch_docs
        self.publisher = Publisher(catalog, encoder, factory)
        # Now: settings that do not match the serving generation are refused before any work.
        with self.publisher.locked() as s:
            self.publisher.active(s)
        self.rows = self.publisher.rows
        # The dense index last: its merge compacts the log, past what the others have applied by then.
        self.derived = DerivedIndexes(store, [*derived, DenseIndex(self.publisher)])
        self.checkpoint_seconds = checkpoint_seconds
        self._saved_at = time.monotonic()

    @property
    def index(self) -> SegmentView:
        """What a reader opening the index now would serve (the base file plus the change log)."""
        return IndexWatcher(self.catalog, self.encoder, self.publisher.factory).load().index

    def publish(self) -> None:
        """Catch the derived indexes up: the keyword index applies the change log, and the dense one
        merges it into a new base file when enough changed (readers see every committed vector without
        it; a merge keeps their start-up catch-up short). Failures are kept in `derived.failures`."""
        self.derived.catch_up()
        self._saved_at = time.monotonic()

    def run(
        self,
        records: Iterable[Record],
        on_reject: Callable[[Rejected | Skipped], None] | None = None,
        on_progress: Callable[[IndexSummary], None] | None = None,
        delete_missing: bool = False,
    ) -> IndexSummary:
        """Index every record; rejected ones and skipped files are counted and passed to `on_reject`;
        `on_progress` gets the running summary (its `seconds` so far) after every batch. With `delete_missing`, stored
        documents the records do not contain are deleted at the end (the records are the whole corpus),
        unless a record was rejected: its document may be among them and must not be lost.

        While the model embeds one batch, a background thread reads, chunks and commits the rows of
        the next, so the model is not kept waiting for SQL and tokenisation."""
        summary = IndexSummary()
        started = time.perf_counter()
        self.resume()
        batches = _batched(records, self.batch_docs)
        seen: set[str] | None = set() if delete_missing else None
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="prepare") as pool:
            pending = pool.submit(self._prepare, batches, summary, on_reject, seen)
            while (prepared := pending.result()) is not None:
                pending = pool.submit(self._prepare, batches, summary, on_reject, seen)
                self._embed(prepared, summary)
                if on_progress:
                    summary.seconds = time.perf_counter() - started
                    on_progress(summary)
                # Now and then: a long run's log is folded into a base file as it goes, not all at the end.
                if time.monotonic() - self._saved_at > self.checkpoint_seconds:
                    self.publish()
        if seen is not None:
            summary.deleted = self._delete_unseen(seen, summary.rejected)
        self.publish()
        summary.seconds = time.perf_counter() - started
        return summary

    def _delete_unseen(self, seen: set[str], rejected: int) -> int:
        """Delete the stored documents whose ids are not in `seen`; none when records were rejected."""
        if rejected:
            log.warning("not deleting documents missing from the input: %d records were rejected", rejected)
            return 0
        gone = [external_id for external_id in self.store.external_ids() if external_id not in seen]
        return len(self.store.delete_documents(gone)[0])

    def _prepare(
        self,
        batches: Iterator[list[Record]],
        summary: IndexSummary,
        on_reject: Callable[[Rejected | Skipped], None] | None,
        seen: set[str] | None,
    ) -> _Prepared | None:
        """Read the next batch, commit its rows and return what must be embedded; None at the end.
        Accepted ids go into `seen` (when given)."""
        for batch in batches:
            docs: list[DocumentIn] = []
            for record in batch:
                if isinstance(record, DocumentIn):
                    docs.append(record)
                    if seen is not None:
                        seen.add(record.external_id)
                    continue
                if isinstance(record, Skipped):
                    summary.skipped.append(record)
                else:
                    summary.rejected += 1
                    summary.rejections.append(str(record))
                if on_reject:
                    on_reject(record)
            prepared = self._write_rows(docs, summary)
            if prepared is not None:
                return prepared
        return None

    def _write_rows(self, docs: list[DocumentIn], summary: IndexSummary) -> _Prepared | None:
        if not docs:
            return None
        # One transaction on the locked rows, chunking included: a PUT of the same id racing this run
        # waits, or is waited for, and one write's metadata never lands on the other's text.
        upserted = retry_write(self._upsert, docs)
        summary.unchanged += len(upserted.unchanged)
        summary.added += len(upserted.result.added)
        summary.updated += len(upserted.result.updated)
        if not upserted.written:
            return None
        pairs = list(zip(upserted.written, upserted.result.written, strict=True))
        return _Prepared(
            items=[(doc_id, d.content_hash, ids, cs) for (d, cs), (doc_id, ids) in pairs],
            inputs=[chunk_input(d.title, c.text) for d, cs in upserted.written for c in cs],
        )

    def _upsert(self, docs: list[DocumentIn]) -> documents.Upserted:
        with self.store.session() as s:
            return documents.upsert(s, docs, self.chunker.split)

    def _embed(self, prepared: _Prepared, summary: IndexSummary) -> None:
        vectors = self.encoder.encode(prepared.inputs)
        blocks = split_rows(vectors, [len(ids) for _, _, ids, _ in prepared.items])
        items = [
            Embedded(doc_id, content_hash, ids, chunks, v)
            for (doc_id, content_hash, ids, chunks), v in zip(prepared.items, blocks, strict=True)
        ]
        with self.store.session() as s:
            self.rows.commit_embedded(s, items)
        summary.chunks += len(vectors)

    def resume(self) -> None:
        """Finish what an interrupted run left, in O(what it left): embed the pending documents."""
        while embed_pending(self.rows, self.encoder, self.chunker, self.batch_docs)[0]:
            pass


def open_indexer(settings: Settings, encoder: Encoder | None = None, store: Store | None = None) -> Indexer:
    """An indexer wired as the settings describe (encoder, store, catalog, chunker, index type)."""
    encoder = encoder or make_encoder(settings)
    store = store or open_store(settings)
    chunker = Chunker(encoder, settings.chunk_size, settings.chunk_overlap, settings.chunking)
    catalog = IndexCatalog(store, settings.index_dir)
    return Indexer(
        encoder,
        store,
        catalog,
        chunker,
        settings.index_factory,
        checkpoint_seconds=settings.checkpoint_seconds,
        derived=beside_dense(settings),
    )


def _batched(records: Iterable[Record], n: int) -> Iterator[list[Record]]:
    it = iter(records)
    while batch := list(islice(it, n)):
        yield batch
