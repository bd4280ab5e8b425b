"""The keyword index's one writer: it applies the change log to the index (search/keyword/index.py)
from the seq it last applied, builds it from SQL when that cannot be done, and checks and repairs it.

An index without that state, behind the compacted log or ahead of it (another database) is rebuilt
from every chunk at a snapshot. Applying is idempotent (chunk ids are never reused: delete-by-id,
then add), so a process killed at any moment leaves an index that the next catch-up completes. One
process writes at a time (a FileLock beside the index; tantivy allows one writer per directory)."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
from sqlalchemy import select

from indexer.write.locks import FileLock
from search.keyword.index import NAME, KeywordIndex
from search.keyword.segments import Segments
from search.keyword.state import OPS, KeywordCheck, chunk_rows, chunk_rows_of, entries_after
from search.storage import changes
from search.storage.models import Chunk
from search.storage.store import Store

log = logging.getLogger(__name__)


class UnreadableIndexError(ValueError):
    """The keyword index on disk cannot be opened (corrupt files): `rebuild` and `repair` build it afresh."""


class KeywordWriter:
    """`catch_up`, `rebuild`, `check` and `repair` of one keyword index (one process at a time): a
    derived index (indexer/write/derived.py)."""

    name = NAME
    # Caught up after every embedded batch: keyword search (and `?wait=true`) sees only what it applied.
    eager = True

    def __init__(self, index: KeywordIndex) -> None:
        self.index = index

    def catch_up(self, store: Store, batch: int = 20_000) -> int:
        """Apply the change log since the applied seq (building from scratch when there is none);
        returns the number of entries applied. Waits while another process writes."""
        done = 0
        with self._writing() as segments:
            applied = segments.applied()
            with store.session() as s:
                head, floor = changes.head(s), changes.floor(s)
            if applied is None or applied < floor or applied > head:
                log.info(
                    "keyword index %s: building from SQL (applied %s, log %d..%d)",
                    self.index.path,
                    applied,
                    floor,
                    head,
                )
                applied = self._build(segments, store)
            while True:
                reached, n = self._apply_batch(segments, store, applied, batch)
                done += n
                if reached == applied:
                    break
                applied = reached
        self.index.reload_if_open()
        return done

    def rebuild(self, store: Store) -> int:
        """Index every chunk afresh (what `semsearch rebuild` runs); returns the chunks indexed.
        Readers see the old index until the new one commits, at once. Folders of other analyzer
        languages or formats (left by a settings change) are removed; so is an index that cannot be
        opened, which readers could not serve anyway."""
        with self._writing(afresh_if_unreadable=True) as segments:
            self._build(segments, store)
            count = segments.count()
        for old in self.index.root.iterdir():
            if old.name in (self.index.path.name, f"{self.index.path.name}.lock"):
                continue
            if old.is_dir():
                shutil.rmtree(old)
            else:
                old.unlink(missing_ok=True)
        self.index.reload_if_open()
        return count

    def _build(self, segments: Segments, store: Store) -> int:
        """Replace everything with the chunks as of now; returns the seq it stands at. The head is
        read before the chunks: what changes meanwhile comes after it and is applied again."""
        with store.session() as s:
            head = changes.head(s)
        segments.clear()
        after = 0
        while True:
            with store.session() as s:
                rows = chunk_rows(s, after=after, limit=20_000)
            if not rows:
                break
            segments.add(rows)
            after = rows[-1][0]
        self._commit(segments, store, head)
        return head

    def _apply_batch(self, segments: Segments, store: Store, applied: int, batch: int) -> tuple[int, int]:
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
        segments.delete([e.chunk_id for e in entries])
        segments.add(rows)  # chunks deleted since their "add" are gone: skipped
        # Committed even with no entries: the seq must move past "vec" entries, which compaction
        # could not drop while this index's record stayed behind them.
        self._commit(segments, store, reached)
        self._settle_deletes(segments, store, [e.chunk_id for e in entries if e.op is changes.Op.DEL], reached)
        return reached, len(entries)

    def _settle_deletes(self, segments: Segments, store: Store, deleted: list[int], seq: int) -> None:
        """Look the batch's deleted chunks up in what was committed (after its merges) and delete any
        still held again: a few lookups per batch. Under SIGKILLs at random moments a catch-up was
        once seen to keep chunks whose "del" it had recorded as applied, inside a merged segment."""
        if not deleted:
            return
        held = segments.held_of(deleted)
        if held:
            log.warning(
                "keyword index %s: %d deleted chunks still held; deleting them again", self.index.path, len(held)
            )
            segments.delete(held)
            self._commit(segments, store, seq)

    @staticmethod
    def _commit(segments: Segments, store: Store, seq: int) -> None:
        """Commit with `seq` recorded inside the index, then tell the log: never the other way round,
        or compaction could drop entries not yet applied."""
        segments.commit(seq)
        with store.session() as s:
            changes.set_applied(s, NAME, seq)

    @contextmanager
    def _writing(self, afresh_if_unreadable: bool = False) -> Iterator[Segments]:
        """The index opened (created when missing) under the cross-process writer lock, which
        waits while another process writes (the kernel drops it when that one dies, even by SIGKILL).
        One that cannot be opened is removed and created empty with `afresh_if_unreadable`."""
        with FileLock(self.index.root / f"{self.index.path.name}.lock"):
            try:
                segments = Segments(self.index)
            except ValueError as exc:  # tantivy's "Data corrupted" and the like
                if not afresh_if_unreadable:
                    raise
                log.warning("keyword index %s cannot be opened (%s); building it afresh", self.index.path, exc)
                shutil.rmtree(self.index.path)
                segments = Segments(self.index)
            yield segments

    def check(self, store: Store) -> KeywordCheck:
        """Compare the committed index with the chunk rows. Chunks named by log entries it has not
        applied yet are not counted as missing or orphaned: the next catch-up settles them."""
        try:
            applied, held = self.index.committed()
        except ValueError as exc:
            raise UnreadableIndexError(
                f"the keyword index {self.index.path} cannot be opened ({exc}); `semsearch check --repair` "
                "or `semsearch rebuild` builds it afresh from SQL"
            ) from exc
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
        """Rebuild when the check finds the index wrong (not merely behind) or cannot open it, then
        catch up."""
        try:
            wrong = not self.check(store).ok
        except UnreadableIndexError:
            wrong = True
        if wrong:
            self.rebuild(store)
        self.catch_up(store)
        return self.check(store)
