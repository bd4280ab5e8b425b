"""Where the API's index and SQL work runs: in threads, at most `search_threads` at once, with the BLAS
libraries held to one thread per call for exactly as long as some search runs.

Searches run side by side, so one BLAS call (a query against a delta segment, an exact re-rank) must
not also split itself over the cores: 8 such calls at once took 10-20 times longer each on two
OpenBLAS threads than on one. But numpy's (and scipy's) OpenBLAS keeps one thread count for the
whole process, and `semsearch serve` runs the indexing worker in this process: a limit held for the
server's life kept every BLAS call of the worker on one thread. So the count is set to one when the
first search starts and put back when the last one ends: between searches the worker has every core
again.

An OpenBLAS built on OpenMP (FAISS's) is left as it is: its count follows each calling thread's
OpenMP setting, and changing it frees and reallocates the buffers that calls in other threads (the
worker's) may be using. FAISS's own searches showed no loss from its threads (README).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, TypeVar

from anyio import CapacityLimiter, to_thread
from threadpoolctl import OpenBLASController, ThreadpoolController

from search.timing import current_times

T = TypeVar("T")
# Older threadpoolctl releases let any thread set OpenBLAS's count: nothing to take control of there.
_clear_controlling_thread = getattr(OpenBLASController, "clear_controlling_thread", lambda force=False: None)


def _process_wide(library: Any) -> bool:
    """Whether the library keeps one thread count for the process (all but OpenMP-built OpenBLAS)."""
    return not (library.internal_api == "openblas" and library.threading_layer == "openmp")


def _set(libraries: Sequence[Any], counts: Sequence[int]) -> None:
    """Set the libraries' thread counts. threadpoolctl lets only one thread change OpenBLAS's (the first
    that tried; the others' calls do nothing), and searches run on many: this thread takes control for
    the change and gives it back after."""
    _clear_controlling_thread(force=True)
    try:
        for library, count in zip(libraries, counts, strict=True):
            library.set_num_threads(count)
    finally:
        _clear_controlling_thread()


class OneBlasThreadWhileSearching:
    """Runs calls with the process-wide BLAS libraries on one thread, restoring the counts they had
    once no call is running any more."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running = 0
        self._libraries: list[Any] = []
        self._restore: list[int] = []

    @property
    def running(self) -> int:
        """Calls running now."""
        return self._running

    def find_libraries(self) -> None:
        """Look up the BLAS libraries the process has loaded. It walks every shared object of the
        process, so it is done when a server starts (after its searcher and encoder loaded theirs),
        not per call; while calls run, the libraries they limited are kept."""
        with self._lock:
            if self._running == 0:
                libraries = ThreadpoolController().select(user_api="blas").lib_controllers
                self._libraries = [library for library in libraries if _process_wide(library)]

    def run(self, call: Callable[..., T], *args: Any) -> T:
        """`call(*args)`, its BLAS calls (and those of searches beside it) on one thread each."""
        with self._lock:
            if self._running == 0:
                self._restore = [library.num_threads for library in self._libraries]
                _set(self._libraries, [1] * len(self._libraries))
            self._running += 1
        try:
            return call(*args)
        finally:
            with self._lock:
                self._running -= 1
                if self._running == 0:
                    _set(self._libraries, self._restore)


# A process-wide count has one owner in the process, and so must the count of searches running:
# every server in the process shares this one (with one each, a second server starting while the
# first searched took the limit for the original count and "restored" it for good).
BLAS = OneBlasThreadWhileSearching()


class SearchThreads:
    """Runs the search work of requests in threads: at most `count` at once, the others waiting in
    order, and one BLAS thread per call while any runs."""

    def __init__(self, count: int) -> None:
        self.limiter = CapacityLimiter(count)
        self.blas = BLAS
        BLAS.find_libraries()

    async def run(self, call: Callable[..., T], *args: Any) -> T:
        """`call(*args)` in a search thread (from a coroutine)."""
        waiting = partial(_after_wait, time.perf_counter(), self.blas.run, call, *args)
        return await to_thread.run_sync(waiting, limiter=self.limiter)


def _after_wait(queued: float, run: Callable[..., T], *args: Any) -> T:
    """`run(*args)` in the search thread, the wait for that thread (since `queued`) counted first.
    anyio runs it in a copy of the request's context: its stage times are current here too."""
    times = current_times()
    if times is not None:
        times.add("thread_wait", time.perf_counter() - queued)
    return run(*args)
