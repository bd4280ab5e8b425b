"""The API's search threads: BLAS on one thread a call for exactly as long as some search runs."""

from __future__ import annotations

import os
import threading

import pytest
from threadpoolctl import threadpool_info

from api.server.search_threads import OneBlasThreadWhileSearching


def numpy_blas() -> int:
    (count,) = [lib["num_threads"] for lib in threadpool_info() if "numpy" in lib["filepath"]]
    return count


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="on one core BLAS has one thread anyway")
def test_the_limit_holds_until_the_last_overlapping_search_ends() -> None:
    before = numpy_blas()
    assert before > 1
    blas = OneBlasThreadWhileSearching()
    long_in, release = threading.Event(), threading.Event()
    seen: list[int] = []

    def long_search() -> None:
        seen.append(numpy_blas())
        long_in.set()
        assert release.wait(30)

    def short_search() -> None:
        seen.append(numpy_blas())

    long = threading.Thread(target=blas.run, args=(long_search,))
    long.start()
    assert long_in.wait(30)
    blas.run(short_search)  # starts after the long one and ends before it
    assert blas.running == 1 and numpy_blas() == 1, "the short search lifted the limit under the long one"
    release.set()
    long.join(30)
    assert seen == [1, 1]
    assert blas.running == 0 and numpy_blas() == before  # no search left: every core again


def test_an_error_of_the_call_still_lifts_the_limit() -> None:
    before = numpy_blas()
    blas = OneBlasThreadWhileSearching()

    def failing() -> None:
        raise RuntimeError("the index is gone")

    with pytest.raises(RuntimeError, match="the index is gone"):
        blas.run(failing)
    assert blas.running == 0 and numpy_blas() == before
