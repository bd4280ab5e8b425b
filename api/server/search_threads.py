"""Where the API's index and SQL work runs: in threads, at most `search_threads` at once, with the BLAS
libraries held to one thread per call for exactly as long as some search runs.

Searches run side by side, so one BLAS call (a query against a delta segment, an exact re-rank) must
not also split itself over the cores: 8 such calls at once took 10-20 times longer each on two
OpenBLAS threads than on one. But a BLAS library's thread count is one number for the whole process
(OpenBLAS keeps it in a global, whichever thread sets it), and `semsearch serve` runs the indexing
worker in this process: a limit held for the server's life kept every BLAS call of the worker (FAISS's
training and products among them) on one thread. So the limit is set when the first search starts and
lifted when the last one ends: between searches the worker has every core again.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

from anyio import CapacityLimiter, to_thread
from threadpoolctl import ThreadpoolController

T = TypeVar("T")


class OneBlasThreadWhileSearching:
    """Runs calls with every loaded BLAS library on one thread, restoring the counts they had once
    no call is running any more."""

    def __init__(self) -> None:
        # Finding the loaded libraries walks every shared object of the process: done once, after
        # the searcher has loaded FAISS (and its own BLAS).
        self._libraries = ThreadpoolController().select(user_api="blas").lib_controllers
        self._lock = threading.Lock()
        self._running = 0
        self._restore: list[int] = []

    @property
    def running(self) -> int:
        """Calls running now."""
        return self._running

    def run(self, call: Callable[..., T], *args: Any) -> T:
        """`call(*args)`, its BLAS calls (and those of searches beside it) on one thread each."""
        with self._lock:
            if self._running == 0:
                self._restore = [library.num_threads for library in self._libraries]
                for library in self._libraries:
                    library.set_num_threads(1)
            self._running += 1
        try:
            return call(*args)
        finally:
            with self._lock:
                self._running -= 1
                if self._running == 0:
                    for library, count in zip(self._libraries, self._restore, strict=True):
                        library.set_num_threads(count)


class SearchThreads:
    """Runs the search work of requests in threads: at most `count` at once, the others waiting in
    order, and one BLAS thread per call while any runs."""

    def __init__(self, count: int) -> None:
        self.limiter = CapacityLimiter(count)
        self.blas = OneBlasThreadWhileSearching()

    async def run(self, call: Callable[..., T], *args: Any) -> T:
        """`call(*args)` in a search thread (from a coroutine)."""
        return await to_thread.run_sync(partial(self.blas.run, call, *args), limiter=self.limiter)
