"""The batcher's share of a request's stage times (search/timing.py): the wait for its forward pass
and the pass itself, counted whole for each request that shared it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import numpy as np

from api.server.flow.batcher import MicroBatcher
from search.timing import CURRENT, StageTimes

PASS_SECONDS = 0.05


class SlowEncoder:
    """Each text a [1, 1] row, after `PASS_SECONDS` per forward pass; records the passes."""

    def __init__(self) -> None:
        self.passes = 0

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        self.passes += 1
        time.sleep(PASS_SECONDS)
        return np.ones((len(texts), 2), dtype=np.float32)


def test_each_request_of_a_shared_pass_gets_the_whole_pass_and_its_own_wait() -> None:
    encoder = SlowEncoder()

    async def request(batcher: MicroBatcher, texts: list[str], timed: bool) -> StageTimes:
        times = StageTimes(time.perf_counter())
        if timed:  # each task has its own context: this request's times only
            CURRENT.set(times)
        await batcher.embed(texts)
        return times

    async def main() -> list[StageTimes]:
        async with MicroBatcher(encoder, max_wait=1.0) as batcher:
            first = asyncio.ensure_future(request(batcher, ["a", "b"], True))
            await asyncio.sleep(0.02)  # the second arrives later, into the same gathering window
            return await asyncio.gather(first, request(batcher, ["c"], True), request(batcher, ["d"], False))

    first, second, untimed = asyncio.run(main())
    assert encoder.passes == 1
    assert first.seconds["forward"] == second.seconds["forward"] >= PASS_SECONDS
    assert first.seconds["queue_wait"] > second.seconds["queue_wait"] >= 0
    assert first.seconds["queue_wait"] - second.seconds["queue_wait"] >= 0.02
    assert untimed.seconds == {}
