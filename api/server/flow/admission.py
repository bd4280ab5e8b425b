"""The one door of the API's search and embedding requests: a bounded number of them may be in the
server at once, running or waiting for a search thread or the encoder; past it a request is refused
at once with 429 and Retry-After, before it costs anything, whatever its mode.

Without it a keyword search (it needs no model) queued for a search thread without bound, and only
requests that went through the encoder's batcher could be refused: under overload the keyword
backlog, and with it every latency, grew until clients gave up.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager

from search.timing import current_times

# Weight of the newest request in the mean time a request spends admitted (Retry-After's estimate).
_NEWEST = 0.1


class AdmissionRefusedError(RuntimeError):
    """The server holds as many search and embedding requests as it may; `retry_after` is the estimated
    wait in whole seconds."""

    def __init__(self, admitted: int, limit: int, retry_after: int) -> None:
        super().__init__(
            f"the server is overloaded: {admitted} search and embedding requests are running or waiting "
            f"(limit {limit}, SEMSEARCH_SEARCH_MAX_REQUESTS); retry in {retry_after} s"
        )
        self.retry_after = retry_after


class AdmissionClosedError(RuntimeError):
    """The server is shutting down and takes no new search or embedding request."""


class Admission:
    """Counts the requests in; `admit()` around a request's work. Used on the event loop only (the
    count is a plain integer that no thread touches)."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"the admission limit must be at least 1, got {limit}")
        self.limit = limit
        self._admitted = 0
        self._closed = False
        self._mean_seconds = 0.0

    @property
    def admitted(self) -> int:
        """Requests in now (running or waiting)."""
        return self._admitted

    @contextmanager
    def admit(self) -> Iterator[None]:
        """Hold a place for the request for the duration of the block; refused at once when every
        place is taken (AdmissionRefusedError) or the server is shutting down (AdmissionClosedError)."""
        if self._closed:
            raise AdmissionClosedError("the server is shutting down")
        if self._admitted >= self.limit:
            raise AdmissionRefusedError(self._admitted, self.limit, self.retry_after())
        self._admitted += 1
        times = current_times()
        if times is not None:
            times.add("admission", time.perf_counter() - times.arrived)
        started = time.monotonic()
        try:
            yield
        finally:
            self._admitted -= 1
            took = time.monotonic() - started
            mean = self._mean_seconds
            self._mean_seconds = took if not mean else mean + _NEWEST * (took - mean)

    def retry_after(self) -> int:
        """Whole seconds after which a refused request may find a place: about the time the requests
        in now take to leave (the mean time one spends admitted), at least 1."""
        return max(1, math.ceil(self._mean_seconds))

    def close(self) -> None:
        """Refuse every request from now on (the server is stopping); those already in finish."""
        self._closed = True
