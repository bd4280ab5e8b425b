"""Where a request's time goes: the seconds it spends in each stage of its work, summed per stage.

The API starts a `StageTimes` per HTTP request and makes it current (a context variable); the code
of each stage, here in `search` or in the API's flow control, adds its time to whatever is current.
A context variable rather than an argument: the dense, keyword and SQL calls sit three layers under
the request, behind signatures that callers outside the API (the CLI, the integrations) share, and
the threads the API hands search work to (anyio's) run in a copy of the request's context, so the
same object is reached there. Outside a request nothing is current and a timer costs one lookup.

Cheap on purpose (the hot path serves hundreds of requests a second on two cores): `perf_counter`
pairs and a dict add, no lock. A request's stages are added one after another, save its keyword
ranking, which runs beside its own embedding (different stages, so different keys).

A timer inside another (the SQL lookups of a fusion) counts its time to its own stage only, not
to the outer one's too: the stages of a request add up to no more than its time.
"""

from __future__ import annotations

import threading
from contextvars import ContextVar
from time import perf_counter
from types import TracebackType

# Every stage a request's time is counted under (the one list: the API's metrics expose these).
STAGES = (
    "admission",  # from the request's arrival to its admission: its body read and checked, the key, the door
    "queue_wait",  # its texts waiting for the encoder's forward pass to start
    "forward",  # the forward passes its texts were in (a shared pass counts whole for each request)
    "thread_wait",  # waiting for a search thread
    "dense",  # the vector index searches
    "keyword",  # the keyword index searches
    "fusion",  # scoring, fusing and diversifying the rankings
    "sql",  # the store's lookups: filters, chunks to documents, the rows of the hits shown
    "serialise",  # from the hits found to the response's first byte: the results and their JSON
)


class StageTimes:
    """One request's seconds per stage, from its arrival (`arrived`, a `perf_counter` reading)."""

    __slots__ = ("arrived", "seconds", "serialise_from")

    def __init__(self, arrived: float) -> None:
        self.arrived = arrived
        self.seconds: dict[str, float] = {}
        # When the request's hits were ready (its answer being made from then on); None: not yet.
        self.serialise_from: float | None = None

    def add(self, stage: str, seconds: float) -> None:
        """Count `seconds` more under `stage`."""
        self.seconds[stage] = self.seconds.get(stage, 0.0) + seconds


CURRENT: ContextVar[StageTimes | None] = ContextVar("semsearch_stage_times", default=None)


def current_times() -> StageTimes | None:
    """The current request's stage times (None outside a request)."""
    return CURRENT.get()


# The innermost timer running in each thread (a thread's timers nest; different threads' do not).
_OPEN = threading.local()


class _Timer:
    __slots__ = ("inner", "outer", "stage", "started", "times")

    def __init__(self, stage: str) -> None:
        self.stage = stage
        self.times: StageTimes | None = None
        self.outer: _Timer | None = None
        self.started = self.inner = 0.0  # `inner`: the seconds of the timers inside this one

    def __enter__(self) -> None:
        self.times = CURRENT.get()
        if self.times is not None:
            self.outer = getattr(_OPEN, "timer", None)
            _OPEN.timer = self
            self.started = perf_counter()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.times is not None:
            took = perf_counter() - self.started
            self.times.add(self.stage, took - self.inner)
            if self.outer is not None:
                self.outer.inner += took
            _OPEN.timer = self.outer


def timed(stage: str) -> _Timer:
    """`with timed("dense"): ...` adds the block's seconds to the current request's `stage`."""
    return _Timer(stage)
