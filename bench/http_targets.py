"""bench.http_load's table and issue 25's target, read off the runs (pure: no timing, no I/O).

The runs are keyed SEARCH (the in-process search, one query at a time), ENCODER (the in-process
`Encoder` alone embedding one query at a time) and the client count of each HTTP run, as a string;
each holds one run a round, round n's at index n. Every ratio is the median over rounds of that
round's requests/s over the reference's in the same round: neighbouring runs on a host whose speed
drifts compare, pooled rates minutes apart may not.
"""

from __future__ import annotations

from typing import Any

from bench.http_load import ENCODER, SEARCH, Run, pooled, round_ratios

REFERENCES = {SEARCH: "in-process search", ENCODER: "in-process Encoder alone"}
# Issue 25: at 8 clients HTTP requests/s >= 1.0x the in-process one-query-at-a-time Encoder rate,
# p99 <= 3x p50, 0 errors; at 32 clients the same within 10 % (the rate's floor 10 % lower, the tail's
# bound 10 % higher).
TARGETS = {8: (1.0, 3.0), 32: (0.9, 3.3)}
HEADER = [
    "path",
    "clients",
    "requests/s",
    "p50 ms",
    "p99 ms",
    "p99/p50",
    "errors",
    "texts/pass",
    "vs search",
    "vs encoder",
]


def ratio(runs: dict[str, list[Run]], key: str, reference: str) -> tuple[float, list[float]]:
    """The median over rounds of `key`'s requests/s over `reference`'s in the same round, and each round's."""
    return round_ratios(runs[key], runs[reference])


def tail(run: Run) -> float:
    """p99 over p50 latency."""
    return run.percentile_ms(99) / run.percentile_ms(50)


def table_rows(runs: dict[str, list[Run]], client_counts: list[int]) -> list[list[Any]]:
    """One row per in-process reference and per HTTP client count (all rounds pooled), each with its
    ratio against both references."""
    rows: list[list[Any]] = []
    for key, path, clients in [
        *[(ref, name, 1) for ref, name in REFERENCES.items()],
        *[(str(c), "HTTP POST /search", c) for c in client_counts],
    ]:
        run = pooled(runs[key])
        per_pass = "-" if key in REFERENCES else f"{run.rows_per_pass:.1f}"
        p50, p99 = run.percentile_ms(50), run.percentile_ms(99)
        both = [ratio(runs, key, ref)[0] for ref in REFERENCES]
        rows.append([path, clients, run.rate, p50, p99, tail(run), run.errors, per_pass, *both])
    return rows


def verdict(runs: dict[str, list[Run]], client_counts: list[int]) -> str:
    """Issue 25's target at each client count it names that was run: met or NOT met, and why."""
    lines = []
    for clients, (floor, bound) in TARGETS.items():
        if clients not in client_counts:
            continue
        median, each = ratio(runs, str(clients), ENCODER)
        run = pooled(runs[str(clients)])
        checks = [median >= floor, tail(run) <= bound, run.errors == 0]
        rounds = ", ".join(f"{r:.2f}" for r in each)
        lines.append(
            f"{clients} clients: {median:.2f}x the Encoder alone (rounds: {rounds}; target >= {floor:.1f}x), "
            f"p99/p50 {tail(run):.2f} (target <= {bound:.1f}), {run.errors} errors (target 0): "
            f"{'met' if all(checks) else 'NOT met'}"
        )
    return "\n".join(lines)
