"""The API's search threads: BLAS on one thread a call for exactly as long as some search runs."""

from __future__ import annotations

import asyncio
import os
import threading

import pytest
from threadpoolctl import threadpool_info

from api.server.flow.search_threads import BLAS, SearchThreads


def numpy_blas() -> int:
    (count,) = [lib["num_threads"] for lib in threadpool_info() if "numpy" in lib["filepath"]]
    return count


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="on one core BLAS has one thread anyway")
def test_the_limit_holds_until_the_last_overlapping_search_ends() -> None:
    before = numpy_blas()
    assert before > 1
    blas = BLAS  # the process's one, as every server uses
    blas.find_libraries()
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
    blas = BLAS  # the process's one, as every server uses
    blas.find_libraries()

    def failing() -> None:
        raise RuntimeError("the index is gone")

    with pytest.raises(RuntimeError, match="the index is gone"):
        blas.run(failing)
    assert blas.running == 0 and numpy_blas() == before


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="on one core BLAS has one thread anyway")
def test_two_servers_in_one_process_share_one_count() -> None:
    async def two_servers() -> tuple[SearchThreads, SearchThreads]:
        return SearchThreads(1), SearchThreads(1)

    first, second = asyncio.run(two_servers())
    before = numpy_blas()
    first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()
    seen: list[int] = []

    def first_search() -> None:
        first_in.set()
        assert second_in.wait(30)

    def second_search() -> None:
        second_in.set()
        assert first_out.wait(30)
        seen.append(numpy_blas())  # the first server's search has ended, this one still runs

    one = threading.Thread(target=first.blas.run, args=(first_search,))
    one.start()
    assert first_in.wait(30)
    two = threading.Thread(target=second.blas.run, args=(second_search,))
    two.start()
    one.join(30)
    first_out.set()
    two.join(30)
    assert seen == [1]
    assert numpy_blas() == before  # not left at one thread for good


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="on one core BLAS has one thread anyway")
def test_searches_on_threads_that_live_on_each_get_the_limit() -> None:
    # The server's threads outlive their searches; threadpoolctl heeds only one thread's changes.
    before = numpy_blas()
    BLAS.find_libraries()
    seen: list[int] = []
    first_done, second_done = threading.Event(), threading.Event()

    def search() -> None:
        seen.append(numpy_blas())

    def first() -> None:
        BLAS.run(search)
        first_done.set()
        assert second_done.wait(30)  # still alive while the other thread searches

    def second() -> None:
        assert first_done.wait(30)
        BLAS.run(search)
        second_done.set()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert seen == [1, 1]
    assert numpy_blas() == before
