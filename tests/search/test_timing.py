"""The stage timers of search/timing.py: a timer inside another counts to its own stage only (so a
request's stages add up to no more than its time), per thread, and nothing is counted outside a request."""

from __future__ import annotations

import threading
import time
from contextvars import copy_context

from search.timing import CURRENT, StageTimes, current_times, timed


def test_a_timer_inside_another_counts_only_to_its_own_stage() -> None:
    times = StageTimes(time.perf_counter())
    token = CURRENT.set(times)
    try:
        started = time.perf_counter()
        with timed("fusion"):
            time.sleep(0.02)
            with timed("sql"):
                time.sleep(0.05)
            with timed("sql"):
                time.sleep(0.01)
        took = time.perf_counter() - started
    finally:
        CURRENT.reset(token)
    assert times.seconds["sql"] >= 0.06 and times.seconds["fusion"] >= 0.02
    # Counted in both, the sql's 0.06 s would take the sum past the time the whole block took.
    assert times.seconds["fusion"] + times.seconds["sql"] <= took


def test_a_timer_in_another_thread_is_not_taken_from_this_threads_timer() -> None:
    times = StageTimes(time.perf_counter())
    token = CURRENT.set(times)
    try:

        def keyword() -> None:
            with timed("keyword"):
                time.sleep(0.05)

        with timed("dense"):
            beside = threading.Thread(target=copy_context().run, args=(keyword,))
            beside.start()
            beside.join()
    finally:
        CURRENT.reset(token)
    assert times.seconds["keyword"] >= 0.05
    assert times.seconds["dense"] >= 0.05  # it waited that long itself


def test_outside_a_request_nothing_is_counted() -> None:
    assert current_times() is None
    with timed("sql"):
        pass
    assert current_times() is None
