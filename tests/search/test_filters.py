"""Metadata filters: validation with clear errors, and the same answers on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from search.filters import parse_filter
from search.storage.records import ChunkIn, DocumentIn
from search.storage.store import Store

META: dict[str, dict[str, Any]] = {
    "cat": {"kind": "animal", "year": 2001, "legs": 4, "wild": False},
    "eagle": {"kind": "animal", "year": 2015, "legs": 2, "wild": True},
    "moon": {"kind": "sky", "year": 1969.5, "tags": ["x", "y"]},
    "sun": {"kind": "sky", "year": "2001", "name": "ü ☀"},  # a string year: never a number
    "bare": {},
    "odd": {"kind": 7, "a.b": "dotted", "sp ace": 1},
}


@pytest.fixture
def store(database_url: str) -> Any:
    store = Store(database_url)
    docs = [(DocumentIn(ext, f"text of {ext}", metadata=m), [ChunkIn(0, "text", 0, 4)]) for ext, m in META.items()]
    store.write_documents(docs)
    yield store
    store.close()


def _matches(store: Store, raw: dict[str, Any]) -> list[str]:
    parsed = parse_filter(raw)
    assert parsed is not None
    hits = store.chunk_hits(store.matching_chunk_ids(parsed).tolist())
    return sorted(hit.document_id for hit in hits.values())


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"kind": "animal"}, ["cat", "eagle"]),
        ({"kind": "sky", "year": {"$lt": 2000}}, ["moon"]),
        ({"kind": {"$in": ["sky", "animal"]}}, ["cat", "eagle", "moon", "sun"]),
        ({"kind": {"$in": [7, "nothing"]}}, ["odd"]),
        ({"kind": {"$in": []}}, []),
        ({"year": {"$gte": 2001, "$lte": 2015}}, ["cat", "eagle"]),  # "2001" is a string: no match
        ({"year": {"$gt": 2001}}, ["eagle"]),
        ({"year": 2001}, ["cat"]),
        ({"year": 2001.0}, ["cat"]),
        ({"year": "2001"}, ["sun"]),
        ({"year": {"$gt": 1969.4, "$lt": 1969.6}}, ["moon"]),
        ({"wild": True}, ["eagle"]),
        ({"wild": False}, ["cat"]),
        ({"legs": 4, "wild": False}, ["cat"]),
        ({"legs": {"$gt": -1e308}}, ["cat", "eagle"]),
        ({"name": "ü ☀"}, ["sun"]),
        ({"a.b": "dotted", "sp ace": 1}, ["odd"]),  # a dot is part of the name, not a path
        ({"tags": "x"}, []),  # equality is on the value, not membership in a list
        ({"missing": "x"}, []),
        ({"kind": "x'; DROP TABLE documents; --"}, []),
        ({"x'; DROP TABLE documents; --": 1}, []),
    ],
)
def test_filters_match_the_same_documents_on_both_databases(
    store: Store, raw: dict[str, Any], expected: list[str]
) -> None:
    assert _matches(store, raw) == expected
    # Hostile values are only values: the tables are all still there, with every row.
    assert store.counts() == {"documents": len(META), "chunks": len(META)}


def test_a_long_in_list_of_mixed_types_runs_on_both_databases(store: Store) -> None:
    # About 1,000 values was "Expression tree is too large" on SQLite when each value was an OR term.
    values: list[Any] = [*range(1, 1000), "sky", 1969.5, False, "zzz"]
    assert _matches(store, {"kind": {"$in": values}}) == ["moon", "odd", "sun"]
    assert _matches(store, {"year": {"$in": values}}) == ["moon"]
    assert _matches(store, {"wild": {"$in": values}}) == ["cat"]  # false is not 0, true is not 1
    wide = {f"f{i}": {"$in": list(range(500))} for i in range(8)}  # the largest filter allowed: 4,000 values
    assert _matches(store, {**wide, "kind": "animal"}) == []


def test_a_row_with_a_nan_stored_matches_on_its_other_keys_and_fails_no_filter(tmp_path: Path) -> None:
    # Before writes were validated, a NaN was stored as the bare token NaN, which SQLite's JSON
    # functions refuse ("malformed JSON"): every filtered search failed until that document went.
    # Filters read the metadata index, written from the parsed values: the NaN is left out of it,
    # the row's other keys match like anyone's.
    store = Store(f"sqlite:///{tmp_path / 'old.db'}")
    docs = [(DocumentIn(ext, "text", metadata=m), [ChunkIn(0, "text", 0, 4)]) for ext, m in META.items()]
    poisoned = DocumentIn("poisoned", "text", metadata={"kind": "animal", "x": float("nan")})
    docs.append((poisoned, [ChunkIn(0, "t", 0, 1)]))
    store.write_documents(docs)
    assert _matches(store, {"kind": "animal"}) == ["cat", "eagle", "poisoned"]
    assert _matches(store, {"kind": {"$in": ["animal"]}, "year": {"$gt": 0}}) == ["cat", "eagle"]
    assert _matches(store, {"x": {"$gt": -1e308}}) == []
    assert _matches(store, {"kind": "animal", "x": {"$lt": 1e308}}) == []
    store.close()


def test_matching_chunk_ids_are_the_chunks_of_matching_documents(database_url: str) -> None:
    store = Store(database_url)
    result = store.write_documents(
        [
            (DocumentIn("a", "one two", metadata={"k": 1}), [ChunkIn(0, "one", 0, 3), ChunkIn(1, "two", 4, 7)]),
            (DocumentIn("b", "three", metadata={"k": 2}), [ChunkIn(0, "three", 0, 5)]),
        ]
    )
    parsed = parse_filter({"k": {"$lt": 2}})
    assert parsed is not None
    ids = store.matching_chunk_ids(parsed)
    assert ids.dtype.name == "int64" and ids.tolist() == result.new_chunk_ids[:2]
    store.close()


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"year": {"$gt": "x"}}, "filter field 'year': $gt needs a number, got 'x'"),
        ({"year": {"$lte": True}}, "filter field 'year': $lte needs a number, got True"),
        ({"year": {"$gt": float("nan")}}, "$gt needs a finite number"),
        ({"year": {"$gt": 2**70}}, "outside the 64-bit integer range"),
        ({"year": {"$between": [1, 2]}}, "filter field 'year': unknown operator '$between'; use one of $eq, $ne"),
        ({"year": {}}, "filter field 'year': an empty object"),
        ({"kind": {"$in": "animal"}}, "filter field 'kind': $in needs a list of values, got 'animal'"),
        ({"kind": {"$in": [["a"]]}}, "filter field 'kind': $in needs a string, number or boolean, got ['a']"),
        ({"kind": {"$in": list(range(2000))}}, "$in has 2000 values; at most 1024"),
        ({"kind": None}, "filter field 'kind': equality needs a string, number or boolean, got None"),
        ({"kind": [1]}, "equality needs a string, number or boolean, got [1]"),
        ({"kind": "a\x00b"}, "holds a NUL"),
        ({"kind": "\ud800"}, "unpaired surrogate"),
        ({"$nor": [{"a": 1}]}, "filter at $nor: unknown operator '$nor'; name a field or use one of $and, $or"),
        ({"$or": []}, "filter at $or: $or needs a non-empty list of filter objects, got []"),
        ({"$and": [{"a": 1}, 2]}, "filter at $and[1] must be an object of field: condition, got 2"),
        ({"$or": [{"a": {"$gt": "x"}}]}, "filter field 'a' at $or[0]: $gt needs a number, got 'x'"),
        ({"a": {"$exists": 1}}, "filter field 'a': $exists needs true or false, got 1"),
        ({"a": {"$nin": "x"}}, "filter field 'a': $nin needs a list of values, got 'x'"),
        ({"a": {"$ne": None}}, "filter field 'a': $ne needs a string, number or boolean, got None"),
        ({"": 1}, "field names must be non-empty strings"),
        ({'a"b': 1}, "no quotes, backslashes or control characters"),
        ({"a\\b": 1}, "no quotes, backslashes or control characters"),
        ({"x" * 200: 1}, "at most 128 characters"),
        ({f"f{i}": 1 for i in range(40)}, "filter has 40 fields; at most 32"),
        ({f"f{i}": {"$in": list(range(900))} for i in range(8)}, "filter holds 7200 values over all its fields"),
    ],
)
def test_bad_filters_are_refused_naming_the_problem(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_filter(raw)
    assert message in str(caught.value)


def test_no_filter_and_empty_filter_mean_everything() -> None:
    assert parse_filter(None) is None and parse_filter({}) is None
    with pytest.raises(ValueError, match="filter must be an object"):
        parse_filter(["kind"])  # type: ignore[arg-type]


# Plausible filters: the documents' own fields and values, so that many filters match something.
_KNOWN = st.sampled_from(["animal", "sky", "2001", "ü ☀", "dotted", 2001, 2015, 1969.5, 4, 2, 7, 1, True, False])
_NUMBERS = st.one_of(st.sampled_from([1969, 1970, 2001, 2015, 2, 4]), st.floats(-1e9, 1e9), st.integers(-9, 3000))
_RANGES = st.dictionaries(st.sampled_from(["$gt", "$gte", "$lt", "$lte"]), _NUMBERS, min_size=1, max_size=3)
_PLAUSIBLE = st.dictionaries(
    st.sampled_from(["kind", "year", "legs", "wild", "tags", "a.b", "sp ace", "name"]),
    st.one_of(_KNOWN, _RANGES, st.fixed_dictionaries({"$in": st.lists(_KNOWN, max_size=3)})),
    min_size=1,
    max_size=3,
)
# Hostile filters: any JSON at all, which must be refused with a ValueError or run without error.
_JSON = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8), _KNOWN),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)),
    max_leaves=6,
)
_HOSTILE = st.dictionaries(
    st.one_of(st.text(max_size=6), st.sampled_from(["$or", "", 'a"b', "kind", "x'; DROP TABLE documents; --"])),
    st.one_of(_JSON, st.dictionaries(st.sampled_from(["$in", "$gt", "$lte", "$eq"]), _JSON, min_size=1)),
    min_size=1,
    max_size=3,
)


@pytest.mark.postgres
def test_any_filter_is_refused_or_answers_alike_on_both_databases(tmp_path: Path, postgres_url: str) -> None:
    """Generated filters: a ValueError, or the same matches on SQLite and PostgreSQL (never a SQL error)."""
    stores = []
    for url in (f"sqlite:///{tmp_path / 'fuzz.db'}", postgres_url):
        store = Store(url)
        store.write_documents(
            [(DocumentIn(ext, "text", metadata=meta), [ChunkIn(0, "text", 0, 4)]) for ext, meta in META.items()]
        )
        stores.append(store)
    matched: list[int] = []

    @given(raw=st.one_of(_PLAUSIBLE, _HOSTILE))
    @settings(max_examples=200, deadline=None, derandomize=True, database=None)
    def check(raw: dict[str, Any]) -> None:
        try:
            parse_filter(raw)
        except ValueError:
            return
        on_sqlite = _matches(stores[0], raw)
        assert on_sqlite == _matches(stores[1], raw)
        matched.append(len(on_sqlite))

    check()
    # The comparison was not vacuous: many filters were valid, and they matched a range of documents.
    assert len(matched) > 50 and len(set(matched)) >= 3
    assert stores[1].counts() == {"documents": len(META), "chunks": len(META)}
    for store in stores:
        store.close()
