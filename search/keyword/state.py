"""What the keyword index reads: its check report, the ids it holds, the log entries and the chunk
rows it applies (SQL functions take the session)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import tantivy
from sqlalchemy import select
from sqlalchemy.orm import Session

from search.storage import changes
from search.storage.models import Chunk, Document
from search.storage.rows import id_parts

# The state document's chunk id: chunk keys start at 1 on SQLite (AUTOINCREMENT) and PostgreSQL.
STATE_ID = 0
# The log entries the keyword index applies.
OPS = (changes.Op.ADD, changes.Op.DEL)


@dataclass(frozen=True)
class KeywordCheck:
    """What `semsearch check` reports of the keyword index."""

    chunks: int  # chunk rows in SQL
    indexed: int  # chunks the committed index holds
    applied: int | None  # the log seq it has applied (None: never built)
    head: int  # the newest log seq
    behind: int  # "add" and "del" entries after `applied`: what the next catch-up applies
    missing: int  # chunk rows it lacks, though it applied their "add"
    orphans: int  # chunks it holds, though it applied their "del"

    @property
    def right(self) -> bool:
        """Built, and right as of the seq it applied (deleted chunks it still holds never show:
        results are joined with the chunk rows): what a catch-up completes, without a rebuild."""
        return self.applied is not None and self.missing == 0 and self.orphans == 0

    @property
    def ok(self) -> bool:
        """Right, and caught up with the change log: one left behind (its catch-ups failing, as on a
        full disk) misses what was written since, which `check` must not call ok."""
        return self.right and self.behind == 0

    @property
    def lag(self) -> str | None:
        """How far behind the change log it is, in words (None: caught up)."""
        if not self.behind:
            return None
        return f"{self.behind} entries behind the change log (applied seq {self.applied}, head {self.head})"

    def as_dict(self) -> dict[str, int | bool | None]:
        """JSON-ready, with the verdict."""
        return {**asdict(self), "ok": self.ok}


def held_ids(searcher: tantivy.Searcher, schema: tantivy.Schema, block: int = 100_000) -> np.ndarray:
    """Every chunk id the index holds, read in id ranges so memory stays bounded."""
    top = searcher.search(tantivy.Query.all_query(), 1, count=False, order_by_field="chunk_id").hits
    highest = int(top[0][0]) if top else 0
    out: list[np.ndarray] = []
    for low in range(STATE_ID + 1, highest + 1, block):
        query = tantivy.Query.range_query(
            schema, "chunk_id", tantivy.FieldType.Unsigned, low, low + block, include_upper=False
        )
        hits = searcher.search(query, block, count=False).hits
        ids = searcher.fast_field_values("chunk_id", [address for _, address in hits])
        out.append(np.asarray([i for i in ids if i is not None], dtype=np.int64))
    return np.sort(np.concatenate(out)) if out else np.empty(0, dtype=np.int64)


def entries_after(s: Session, seq: int) -> Iterator[changes.Entry]:
    """Every "add" and "del" after `seq`, page by page."""
    while page := changes.read(s, after=seq, ops=OPS):
        yield from page
        seq = page[-1].seq


def chunk_rows(s: Session, after: int, limit: int) -> list[tuple[int, str, str]]:
    """(chunk id, title, chunk text) of up to `limit` chunks with ids above `after`, ascending."""
    stmt = (
        select(Chunk.id, Document.title, Chunk.text)
        .join(Document)
        .where(Chunk.id > after)
        .order_by(Chunk.id)
        .limit(limit)
    )
    return [(int(c), t, x) for c, t, x in s.execute(stmt)]


def chunk_rows_of(s: Session, chunk_ids: Sequence[int]) -> list[tuple[int, str, str]]:
    """(chunk id, title, chunk text) of those of `chunk_ids` that still exist."""
    out: list[tuple[int, str, str]] = []
    for part in id_parts(chunk_ids):
        stmt = select(Chunk.id, Document.title, Chunk.text).join(Document).where(Chunk.id.in_(part))
        out += [(int(c), t, x) for c, t, x in s.execute(stmt)]
    return out
