"""Micro-batching of encoder calls: concurrent requests share forward passes, and none runs on the event loop.

Callers `await batcher.embed(texts)`. One background task takes the first waiting request, gathers
the ones that arrive within `max_wait` of it (or until `max_rows` texts), runs ONE `encode` over all
their texts in the encoder's own thread and hands each caller its rows back. On a CPU a forward pass
over 8 short queries costs little more than over one, so under load this multiplies throughput;
an idle server pays at most `max_wait` per query.

Interactive requests (a search's query) go first: bulk ones (`/v1/embeddings`, the slices of a
batch search) wait while an interactive one does, and a pass that begins with an interactive request
takes no bulk texts, so a search waits at most for the pass under way, not for a bulk backlog.

Requests are isolated: when a shared forward pass fails, each of its requests is encoded again
alone, so one text the tokenizer refuses fails only its own caller. The queue is bounded: past
`max_pending` waiting texts a new request is refused at once with `BatcherOverloadedError`, which
says how long the backlog should take to clear (the API answers 429 with Retry-After).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol

import numpy as np

from search.timing import StageTimes, current_times

log = logging.getLogger(__name__)


class TextEncoder(Protocol):
    """What the batcher needs of an encoder (search.embedding.encoder.Encoder, or a fake in tests)."""

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """An (n, dim) array, one row per text, in input order."""
        ...


class BatcherStoppedError(RuntimeError):
    """The batcher is not running (not started yet, or shutting down)."""


class BatcherOverloadedError(RuntimeError):
    """Too many texts are waiting for the encoder; `retry_after` is the estimated wait in whole seconds."""

    def __init__(self, waiting: int, limit: int, retry_after: int) -> None:
        super().__init__(
            f"the server is overloaded: {waiting} texts are waiting for the encoder (limit {limit}, "
            f"SEMSEARCH_BATCH_MAX_PENDING); retry in {retry_after} s"
        )
        self.retry_after = retry_after


class TextEncodingError(ValueError):
    """The encoder refused this request's own texts (it failed alone, not only in a shared batch)."""


@dataclass
class _Request:
    texts: list[str]
    future: asyncio.Future[tuple[np.ndarray, TextEncoder]]
    arrived: float
    bulk: bool = False
    times: StageTimes | None = None  # the stage times of the request that sent the texts


class MicroBatcher:
    """Shares encoder forward passes between concurrent callers; use as `async with MicroBatcher(...)`."""

    def __init__(
        self,
        encoder: TextEncoder,
        max_wait: float = 0.002,
        max_rows: int = 256,
        current: Callable[[], TextEncoder] | None = None,
        max_pending: int = 4096,
    ) -> None:
        if max_wait < 0 or max_rows < 1 or max_pending < 1:
            raise ValueError(
                f"max_wait must be >= 0, max_rows and max_pending >= 1; got {max_wait}, {max_rows}, {max_pending}"
            )
        self.encoder = encoder
        # Asked once per batch, in the encoder's thread (never on the event loop), for the encoder to
        # use, so that the batcher follows a generation built with another model (`semsearch rebuild`).
        self.current = current
        self.max_wait = max_wait
        self.max_rows = max_rows
        self.max_pending = max_pending
        # Waiting requests, interactive and bulk, each in arrival order; `_arrived` wakes the task.
        self._interactive: deque[_Request] = deque()
        self._bulk: deque[_Request] = deque()
        self._arrived = asyncio.Event()
        # Texts queued and not yet taken into a batch; and the seconds per text the last batch took.
        self._waiting_rows = 0
        self._seconds_per_row = 0.0
        # A request that would have pushed a batch over `max_rows`: it opens the next batch.
        self._carry: _Request | None = None
        self._task: asyncio.Task[None] | None = None
        # One thread of its own: encode calls never overlap (they would only fight over the same
        # cores), and the HTTP server's thread pool stays free for index searches and SQL.
        self._executor: ThreadPoolExecutor | None = None

    @property
    def pending(self) -> int:
        """Requests waiting for a batch (not counting the batch being encoded)."""
        return len(self._interactive) + len(self._bulk) + (self._carry is not None)

    @property
    def waiting_rows(self) -> int:
        """Texts waiting for a batch (the bound `max_pending` applies to)."""
        return self._waiting_rows

    async def start(self) -> None:
        """Start the background task (on the running event loop)."""
        if self._task is not None:
            raise RuntimeError("the batcher is already running")
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="encoder")
        self._task = asyncio.create_task(self._run(), name="encoder-batcher")

    async def stop(self) -> None:
        """Stop the task; callers still waiting get BatcherStoppedError. Waits for a running encode to end."""
        if self._task is None:
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
        waiting = [*([self._carry] if self._carry else []), *self._interactive, *self._bulk]
        self._interactive.clear()
        self._bulk.clear()
        self._carry = None
        self._waiting_rows = 0
        _fail(waiting, BatcherStoppedError("the server is shutting down"))
        if self._executor is not None:
            # The wait for a forward pass still running happens off the loop.
            await asyncio.to_thread(self._executor.shutdown, True)
            self._executor = None

    async def __aenter__(self) -> MicroBatcher:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        """The (len(texts), dim) vectors of `texts`, computed in a batch shared with concurrent callers.

        An error of the encoder is raised here (in every caller of the failed batch); cancelling
        the awaiting task withdraws only this caller's texts."""
        vectors, _encoder = await self.embed_with_encoder(texts)
        return vectors

    async def embed_with_encoder(self, texts: Sequence[str]) -> tuple[np.ndarray, TextEncoder]:
        """As `embed`, with the encoder that made the vectors (whose index they must be searched in)."""
        return await self.submit(texts)

    def submit(
        self, texts: Sequence[str], *, continuing: bool = False, bulk: bool = False
    ) -> asyncio.Future[tuple[np.ndarray, TextEncoder]]:
        """Queue `texts` (from a coroutine); refused at once, before any other work is spent on the
        request, when the batcher is stopped or overloaded. The future gives the vectors and their encoder.

        `continuing`: the texts are a later slice of a request let in already (a batch comes slice by
        slice, api/server/flow/slicing.py): never refused for a backlog, which would throw away the
        work done for its earlier slices. `bulk`: texts no one watches for (embeddings, a batch's
        slices): they wait while interactive ones do."""
        if self._task is None or self._task.done():
            raise BatcherStoppedError("the encoder batcher is not running")
        # A request larger than the bound still goes when nothing else waits: it is refused only
        # behind a backlog, never for its own size (the routes bound that).
        if not continuing and self._waiting_rows and self._waiting_rows + len(texts) > self.max_pending:
            wait = math.ceil(self._waiting_rows * self._seconds_per_row) if self._seconds_per_row else 1
            raise BatcherOverloadedError(self._waiting_rows, self.max_pending, max(1, wait))
        loop = asyncio.get_running_loop()
        request = _Request(list(texts), loop.create_future(), loop.time(), bulk, current_times())
        (self._bulk if bulk else self._interactive).append(request)
        self._arrived.set()
        self._waiting_rows += len(request.texts)
        return request.future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect(loop)
            if not batch:
                continue
            try:
                await self._encode(loop, batch)
            except asyncio.CancelledError:
                _fail(batch, BatcherStoppedError("the server is shutting down"))
                raise
            except Exception as exc:
                # Whatever went wrong belongs to this batch's callers; the loop goes on serving.
                log.exception("encoder batch of %d requests failed", len(batch))
                _fail(batch, exc)

    async def _collect(self, loop: asyncio.AbstractEventLoop) -> list[_Request]:
        """The next batch: the oldest interactive request (else the oldest bulk one) plus those arriving
        within `max_wait` of it, up to `max_rows`; bulk requests join only a batch that began with one."""
        first = self._carry or await self._next(None, bulk=True)
        self._carry = None
        if first is None or first.future.done():  # its caller was cancelled while it waited
            return []
        # Counted from the first request's arrival: after a long encode a backlog leaves at once.
        deadline = first.arrived + self.max_wait
        batch, rows = [first], len(first.texts)
        while rows < self.max_rows:
            nxt = await self._next(deadline, bulk=first.bulk)
            if nxt is None:
                break
            if nxt.future.done():  # its caller was cancelled while it waited
                continue
            if rows + len(nxt.texts) > self.max_rows:
                self._carry = nxt
                self._waiting_rows += len(nxt.texts)  # still waiting, for the next batch
                break
            batch.append(nxt)
            rows += len(nxt.texts)
        return batch

    async def _next(self, deadline: float | None, bulk: bool) -> _Request | None:
        """The next waiting request (an interactive one first; a bulk one only where `bulk`), waiting
        for one until `deadline` (None: for as long as it takes); None at the deadline."""
        loop = asyncio.get_running_loop()
        while True:
            if self._interactive:
                return self._take(self._interactive.popleft())
            if bulk and self._bulk:
                return self._take(self._bulk.popleft())
            self._arrived.clear()
            if deadline is None:
                await self._arrived.wait()
                continue
            remaining = deadline - loop.time()
            if remaining <= 0:
                return None
            try:
                async with asyncio.timeout(remaining):
                    await self._arrived.wait()
            except TimeoutError:
                return None

    def _take(self, request: _Request) -> _Request:
        self._waiting_rows -= len(request.texts)
        return request

    async def _encode(self, loop: asyncio.AbstractEventLoop, batch: list[_Request]) -> None:
        texts = [text for request in batch for text in request.texts]
        started = loop.time()
        try:
            vectors, encoder = await loop.run_in_executor(self._executor, self._encode_texts, texts)
        except Exception as exc:
            if len(batch) == 1:
                _fail(batch, _own_fault(exc))
                return
            # One request's text may have failed the shared pass: each goes again alone, so that
            # only the request at fault gets the error.
            log.warning("a shared forward pass of %d requests failed (%s); encoding them one by one", len(batch), exc)
            await self._encode_alone(loop, batch)
            return
        took = loop.time() - started
        self._seconds_per_row = took / max(len(texts), 1)
        start = 0
        for request in batch:
            end = start + len(request.texts)
            if request.times is not None:  # loop.time() is monotonic seconds too: waits stay comparable
                request.times.add("queue_wait", started - request.arrived)
                request.times.add("forward", took)
            if not request.future.done():
                request.future.set_result((vectors[start:end], encoder))
            start = end

    async def _encode_alone(self, loop: asyncio.AbstractEventLoop, batch: list[_Request]) -> None:
        for request in batch:
            if request.future.done():
                continue
            try:
                result = await loop.run_in_executor(self._executor, self._encode_texts, request.texts)
            except Exception as exc:
                _fail([request], _own_fault(exc))
            else:
                if not request.future.done():
                    request.future.set_result(result)

    def _encode_texts(self, texts: list[str]) -> tuple[np.ndarray, TextEncoder]:
        """In the encoder's thread: pick the encoder (the current generation's) and run it."""
        encoder = self.encoder if self.current is None else self.current()
        vectors = encoder.encode(texts)
        if len(vectors) != len(texts):
            raise RuntimeError(f"the encoder returned {len(vectors)} rows for {len(texts)} texts")
        return vectors, encoder


def _own_fault(exc: Exception) -> Exception:
    """The error a request's caller gets when its texts failed alone: the tokenizer's refusals (a type
    or value error) become a TextEncodingError, which the API answers with 422; anything else stays."""
    if isinstance(exc, TypeError | ValueError | UnicodeError) and not isinstance(exc, TextEncodingError):
        log.warning("the encoder refused a request's texts: %s", exc)
        return TextEncodingError(f"the text could not be embedded: {exc}")
    log.error("encoding failed: %r", exc)
    return exc


def _fail(requests: list[_Request], error: BaseException) -> None:
    for request in requests:
        if not request.future.done():
            request.future.set_exception(error)
