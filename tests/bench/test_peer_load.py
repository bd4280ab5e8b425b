"""The peer bench's bookkeeping: which path leads each round, and the target read off the runs."""

from bench.http_load import Run
from bench.peer_load import DENSE, HYBRID, PEER, round_order, table_rows, verdict


def _run(rate: float, p99_ms: float) -> Run:
    """A run of 10 s at `rate` requests/s, its latencies 10 ms but for a tail at `p99_ms`."""
    n = int(rate * 10)
    tail = max(n // 50, 1)  # 2 % of the requests: the 99th percentile lies in it
    return Run(latencies=[0.010] * (n - tail) + [p99_ms / 1000] * tail, seconds=10.0)


def test_each_path_leads_one_round_in_as_many_rounds_as_paths():
    names = [DENSE, HYBRID, PEER]
    orders = [round_order(names, n) for n in range(3)]
    assert sorted(order[0] for order in orders) == sorted(names)
    assert all(sorted(order) == sorted(names) for order in orders)


def test_the_ratio_is_the_median_of_the_rounds_not_the_pooled_rates():
    # Pooled, hybrid would be 120 / 15 = 8x txtai; one fast round must not carry the figure.
    runs = {
        (HYBRID, 8): [_run(10, 50), _run(10, 50), _run(100, 50)],
        (PEER, 8): [_run(5, 100), _run(5, 100), _run(5, 100)],
    }
    text = verdict(runs)
    assert "2.00x (rounds: 2.00, 2.00, 20.00)" in text
    assert "target >= 2x: met" in text
    assert "no worse" in text


def test_a_slower_tail_or_a_lower_ratio_is_reported_as_missed():
    runs = {(HYBRID, 8): [_run(15, 300)], (PEER, 8): [_run(10, 100)]}
    text = verdict(runs)
    assert "1.50x" in text
    assert "NOT met" in text
    assert "WORSE" in text


def test_the_table_has_a_row_per_path_and_count_with_the_peer_at_one():
    runs = {(name, c): [_run(rate * c, 20)] for c in (1, 8) for name, rate in ((HYBRID, 4), (PEER, 2))}
    rows = table_rows(runs, [HYBRID, PEER], [1, 8])
    assert [(r[0], r[1]) for r in rows] == [(HYBRID, 1), (PEER, 1), (HYBRID, 8), (PEER, 8)]
    assert [r[-1] for r in rows] == [2.0, 1.0, 2.0, 1.0]
    assert rows[2][2] == 32.0
