"""The keyword index: BM25 over chunks (title + chunk text) in tantivy, a derived cache of SQL.

SQL is the source of truth. The index applies the change log ("add" and "del" of chunks, see
search/storage/changes.py) from the seq it last applied, which it keeps inside itself (a state document
committed atomically with the terms), and afterwards records in `derived_state` under "keyword" so
that log compaction keeps the entries it still needs. An index without that state, behind the
compacted log or ahead of it (another database) is rebuilt from every chunk at a snapshot. Applying
is idempotent (chunk ids are never reused: delete-by-id, then add), so a process killed at any
moment leaves an index that the next catch-up completes. One process writes at a time (a `flock`
beside the index; tantivy allows one writer per directory); readers reload committed segments.

Deleted chunks leave results before the index hears of them: the searcher joins hits with the
chunk rows, and a hit without one is skipped."""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import tantivy
from sqlalchemy import select

from search.embedding.space import chunk_input
from search.keyword.analyzer import Analyzer
from search.keyword.state import (
    OPS,
    STATE_ID,
    KeywordCheck,
    chunk_rows,
    chunk_rows_of,
    entries_after,
    held_ids,
)
from search.storage import changes
from search.storage.models import Chunk
from search.storage.store import Store

log = logging.getLogger(__name__)

NAME = "keyword"  # its derived_state row
# Bumped when what is indexed changes (analyzer, schema): a new directory is then built from SQL.
_FORMAT = 1
# Allowed chunks up to this many are looked up one term each; more, as one term set, which walks the
# index's whole dictionary of chunk ids: a cost that grows with the corpus, paid back only by large sets.
_TERMS_AT_MOST = 4096


def _schema(tokenizer: str) -> tantivy.Schema:
    builder = tantivy.SchemaBuilder()
    builder.add_unsigned_field("chunk_id", indexed=True, fast=True)
    builder.add_unsigned_field("applied", stored=True)
    # Term frequencies without positions: BM25 needs no more, and the index stays smaller.
    builder.add_text_field("text", tokenizer_name=tokenizer, index_option="freq")
    return builder.build()


class KeywordIndex:
    """Writer side: `catch_up`, `rebuild`, `check`/`repair` (one process at a time). Reader side:
    `reload` (at most once per `reload_seconds` unless forced) and `search`."""

    def __init__(self, root: Path, language: str = "english", reload_seconds: float = 1.0) -> None:
        self.analyzer = Analyzer(language)
        self.root = root
        self.path = root / f"{language}-v{_FORMAT}"
        self.schema = _schema(self.analyzer.name)
        self.reload_seconds = reload_seconds
        self._reader: tantivy.Index | None = None
        self._checked = 0.0
        self._reload_lock = threading.Lock()

    # --- writer side -------------------------------------------------------------------------

    def catch_up(self, store: Store, batch: int = 20_000) -> int:
        """Apply the change log since the applied seq (building from scratch when there is none);
        returns the number of entries applied. Waits while another process writes."""
        done = 0
        with self._writing() as index:
            applied = self._applied(index)
            with store.session() as s:
                head, floor = changes.head(s), changes.floor(s)
            if applied is None or applied < floor or applied > head:
                log.info(
                    "keyword index %s: building from SQL (applied %s, log %d..%d)", self.path, applied, floor, head
                )
                applied = self._build(index, store)
            while True:
                reached, n = self._apply_batch(index, store, applied, batch)
                done += n
                if reached == applied:
                    break
                applied = reached
        self._reload_if_reading()
        return done

    def rebuild(self, store: Store) -> int:
        """Index every chunk afresh (what `semsearch rebuild` runs); returns the chunks indexed.
        Readers see the old index until the new one commits, at once. Folders of other analyzer
        languages or formats (left by a settings change) are removed."""
        with self._writing() as index:
            self._build(index, store)
            count = self._count(index)
        for old in self.root.iterdir():
            if old.name in (self.path.name, f"{self.path.name}.lock"):
                continue
            if old.is_dir():
                shutil.rmtree(old)
            else:
                old.unlink(missing_ok=True)
        self._reload_if_reading()
        return count

    def _reload_if_reading(self) -> None:
        """After a commit: this process's reader (if it has one) sees it at once."""
        if self._reader is not None:
            self.reload(force=True)

    def _build(self, index: tantivy.Index, store: Store) -> int:
        """Replace everything with the chunks as of now; returns the seq it stands at. The head is
        read before the chunks: what changes meanwhile comes after it and is applied again."""
        with store.session() as s:
            head = changes.head(s)
        writer = self._writer(index)
        writer.delete_all_documents()
        after = 0
        while True:
            with store.session() as s:
                rows = chunk_rows(s, after=after, limit=20_000)
            if not rows:
                break
            for chunk_id, title, text in rows:
                writer.add_document(self._doc(chunk_id, title, text))
            after = rows[-1][0]
        self._commit(index, writer, store, head)
        return head

    def _apply_batch(self, index: tantivy.Index, store: Store, applied: int, batch: int) -> tuple[int, int]:
        """Apply up to `batch` log entries after `applied`; returns (the seq now applied, entries)."""
        with store.session() as s:
            head = changes.head(s)
            if head <= applied:
                return applied, 0
            page = changes.read(s, after=applied, limit=batch, ops=OPS)
            # On SQLite each SELECT may see a newer snapshot than `head`: entries past it wait.
            entries = [e for e in page if e.seq <= head]
            reached = entries[-1].seq if len(page) == batch and len(entries) == len(page) else head
            added = [e.chunk_id for e in entries if e.op is changes.Op.ADD]
            rows = chunk_rows_of(s, added)
        writer = self._writer(index)
        self._delete(writer, [e.chunk_id for e in entries])
        for chunk_id, title, text in rows:  # chunks deleted since their "add" are gone: skipped
            writer.add_document(self._doc(chunk_id, title, text))
        # Committed even with no entries: the seq must move past "vec" entries, which compaction
        # could not drop while this index's record stayed behind them.
        self._commit(index, writer, store, reached)
        self._settle_deletes(index, store, [e.chunk_id for e in entries if e.op is changes.Op.DEL], reached)
        return reached, len(entries)

    def _settle_deletes(self, index: tantivy.Index, store: Store, deleted: list[int], seq: int) -> None:
        """Look the batch's deleted chunks up in what was committed (after its merges) and delete any
        still held again: a few lookups per batch. Under SIGKILLs at random moments a catch-up was
        once seen to keep chunks whose "del" it had recorded as applied, inside a merged segment."""
        if not deleted:
            return
        searcher = index.searcher()
        hits = searcher.search(self._among(deleted), len(deleted), count=False).hits
        held = [int(i) for i in searcher.fast_field_values("chunk_id", [a for _, a in hits]) if i is not None]
        if held:
            log.warning("keyword index %s: %d deleted chunks still held; deleting them again", self.path, len(held))
            writer = self._writer(index)
            self._delete(writer, held)
            self._commit(index, writer, store, seq)

    def _among(self, chunk_ids: list[int]) -> tantivy.Query:
        """A query matching the given chunk ids."""
        if len(chunk_ids) > _TERMS_AT_MOST:
            return tantivy.Query.term_set_query(self.schema, "chunk_id", chunk_ids)
        terms = [(tantivy.Occur.Should, tantivy.Query.term_query(self.schema, "chunk_id", i)) for i in chunk_ids]
        return tantivy.Query.boolean_query(terms)

    def _commit(self, index: tantivy.Index, writer: tantivy.IndexWriter, store: Store, seq: int) -> None:
        """Record `seq` inside the index, commit, let merges finish (so segments stay few), then tell
        the log: never the other way round, or compaction could drop entries not yet applied."""
        self._delete(writer, [STATE_ID])
        state = tantivy.Document()
        state.add_unsigned("chunk_id", STATE_ID)
        state.add_unsigned("applied", seq)
        writer.add_document(state)
        writer.commit()
        writer.wait_merging_threads()
        index.reload()
        with store.session() as s:
            changes.set_applied(s, NAME, seq)

    def _delete(self, writer: tantivy.IndexWriter, chunk_ids: Sequence[int]) -> None:
        # A query, not delete_documents_by_term: that one makes a signed term, which never
        # matches the unsigned field.
        if chunk_ids:
            writer.delete_documents_by_query(tantivy.Query.term_set_query(self.schema, "chunk_id", list(chunk_ids)))

    def _doc(self, chunk_id: int, title: str, text: str) -> tantivy.Document:
        doc = tantivy.Document()
        doc.add_unsigned("chunk_id", int(chunk_id))
        doc.add_text("text", self.analyzer.index_text(chunk_input(title, text)))
        return doc

    @staticmethod
    def _writer(index: tantivy.Index) -> tantivy.IndexWriter:
        # One indexing thread: the machines this runs on share their few cores with the encoder.
        return index.writer(heap_size=64_000_000, num_threads=1)

    @contextmanager
    def _writing(self) -> Iterator[tantivy.Index]:
        """The index opened (created when missing) under the cross-process writer lock. The kernel
        drops the lock when the process dies, even by SIGKILL."""
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / f"{self.path.name}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            index = self._open(create=True)
            # A process killed inside a commit leaves files the committed meta does not name; the
            # next commit may pick one of their names (a delete file is named by segment and
            # opstamp) and fail with "FileAlreadyExists". Removing them first makes that impossible.
            self._writer(index).garbage_collect_files()
            yield index
        finally:
            os.close(fd)

    def exists(self) -> bool:
        """True when a committed index is on disk."""
        return self.path.is_dir() and tantivy.Index.exists(str(self.path))

    def _open(self, create: bool = False) -> tantivy.Index:
        if self.exists():
            index = tantivy.Index.open(str(self.path))
        elif create:
            self.path.mkdir(parents=True, exist_ok=True)
            index = tantivy.Index(self.schema, path=str(self.path), reuse=False)
        else:
            raise FileNotFoundError(self.path)
        index.register_tokenizer(self.analyzer.name, self.analyzer.tantivy)
        index.config_reader(reload_policy="manual")
        return index

    def _applied(self, index: tantivy.Index) -> int | None:
        """The seq the index's committed state says it has applied (None: never built)."""
        searcher = index.searcher()
        hits = searcher.search(tantivy.Query.term_query(self.schema, "chunk_id", STATE_ID), 1, count=False).hits
        if not hits:
            return None
        value = searcher.doc(hits[0][1]).get_first("applied")
        return None if value is None else int(value)

    def _count(self, index: tantivy.Index) -> int:
        searcher = index.searcher()
        return int(searcher.num_docs) - (self._applied(index) is not None)

    def check(self, store: Store) -> KeywordCheck:
        """Compare the committed index with the chunk rows. Chunks named by log entries it has not
        applied yet are not counted as missing or orphaned: the next catch-up settles them."""
        index = self._open() if self.exists() else None
        applied = None if index is None else self._applied(index)
        held = np.empty(0, dtype=np.int64) if index is None else held_ids(index.searcher(), self.schema)
        with store.session() as s:
            head = changes.head(s)
            stored = np.fromiter(s.scalars(select(Chunk.id).order_by(Chunk.id)), dtype=np.int64)
            pending = [e.chunk_id for e in entries_after(s, applied or 0)] if applied is not None else []
        unsettled = np.asarray(pending, dtype=np.int64)
        return KeywordCheck(
            chunks=len(stored),
            indexed=len(held),
            applied=applied,
            head=head,
            behind=len(pending),
            missing=len(np.setdiff1d(np.setdiff1d(stored, held), unsettled)),
            orphans=len(np.setdiff1d(np.setdiff1d(held, stored), unsettled)),
        )

    def repair(self, store: Store) -> KeywordCheck:
        """Rebuild when the check finds the index wrong (not merely behind), then catch up."""
        if not self.check(store).ok:
            self.rebuild(store)
        self.catch_up(store)
        return self.check(store)

    # --- reader side -------------------------------------------------------------------------

    def reload(self, force: bool = False) -> bool:
        """Pick up what was committed since the last look (at most once per interval unless
        `force`); returns True when an index is open. A failed reload (a writer's clean-up racing
        it) keeps the segments already served."""
        # Until an index exists every call looks for it (a stat); then once per interval.
        if self._reader is not None and not force and time.monotonic() - self._checked < self.reload_seconds:
            return True
        with self._reload_lock:
            self._checked = time.monotonic()
            try:
                if self._reader is None:
                    self._reader = self._open()
                else:
                    self._reader.reload()
            except (FileNotFoundError, ValueError, OSError) as exc:
                if self._reader is not None:
                    log.warning("keyword index reload failed (serving the previous one): %s", exc)
        return self._reader is not None

    def applied(self) -> int | None:
        """The seq the served snapshot has applied (None: nothing built yet)."""
        self.reload()
        return None if self._reader is None else self._applied(self._reader)

    def search(self, terms: Sequence[str], limit: int, allowed: np.ndarray | None = None) -> list[tuple[int, float]]:
        """Up to `limit` (chunk id, BM25 score), best first, for the query `terms`; only among
        `allowed` chunk ids when given (the filter is inside the query, so nothing is crowded out)."""
        if not terms or limit <= 0 or (allowed is not None and not len(allowed)) or not self.reload():
            return []
        assert self._reader is not None
        searcher = self._reader.searcher()
        should = [(tantivy.Occur.Should, tantivy.Query.term_query(self.schema, "text", t)) for t in terms]
        query = tantivy.Query.boolean_query(should)
        if allowed is not None:
            # Scored 0: the filter selects, BM25 alone ranks.
            only = self._among([int(i) for i in allowed])
            query = tantivy.Query.boolean_query(
                [(tantivy.Occur.Must, query), (tantivy.Occur.Must, tantivy.Query.const_score_query(only, 0.0))]
            )
        hits = searcher.search(query, limit, count=False).hits
        ids = searcher.fast_field_values("chunk_id", [address for _, address in hits])
        return [(int(i), float(score)) for (score, _), i in zip(hits, ids, strict=True) if i is not None]
