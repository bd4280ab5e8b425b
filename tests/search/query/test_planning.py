"""Filter planning: each filter's estimate is kept a while, and a stale one costs speed, never results."""

from __future__ import annotations

from pathlib import Path

import pytest

from search.filters import parse_filter
from search.query.planning import FilterPlanner
from search.storage import metadata_index
from search.storage.records import ChunkIn, DocumentIn
from search.storage.store import Store


def _write(store: Store, start: int, n: int, **meta: object) -> None:
    docs = [(DocumentIn(f"d{i}", f"text {i}", metadata=dict(meta)), [ChunkIn(0, "t", 0, 1)]) for i in range(start, n)]
    store.write_documents(docs)


def test_an_estimate_is_kept_for_its_filter_until_it_ages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    _write(store, 0, 10, flag=True)
    _write(store, 10, 40, flag=1)
    calls: list[object] = []
    real = store.matching_estimate
    monkeypatch.setattr(store, "matching_estimate", lambda f: calls.append(f) or real(f))
    planner = FilterPlanner(store, max_age=3600)
    flag_true, flag_one = parse_filter({"flag": True}), parse_filter({"flag": 1})
    assert flag_true is not None and flag_one is not None
    assert planner.share(flag_true) == pytest.approx(10 / 40) and planner.broad_share(flag_true) == 0.25
    assert planner.share(flag_one) == pytest.approx(30 / 40)  # true is not 1: estimated apart
    assert len(calls) == 2
    _write(store, 40, 400, flag=True)
    assert planner.share(flag_true) == pytest.approx(10 / 40) and len(calls) == 2  # kept
    planner.max_age = 0
    assert planner.share(flag_true) == pytest.approx(370 / 400) and len(calls) == 3  # aged: counted again
    store.close()


def test_at_most_size_filters_are_kept(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    _write(store, 0, 5, num=1)
    planner = FilterPlanner(store, size=3)
    for i in range(10):
        flt = parse_filter({"num": i})
        assert flt is not None
        planner.share(flt)
    assert len(planner._estimates) == 3
    store.close()


@pytest.mark.parametrize("value", ["red", 7])
def test_a_filter_reads_its_document_ids_from_the_metadata_index_alone(database_url: str, value: object) -> None:
    """A rare filter's cost is its matches' index entries: one table row read per match (the old
    value indexes lacked `document_id`) made a 0.1 % filter at 1M chunks several times slower cold."""
    store = Store(database_url)
    _write(store, 0, 300, colour="red", size=7)
    check = parse_filter({"colour": value} if isinstance(value, str) else {"size": value})
    assert check is not None
    stmt = metadata_index.documents_matching(check.conditions[0])
    sql = str(stmt.compile(store.engine, compile_kwargs={"literal_binds": True}))
    with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
        if store.postgres:
            c.exec_driver_sql("VACUUM ANALYZE metadata_values")  # the visibility map index-only scans need
            c.exec_driver_sql("SET enable_seqscan = off")
            c.exec_driver_sql("SET enable_bitmapscan = off")
            plan = " ".join(row[0] for row in c.exec_driver_sql(f"EXPLAIN {sql}"))
            assert "Index Only Scan" in plan, plan
        else:
            plan = " ".join(str(row[-1]) for row in c.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}"))
            assert "COVERING INDEX" in plan, plan
    assert len(store.matching_chunk_ids(check)) == 300
    store.close()
