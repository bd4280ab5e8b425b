"""Numeric filters are exact whichever plan answers them: random 64-bit integers (near 2**53, up to
2**63 - 1 and down to -2**63) and float64 values (fractions with 16 or 17 digits, huge, tiny,
negative, integral), under $eq, $ne, $in, $nin and the range operators, give the documents a plain Python
comparison gives, both through the metadata index (the narrow plan, answered by SQL) and through
the check on over-fetched results (the broad plan, on metadata as read back), on SQLite and on
PostgreSQL.

Seeded random cases rather than hypothesis: one corpus is written per database, then a few hundred
filters are asked of it, which keeps the test at a few seconds."""

from __future__ import annotations

import math
import random
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from dense_path import Dense, dense

from search.dense.index import VectorIndex
from search.dense.segments import SegmentView
from search.embedding.encoder import Encoder
from search.filters import parse_filter
from search.query.searcher import Searcher
from search.storage.records import ChunkIn, DocumentIn
from search.storage.store import Store

LOW, HIGH = -(2**63), 2**63 - 1
SPECIAL: list[int | float] = [
    2**53,
    2**53 + 1,
    HIGH,
    LOW,
    0.5110627055689232,
    2.0**53,
    2.0**60,
    2.0**63,
    -(2.0**63),
    1e300,
    -1e300,
    1.7976931348623157e308,
    5e-324,
    -5e-324,
    -0.0,
    0,
    1e-5,
    1e16,
]
OPS = ("$eq", "$ne", "$in", "$nin", "$gt", "$gte", "$lt", "$lte")
N_DOCS, N_FILTERS, N_SEARCHED = 150, 300, 30


def _random_float(rng: random.Random) -> float:
    while True:
        value: float = struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))[0]
        if math.isfinite(value):
            return value


def _number(rng: random.Random) -> int | float:
    pick = rng.randrange(9)
    if pick == 0:
        return 2**53 + rng.randint(-4, 4)
    if pick == 1:
        return rng.choice([HIGH - rng.randrange(4), LOW + rng.randrange(4)])
    if pick == 2:
        return rng.randint(LOW, HIGH)
    if pick == 3:
        return rng.randint(-1000, 1000)
    if pick == 4:
        return _random_float(rng)
    if pick == 5:
        return rng.choice(SPECIAL)
    if pick == 6:
        return float(rng.randint(LOW, HIGH))  # integral floats, most not equal to the int they came from
    if pick == 7:
        return rng.random() * rng.choice([1, -1])  # 16 or 17 significant digits
    return float(2**53 + rng.randint(-4, 4))


def _near(rng: random.Random, value: int | float) -> int | float:
    """A filter value at or next to a stored one: itself, its neighbour of either type, the other type."""
    pick = rng.randrange(6)
    if pick == 0:
        return value
    if pick == 1:
        return float(value)
    if pick == 2 and isinstance(value, float) and value.is_integer() and LOW <= value <= HIGH:
        return int(value)
    if pick == 3 and isinstance(value, int):
        return min(HIGH, max(LOW, value + rng.choice([-1, 1])))
    if pick == 4:
        after = math.nextafter(float(value), rng.choice([math.inf, -math.inf]))
        return after if math.isfinite(after) else value
    return _number(rng)


def _filter(rng: random.Random, stored: list[Any]) -> tuple[dict[str, Any], str, Any]:
    op = rng.choice(OPS)
    if op in ("$in", "$nin"):
        values = [_near(rng, rng.choice(stored)) for _ in range(rng.randint(1, 5))]
        return {"n": {op: values}}, op, values
    value = _near(rng, rng.choice(stored))
    return ({"n": value} if op == "$eq" else {"n": {op: value}}), op, value


def _passes(value: Any, op: str, wanted: Any) -> bool:
    """Python's own comparison: by exact value, ints against floats too; numbers only, so that a
    negation passes every document whose `n` is not a number or is missing."""
    if op in ("$ne", "$nin"):
        return not _passes(value, "$eq" if op == "$ne" else "$in", wanted)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if op == "$in":
        return any(value == w for w in wanted)
    compare = {
        "$eq": value == wanted,
        "$gt": value > wanted,
        "$gte": value >= wanted,
        "$lt": value < wanted,
        "$lte": value <= wanted,
    }
    return compare[op]


def _corpus(url: str, rng: random.Random, encoder: Encoder, keyword_dir: Path) -> tuple[Dense, list[Any]]:
    """N_DOCS documents, each holding one random number as `n`, and a few holding a value of another
    type (a boolean, a numeric string, nothing) which no numeric filter may match."""
    stored = [_number(rng) for _ in range(N_DOCS)]
    values: list[Any] = [*stored, True, False, "5", None]
    store = Store(url)
    docs = [
        (DocumentIn(f"d{i}", "text", metadata={} if v is None else {"n": v}), [ChunkIn(0, "text", 0, 4)])
        for i, v in enumerate(values)
    ]
    result = store.write_documents(docs)
    index = VectorIndex(encoder.dim)
    index.add(np.asarray(result.new_chunk_ids), np.random.default_rng(0).normal(size=(len(values), encoder.dim)))
    return dense(Searcher(encoder, SegmentView(index, 0), store), keyword_dir), values


def test_numeric_filters_are_exact_in_the_index_and_in_the_check(
    database_url: str, tiny_encoder: Encoder, tmp_path: Path
) -> None:
    """Many filters, asked of what each plan reads: the metadata index (`matching_chunk_ids`, the
    narrow plan's lookup) and the check on documents as read back (the broad plan's)."""
    rng = random.Random(21)
    searcher, values = _corpus(database_url, rng, tiny_encoder, tmp_path / "keyword")
    store = searcher.store
    owners = store.chunk_owners(store.all_chunk_ids(), metadata=True)
    matched = 0
    for _ in range(N_FILTERS):
        spec, op, wanted = _filter(rng, values[:N_DOCS])
        expected = {f"d{i}" for i, v in enumerate(values) if _passes(v, op, wanted)}
        matched += bool(expected)
        check = parse_filter(spec)
        assert check is not None
        indexed = {owners[int(c)].document_id for c in store.matching_chunk_ids(check)}
        assert indexed == expected, f"metadata index, filter {spec!r}: {sorted(indexed ^ expected)} differ"
        checked = {o.document_id for o in owners.values() if check.holds(o.metadata or {})}
        assert checked == expected, f"check on results, filter {spec!r}: {sorted(checked ^ expected)} differ"
    assert matched > N_FILTERS // 3, "most filters should match something, or the test proves little"
    store.close()


def test_each_plan_answers_numeric_filters_exactly(
    database_url: str, tiny_encoder: Encoder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fewer filters through the searcher itself, each plan forced in turn (the planner's share)."""
    rng = random.Random(63)
    searcher, values = _corpus(database_url, rng, tiny_encoder, tmp_path / "keyword")
    query = np.ones(tiny_encoder.dim, dtype=np.float32)
    checked: list[int] = []
    real_checked = Searcher._search_checked
    monkeypatch.setattr(Searcher, "_search_checked", lambda *a: checked.append(1) or real_checked(*a))
    for _ in range(N_SEARCHED):
        spec, op, wanted = _filter(rng, values[:N_DOCS])
        expected = {f"d{i}" for i, v in enumerate(values) if _passes(v, op, wanted)}
        for share in (None, 1.0):  # narrow (inside the search, from the index), then broad (checked on results)
            monkeypatch.setattr(Searcher, "broad_share", lambda self, check, share=share: share)
            before = len(checked)
            found = {h.id for h in searcher.search_vector(query, len(values), spec)}
            assert len(checked) - before == (share is not None), "the plan asked for is the plan taken"
            plan = "narrow" if share is None else "broad"
            assert found == expected, f"{plan} plan, filter {spec!r}: {sorted(found ^ expected)} differ"
    searcher.store.close()
