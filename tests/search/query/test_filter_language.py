"""The whole filter language ($eq $ne $gt $gte $lt $lte $in $nin $exists, nested $and $or $not) gives
the documents a plain Python reading of the same filter gives, over random metadata (fields missing,
null, lists, objects, booleans, strings, integers past 2**53, floats): through the metadata index (the
narrow plan, answered by SQL) and through the check on over-fetched results (the broad plan), on
SQLite and on PostgreSQL. The reading below is written from the README's semantics, not from
search/filters.py: a negation is the complement of what it negates, so documents without the field
pass $ne, $nin, $not and `$exists: false`."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from dense_path import Dense, dense
from hypothesis import given, settings
from hypothesis import strategies as st

from search.dense.index import VectorIndex
from search.dense.segments import SegmentView
from search.embedding.encoder import Encoder
from search.filters import MAX_DEPTH, parse_filter
from search.query.searcher import Searcher
from search.storage import metadata_index
from search.storage.records import ChunkIn, DocumentIn
from search.storage.store import Store

FIELDS = ["a", "b", "c"]
POOL: list[Any] = ["x", "y", "", 0, 1, 2, -1, 2**53, 2**53 + 1, 1.0, 2.5, float(2**53), -0.5, True, False]
# Values no filter sees: as good as absent, for $exists too.
OPAQUE: list[Any] = [None, ["x"], [], {"k": 1}, {}]
N_DOCS = 80


def _metadata(rng: random.Random) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    for name in FIELDS:
        pick = rng.random()
        if pick < 0.7:
            meta[name] = rng.choice(POOL)
        elif pick < 0.85:
            meta[name] = rng.choice(OPAQUE)
    return meta


# The reference reading.
def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _equal(value: Any, wanted: Any) -> bool:
    if isinstance(value, bool) or isinstance(wanted, bool):
        return isinstance(value, bool) and isinstance(wanted, bool) and value == wanted
    if isinstance(wanted, str):
        return isinstance(value, str) and value == wanted
    return _number(value) and value == wanted


def _field_passes(meta: dict[str, Any], name: str, spec: Any) -> bool:
    if not isinstance(spec, dict):
        return _equal(meta.get(name), spec)
    return all(_operator_passes(meta, name, op, arg) for op, arg in spec.items())


def _operator_passes(meta: dict[str, Any], name: str, op: str, arg: Any) -> bool:
    value = meta.get(name)
    ranges = {"$gt": lambda: value > arg, "$gte": lambda: value >= arg, "$lt": lambda: value < arg}
    ranges["$lte"] = lambda: value <= arg
    if op in ranges:
        return _number(value) and ranges[op]()
    if op == "$exists":
        return (name in meta and (isinstance(value, str | bool) or _number(value))) == arg
    if op == "$not":
        return not _field_passes(meta, name, arg)
    if op in ("$eq", "$ne"):
        return _equal(value, arg) == (op == "$eq")
    return any(_equal(value, w) for w in arg) == (op == "$in")


def _passes(meta: dict[str, Any], spec: dict[str, Any]) -> bool:
    for key, arg in spec.items():
        if key == "$and":
            ok = all(_passes(meta, part) for part in arg)
        elif key == "$or":
            ok = any(_passes(meta, part) for part in arg)
        elif key == "$not":
            ok = not _passes(meta, arg)
        else:
            ok = _field_passes(meta, key, arg)
        if not ok:
            return False
    return True


# Filters of every operator and nesting.
_VALUE = st.sampled_from(POOL)
_NUMBER = st.sampled_from([v for v in POOL if _number(v)] + [1.5, 2**53 - 1, -(2**63), 2**63 - 1])
_VALUES = st.lists(_VALUE, max_size=3)
_OPERATORS = st.one_of(
    st.builds(lambda op, v: {op: v}, st.sampled_from(["$eq", "$ne"]), _VALUE),
    st.builds(lambda op, v: {op: v}, st.sampled_from(["$in", "$nin"]), _VALUES),
    st.dictionaries(st.sampled_from(["$gt", "$gte", "$lt", "$lte"]), _NUMBER, min_size=1, max_size=2),
    st.builds(lambda v: {"$exists": v}, st.booleans()),
)
_SPEC = st.one_of(_VALUE, _OPERATORS, st.builds(lambda inner: {"$not": inner}, st.one_of(_VALUE, _OPERATORS)))
_FIELDS = st.dictionaries(st.sampled_from(FIELDS), _SPEC, min_size=1, max_size=2)
_FILTERS = st.recursive(
    _FIELDS,
    lambda inner: st.one_of(
        st.builds(lambda parts: {"$and": parts}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda parts: {"$or": parts}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda part: {"$not": part}, inner),
        st.builds(lambda fields, part: {**fields, "$or": [part, fields]}, _FIELDS, inner),
    ),
    max_leaves=6,
)


def _corpus(url: str, encoder: Encoder, keyword_dir: Path) -> tuple[Dense, list[dict[str, Any]]]:
    rng = random.Random(5)
    metas = [_metadata(rng) for _ in range(N_DOCS)]
    store = Store(url)
    docs = [(DocumentIn(f"d{i}", "text", metadata=m), [ChunkIn(0, "text", 0, 4)]) for i, m in enumerate(metas)]
    result = store.write_documents(docs)
    index = VectorIndex(encoder.dim)
    index.add(np.asarray(result.new_chunk_ids), np.random.default_rng(0).normal(size=(N_DOCS, encoder.dim)))
    return dense(Searcher(encoder, SegmentView(index, 0), store), keyword_dir), metas


def test_every_operator_and_nesting_agrees_with_python_in_both_plans(
    database_url: str, tiny_encoder: Encoder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    searcher, metas = _corpus(database_url, tiny_encoder, tmp_path / "keyword")
    store = searcher.store
    owners = store.chunk_owners(store.all_chunk_ids(), metadata=True)
    query = np.ones(tiny_encoder.dim, dtype=np.float32)
    checked: list[int] = []
    real_checked = Searcher._search_checked
    monkeypatch.setattr(Searcher, "_search_checked", lambda *a: checked.append(1) or real_checked(*a))
    sizes: list[int] = []

    @given(raw=_FILTERS)
    @settings(max_examples=150, deadline=None, derandomize=True, database=None)
    def check(raw: dict[str, Any]) -> None:
        try:
            parsed = parse_filter(raw)
        except ValueError as exc:  # only a chain of $not deeper than the bound
            assert f"at most {MAX_DEPTH} levels" in str(exc)
            return
        assert parsed is not None
        expected = {f"d{i}" for i, meta in enumerate(metas) if _passes(meta, raw)}
        sizes.append(len(expected))
        indexed = {owners[int(c)].document_id for c in store.matching_chunk_ids(parsed)}
        assert indexed == expected, f"metadata index, filter {raw!r}: {sorted(indexed ^ expected)} differ"
        for share in (None, 1.0):  # narrow (the index inside the search), then broad (checked on results)
            monkeypatch.setattr(Searcher, "broad_share", lambda self, check, share=share: share)
            before = len(checked)
            found = {h.id for h in searcher.search_vector(query, N_DOCS, raw)}
            assert len(checked) - before == (share is not None), "the plan asked for is the plan taken"
            plan = "narrow" if share is None else "broad"
            assert found == expected, f"{plan} plan, filter {raw!r}: {sorted(found ^ expected)} differ"

    check()
    # Not vacuous: most filters were valid and they matched a spread of documents, none and all included.
    assert len(sizes) > 120 and len(set(sizes)) > 20 and 0 in sizes
    store.close()


def test_the_estimate_bounds_what_passes(database_url: str, tiny_encoder: Encoder, tmp_path: Path) -> None:
    """The planner's estimate is an upper bound for every shape (a negation is counted as the rest
    of the documents, an $or as the sum of its branches), or a narrow plan would be taken wrongly."""
    searcher, metas = _corpus(database_url, tiny_encoder, tmp_path / "keyword")
    filters: list[dict[str, Any]] = [
        {"a": {"$ne": "x"}},
        {"a": {"$nin": ["x", 1]}, "b": {"$exists": True}},
        {"$or": [{"a": "x"}, {"b": {"$gt": 0}}]},
        {"$not": {"$and": [{"a": "x"}, {"b": 1}]}},
        {"c": {"$exists": False}},
    ]
    for raw in filters:
        parsed = parse_filter(raw)
        assert parsed is not None
        bound, total = searcher.store.matching_estimate(parsed)
        passing = sum(_passes(meta, raw) for meta in metas)
        assert total == N_DOCS and passing <= bound <= total, raw
    searcher.store.close()


@pytest.mark.parametrize("raw", [{"k": {"$ne": 1}}, {"k": {"$exists": False}}, {"$not": {"k": {"$gt": 1}}}])
def test_a_negation_is_looked_up_once_not_once_per_chunk(database_url: str, raw: dict[str, Any]) -> None:
    """A negation's positive matches are gathered once (SQLite: a NOT IN list; PostgreSQL: an anti-join);
    SQLite's correlated NOT EXISTS scanned the key's index rows again for every chunk."""
    store = Store(database_url)
    docs = [(DocumentIn(f"d{i}", "t", metadata={"k": i % 3}), [ChunkIn(0, "t", 0, 1)]) for i in range(300)]
    store.write_documents(docs)
    parsed = parse_filter(raw)
    assert parsed is not None
    stmt = metadata_index.chunks_matching(parsed, store.postgres)
    sql = str(stmt.compile(store.engine, compile_kwargs={"literal_binds": True}))
    with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
        if store.postgres:
            c.exec_driver_sql("ANALYZE")
            plan = " ".join(row[0] for row in c.exec_driver_sql(f"EXPLAIN {sql}"))
            assert "Anti Join" in plan, plan
        else:
            plan = " ".join(str(row[-1]) for row in c.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}"))
            assert "CORRELATED" not in plan and "LIST SUBQUERY" in plan, plan
    expected = sum(1 for i in range(300) if _passes({"k": i % 3}, raw))
    assert len(store.matching_chunk_ids(parsed)) == expected
    store.close()
