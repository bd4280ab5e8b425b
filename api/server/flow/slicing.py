"""How a batch of queries shares the server with other clients: slice by slice, with at most one slice
of it at the encoder's batcher and one in the search threads at any time.

Both queues serve in arrival order. A batch of 256 queries queued its 256 texts at once, filling every
forward pass ahead of a single query that came after it, and searched them in one call that held a
search thread for seconds: other clients' single searches waited up to 42 s behind one legal batch
(issue 21). Entering each queue one slice at a time, a batch lets whatever arrives meanwhile in after
at most one of its slices, in each queue: the queues' own order makes the turns round-robin between
requests, with no queue of their own to keep. The batch still overlaps its two stages: slice i+1 is
embedded while slice i is searched. `/v1/embeddings` queues its inputs the same way, SLICE_TEXTS at a
time (api/server/embeddings.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

T = TypeVar("T")
V = TypeVar("V")
R = TypeVar("R")

# A single query waits at the encoder for about two forward passes, each holding one slice of a batch
# running beside it. On the 2-core AVX512-BF16 host (OpenVINO in bf16, one encoder thread, SciFact,
# the host shared with other work), single searches beside batches of 256 queries at top_k 39 took
# p50 170-330 ms and p99 0.55-0.9 s with slices of 8 queries, nearly all of it waiting for the
# encoder; with slices of 2, p50 90-150 ms and p99 0.24-0.35 s, and the batch took no longer there
# (10-13 s). On a quiet host a batch of short queries takes up to 1.4x as long as unsliced (a forward
# pass of 2 texts costs 10 % more a text, and each pass and search call its own overhead): the price
# of other clients' turns. One a slice helped the singles no further and slowed the batch. A hybrid
# search at top_k 1,000 takes ~400 ms, most of it building the hits: a slice holds at most 1,000.
SLICE_TEXTS = 2  # a request's texts in one forward pass: queries of a batch, inputs of /v1/embeddings
SLICE_HITS = 1000


def slice_size(top_k: int) -> int:
    """Queries per slice of a search batch at `top_k`: at most SLICE_TEXTS, and SLICE_HITS hits (one at least)."""
    return max(1, min(SLICE_TEXTS, SLICE_HITS // max(top_k, 1)))


async def in_slices(
    items: Sequence[T],
    size: int,
    search: Callable[[Sequence[T], V | None], Awaitable[R]],
    embed: Callable[[Sequence[T]], Awaitable[V]] | None = None,
) -> list[R]:
    """`search(part, embed(part))` for each slice of `size` items, in order (`search(part, None)` when
    there is nothing to embed). The next slice is embedded while one is searched; never more than one
    of each runs. An error of either stops the rest (an embedding under way is cancelled) and is raised."""
    if size < 1:
        raise ValueError(f"a slice holds at least one item, got {size}")
    parts = [items[i : i + size] for i in range(0, len(items), size)]
    ahead = _start(embed, parts[0]) if parts else None
    answers: list[R] = []
    try:
        for i, part in enumerate(parts):
            made = None if ahead is None else await ahead
            ahead = _start(embed, parts[i + 1]) if i + 1 < len(parts) else None
            answers.append(await search(part, made))
    finally:
        if ahead is not None:
            ahead.cancel()
            # Its outcome no longer matters: retrieved, so that asyncio never logs it as lost.
            ahead.add_done_callback(lambda done: done.cancelled() or done.exception())
    return answers


def _start(embed: Callable[[Sequence[T]], Awaitable[V]] | None, part: Sequence[T]) -> asyncio.Future[V] | None:
    return None if embed is None else asyncio.ensure_future(embed(part))
