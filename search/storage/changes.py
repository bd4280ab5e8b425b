"""The change log: what happened to chunks and vectors, in commit order, so that every derived index
(the FAISS segments, the keyword index) catches up in O(changes) instead of re-checking the corpus.

Writers append in the same transaction as the change itself (`append`). Sequence numbers follow
commit order: on SQLite there is one writer at a time; on PostgreSQL every appender takes one
advisory lock, held until its transaction ends, so no entry with a smaller number can commit after
one with a larger number is visible. A reader that has applied everything up to `seq` therefore
needs only `read(s, after=seq)`.

Consumers must apply entries idempotently (an "add" of a chunk already held replaces it, a "del" of
one not held is a no-op): a crash between applying and recording `set_applied` repeats a few."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import cast

from sqlalchemy import CursorResult, Table, delete, func, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from search.storage.bulk import insert_rows
from search.storage.models import Change, DerivedState

# Any fixed 64-bit number: the key of the advisory lock that orders appends on PostgreSQL.
_PG_LOG_LOCK = 0x5E35_C4A6
# derived_state row holding the highest seq compaction has deleted; a reader behind it reloads.
FLOOR = "changes:floor"


class Op(StrEnum):
    """What a change log entry records."""

    ADD = "add"  # a chunk row was inserted: its text (and its document's title) can be read
    DEL = "del"  # a chunk row was deleted (its document deleted or replaced); chunk ids are never reused
    VEC = "vec"  # a chunk's vector was committed in `space`


@dataclass(frozen=True)
class Entry:
    """One change: its number, what happened, to which chunk, and (for "vec") in which space."""

    seq: int
    op: Op
    chunk_id: int
    space: str | None


def append(s: Session, op: Op, chunk_ids: Sequence[int], space: str | None = None) -> None:
    """Record `op` for each chunk in transaction `s`. Call it last in a transaction: on PostgreSQL it
    holds the log's lock until the commit."""
    if not len(chunk_ids):
        return
    if s.get_bind().dialect.name == "postgresql":
        s.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOG_LOCK})
    rows = [{"op": op.value, "chunk_id": int(c), "space": space} for c in chunk_ids]
    insert_rows(s, cast(Table, Change.__table__), rows)


def read(
    s: Session, after: int, limit: int = 50_000, ops: Collection[Op] | None = None, space: str | None = None
) -> list[Entry]:
    """Up to `limit` entries with seq > `after`, oldest first; only `ops` when given, and of "vec"
    entries only those of `space` when given."""
    stmt = select(Change.seq, Change.op, Change.chunk_id, Change.space).where(Change.seq > after)
    if ops is not None:
        stmt = stmt.where(Change.op.in_([o.value for o in ops]))
    if space is not None:
        stmt = stmt.where((Change.op != Op.VEC.value) | (Change.space == space))
    rows = s.execute(stmt.order_by(Change.seq).limit(limit))
    return [Entry(int(seq), Op(op), int(cid), sp) for seq, op, cid, sp in rows]


def head(s: Session) -> int:
    """The newest committed seq (0 when nothing was ever logged); every entry up to it is visible. After
    a compaction that emptied the log, the highest seq it deleted."""
    return max(int(s.scalar(select(func.max(Change.seq))) or 0), floor(s))


def count(
    s: Session, after: int, upto: int | None = None, space: str | None = None, ops: Collection[Op] = (Op.VEC, Op.DEL)
) -> int:
    """How many entries of `ops` lie in (after, upto]; of "vec" entries only those of `space` when given."""
    stmt = select(func.count()).select_from(Change).where(Change.seq > after, Change.op.in_([o.value for o in ops]))
    if upto is not None:
        stmt = stmt.where(Change.seq <= upto)
    if space is not None:
        stmt = stmt.where((Change.op != Op.VEC.value) | (Change.space == space))
    return int(s.scalar(stmt) or 0)


def applied(s: Session, name: str) -> int | None:
    """The seq derived index `name` has applied; None when it was never built."""
    return s.scalar(select(DerivedState.seq).where(DerivedState.name == name))


def set_applied(s: Session, name: str, seq: int) -> None:
    """Record that derived index `name` has applied every entry up to `seq`."""
    dialect = postgresql if s.get_bind().dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(DerivedState).values(name=name, seq=seq)
    s.execute(stmt.on_conflict_do_update(index_elements=["name"], set_={"seq": seq}))


def forget(s: Session, name: str) -> None:
    """Drop derived index `name`'s record (it is gone, or will be rebuilt from scratch)."""
    s.execute(delete(DerivedState).where(DerivedState.name == name))


def floor(s: Session) -> int:
    """The highest seq compaction has deleted (0: nothing yet). A reader that applied less must reload."""
    return applied(s, FLOOR) or 0


def compact(s: Session, upto: int) -> int:
    """Delete the entries up to `upto`, which every derived index has applied; returns how many."""
    if upto <= floor(s):
        return 0
    result = s.execute(delete(Change).where(Change.seq <= upto))
    gone = result.rowcount if isinstance(result, CursorResult) else 0
    set_applied(s, FLOOR, upto)
    return int(gone or 0)
