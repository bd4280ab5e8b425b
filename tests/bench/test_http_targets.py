"""bench.http_load's table and issue 25's target: ratios against both in-process references."""

import sys
import time

from bench.http_load import ENCODER, SEARCH, Run
from bench.http_targets import table_rows, verdict
from bench.rebuild_beside import RebuildLoop


def _run(rate: float, p99_ms: float = 10.0, errors: int = 0) -> Run:
    """A run of 10 s at `rate` requests/s, its latencies 10 ms but for a tail at `p99_ms`."""
    n = int(rate * 10)
    tail = max(n // 50, 1)  # 2 % of the requests: the 99th percentile lies in it
    return Run(latencies=[0.010] * (n - tail) + [p99_ms / 1000] * tail, seconds=10.0, errors=errors)


def test_each_row_has_its_ratio_against_both_references_the_median_of_the_rounds():
    # Pooled, 8 clients would be 1400 / 600 = 2.33x the search; one fast round must not carry the figure.
    runs = {
        SEARCH: [_run(20), _run(20), _run(20)],
        ENCODER: [_run(40), _run(40), _run(40)],
        "8": [_run(30), _run(30), _run(80)],
    }
    rows = table_rows(runs, [8])
    assert [(r[0], r[1]) for r in rows] == [
        ("in-process search", 1),
        ("in-process Encoder alone", 1),
        ("HTTP POST /search", 8),
    ]
    search, encoder, http = rows
    assert search[-2:] == [1.0, 0.5]
    assert encoder[-2:] == [2.0, 1.0]
    assert http[-2:] == [1.5, 0.75]
    assert http[2] == 1400 / 30  # requests/s: all rounds pooled


def test_the_table_gives_p99_over_p50():
    runs = {SEARCH: [_run(10)], ENCODER: [_run(10)], "8": [_run(10, p99_ms=35)]}
    http = table_rows(runs, [8])[-1]
    assert http[3:6] == [10.0, 35.0, 3.5]


def test_the_target_is_met_at_8_clients_only_with_the_rate_the_tail_and_no_errors():
    met = {SEARCH: [_run(5)], ENCODER: [_run(10)], "8": [_run(10, p99_ms=30)]}
    assert verdict(met, [8]).endswith(": met")
    slow = {**met, "8": [_run(9.9, p99_ms=30)]}
    assert "0.99x" in verdict(slow, [8]) and "NOT met" in verdict(slow, [8])
    long_tail = {**met, "8": [_run(10, p99_ms=31)]}
    assert "NOT met" in verdict(long_tail, [8])
    errors = {**met, "8": [_run(10, errors=1)]}
    assert "NOT met" in verdict(errors, [8])


def test_at_32_clients_the_target_is_the_same_within_10_percent():
    runs = {SEARCH: [_run(10)], ENCODER: [_run(10)], "32": [_run(9, p99_ms=33)]}
    assert verdict(runs, [32]).startswith("32 clients: 0.90x") and verdict(runs, [32]).endswith(": met")
    assert verdict({**runs, "32": [_run(8.9)]}, [32]).endswith("NOT met")


def test_a_rebuild_that_did_not_exit_0_is_reported(tmp_path):
    loop = RebuildLoop(tmp_path, exits=[0, 0], seconds=[3.0, 5.0])
    assert loop.summary().startswith("2 rebuilds") and "each exited 0" in loop.summary()
    (tmp_path / "rebuild.log").write_text("Traceback: boom\n")
    loop = RebuildLoop(tmp_path, exits=[0, 1], seconds=[3.0, 5.0])
    assert "1 did NOT exit 0 (exit codes [1])" in loop.summary() and "boom" in loop.summary()


def test_stop_counts_every_rebuild_since_start_also_those_done_before_stop(tmp_path):
    loop = RebuildLoop(tmp_path, command=[sys.executable, "-c", "pass"])
    loop.start()
    deadline = time.monotonic() + 120
    while len(loop.exits) < 2 and time.monotonic() < deadline:  # two finished while the load would run
        time.sleep(0.01)
    ran = loop.stop()
    assert ran == len(loop.exits) >= 2
    assert loop.exits == [0] * ran
    loop.start()
    assert loop.stop() == len(loop.exits) - ran >= 0
