"""The keyword index's one writer: it applies the change log to the index (search/keyword/index.py)
from the seq it last applied, builds it from SQL when that cannot be done, and checks and repairs it.

An index without that state, behind the compacted log or ahead of it (another database) is rebuilt
from every chunk at a snapshot. Applying is idempotent (chunk ids are never reused: delete-by-id,
then add), so a process killed at any moment leaves an index that the next catch-up completes. One
process writes at a time (a FileLock beside the index; tantivy allows one writer per directory).

Each data directory has its own keyword index. The worker's records what it applied in SQL
(derived_state), which holds log compaction back and which nothing else may overwrite; a server's
own (a replica's, kept by indexer/write/keyword_follower.py) records nothing, so the log may be
compacted past it: it then rebuilds from the chunk rows. The process that keeps a data directory's
index holds its keeper lock, so that a server beside a worker in one directory leaves it alone."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

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


def keeper_lock_path(index: KeywordIndex) -> Path:
    """The lock held by the process that keeps this keyword index caught up (see the module's doc)."""
    return index.root / f"{index.path.name}.keeper.lock"


def writer_lock_path(index: KeywordIndex) -> Path:
    """The lock held while the index is written (tantivy allows one writer per directory): holding it,
    another process sees the committed index stand still."""
    return index.root / f"{index.path.name}.lock"


class UnreadableIndexError(ValueError):
    """The keyword index on disk cannot be opened (corrupt files): `rebuild` and `repair` build it afresh."""


class KeywordWriter:
    """`catch_up`, `rebuild`, `check` and `repair` of one keyword index (one process at a time): a
    derived index (indexer/write/derived.py)."""

    name = NAME
    # Caught up after every embedded batch: keyword search (and `?wait=true`) sees only what it applied.
    eager = True

    def __init__(self, index: KeywordIndex, record: bool = True) -> None:
        self.index = index
        # False for a server's own index: its seq must not stand for the worker's in derived_state.
        self.record = record
        self._keeper = FileLock(keeper_lock_path(index))
        self._keeping = False

    def claim(self) -> bool:
        """Hold this data directory's keeper lock from now on (without waiting); True when this
        writer holds it. A follower applies the log only while it does; a worker takes it so that
        the servers of its directory leave the index to it. OSError when the lock file cannot be
        made (nor, then, the index)."""
        if not self._keeping:
            self._keeping = self._keeper.acquire(blocking=False)
        return self._keeping

    def release(self) -> None:
        """Let go of the keeper lock (a process that ends lets go of it anyway)."""
        self._keeper.release()
        self._keeping = False

    def catch_up(self, store: Store, batch: int = 20_000) -> int:
        """Apply the change log since the applied seq (building from scratch when there is none);
        returns the number of entries applied. Waits while another process writes."""
        if self.record:
            self.claim()
        done = 0
        with self._writing() as segments:
            applied = segments.applied()
            with store.session() as s:
                head, floor = changes.head(s), changes.floor(s)
            if applied is None or applied < floor or applied > head:
                applied = self._rebuild_behind(segments, store, applied, floor, head)
            while True:
                step = self._apply_batch(segments, store, applied, batch)
                if step is None:  # the log was compacted past `applied` meanwhile
                    with store.session() as s:
                        head, floor = changes.head(s), changes.floor(s)
                    applied = self._rebuild_behind(segments, store, applied, floor, head)
                    continue
                reached, n = step
                done += n
                if reached == applied:
                    break
                applied = reached
        self._record_applied(store, applied)
        self.index.reload_if_open()
        return done

    def _rebuild_behind(self, segments: Segments, store: Store, applied: int | None, floor: int, head: int) -> int:
        log.log(
            logging.WARNING if applied is not None and self.record is False else logging.INFO,
            "keyword index %s: building from SQL (applied %s, log %d..%d)",
            self.index.path,
            applied,
            floor,
            head,
        )
        return self._build(segments, store)

    def _record_applied(self, store: Store, applied: int) -> None:
        """Say in SQL what the index holds when another process applied it (a server sharing the
        directory): a catch-up with nothing left to apply commits nothing, so records nothing."""
        if not self.record:
            return
        with store.session() as s:
            if changes.applied(s, NAME) != applied:
                changes.set_applied(s, NAME, applied)

    def rebuild(self, store: Store) -> int:
        """Index every chunk afresh (what `semsearch rebuild` runs); returns the chunks indexed.
        Readers see the old index until the new one commits, at once. Folders of other analyzer
        languages or formats (left by a settings change) are removed; so is an index that cannot be
        opened, which readers could not serve anyway."""
        with self._writing(afresh_if_unreadable=True) as segments:
            self._build(segments, store)
            count = segments.count()
        for old in self.index.root.iterdir():
            if old.name in (self.index.path.name, writer_lock_path(self.index).name, keeper_lock_path(self.index).name):
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

    def _apply_batch(self, segments: Segments, store: Store, applied: int, batch: int) -> tuple[int, int] | None:
        """Apply up to `batch` log entries after `applied`; returns (the seq now applied, entries),
        or None when compaction deleted entries after `applied` (only an index that records nothing
        in derived_state can be passed by it): then it must be built from SQL."""
        with store.session() as s:
            head = changes.head(s)
            if head <= applied:
                return applied, 0
            page = changes.read(s, after=applied, limit=batch, ops=OPS)
            # Read after the page: a compaction that committed before the page was read shows here
            # (one that commits after it deleted nothing the page lacks).
            if changes.floor(s) > applied:
                return None
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

    def _commit(self, segments: Segments, store: Store, seq: int) -> None:
        """Commit with `seq` recorded inside the index, then tell the log: never the other way round,
        or compaction could drop entries not yet applied."""
        segments.commit(seq)
        if self.record:
            with store.session() as s:
                changes.set_applied(s, NAME, seq)

    @contextmanager
    def _writing(self, afresh_if_unreadable: bool = False) -> Iterator[Segments]:
        """The index opened (created when missing) under the cross-process writer lock, which
        waits while another process writes (the kernel drops it when that one dies, even by SIGKILL).
        One that cannot be opened is removed and created empty with `afresh_if_unreadable`."""
        with FileLock(writer_lock_path(self.index)):
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
            wrong = not self.check(store).right
        except UnreadableIndexError:
            wrong = True
        if wrong:
            self.rebuild(store)
        self.catch_up(store)
        return self.check(store)
