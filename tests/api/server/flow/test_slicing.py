"""A batch's slices: in order, at most one of a request embedding and one searching, the next slice
embedded while one is searched, and an error stopping the rest (tests/api/server/test_hostile_batches.py
has them in the served app, beside other clients' searches)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from api.server.flow.slicing import SLICE_HITS, SLICE_TEXTS, in_slices, slice_size


def test_a_slice_holds_few_queries_and_hits_and_one_query_at_least() -> None:
    assert slice_size(10) == SLICE_TEXTS
    assert slice_size(SLICE_HITS // 2) == 2
    assert slice_size(1000) == 1 == slice_size(SLICE_HITS * 5)


class Stages:
    """Fake embed and search stages that log when each starts and ends, and count those running."""

    def __init__(self, fail_search: int | None = None, fail_embed: int | None = None) -> None:
        self.log: list[str] = []
        self.embedding = self.searching = self.most_embedding = self.most_searching = 0
        self.fail_search, self.fail_embed = fail_search, fail_embed
        self.cancelled: list[int] = []

    async def embed(self, part: Sequence[int]) -> list[int]:
        self.embedding += 1
        self.most_embedding = max(self.most_embedding, self.embedding)
        self.log.append(f"embed {part[0]}")
        try:
            await asyncio.sleep(0.03)
            if part[0] == self.fail_embed:
                raise RuntimeError(f"embedding {part[0]} failed")
            return [x * 10 for x in part]
        except asyncio.CancelledError:
            self.cancelled.append(part[0])
            raise
        finally:
            self.embedding -= 1

    async def search(self, part: Sequence[int], made: list[int] | None) -> list[int]:
        self.searching += 1
        self.most_searching = max(self.most_searching, self.searching)
        self.log.append(f"search {part[0]}")
        try:
            # A failing search fails soon, while the next slice is still being embedded.
            await asyncio.sleep(0.005 if part[0] == self.fail_search else 0.06)
            if part[0] == self.fail_search:
                raise RuntimeError(f"search {part[0]} failed")
            return [*part] if made is None else made
        finally:
            self.searching -= 1
            self.log.append(f"searched {part[0]}")


def test_slices_come_back_in_order_with_one_of_each_stage_at_a_time() -> None:
    stages = Stages()
    answers = asyncio.run(in_slices(list(range(10)), 3, stages.search, stages.embed))
    assert answers == [[0, 10, 20], [30, 40, 50], [60, 70, 80], [90]]
    assert stages.most_embedding == 1 and stages.most_searching == 1
    # The next slice is embedded while one is searched: embed 3 starts before search 0 ends.
    assert stages.log.index("embed 3") < stages.log.index("searched 0")
    # ... but no further ahead: slice 6 waits until slice 0's search is done.
    assert stages.log.index("embed 6") > stages.log.index("searched 0")


def test_without_an_embedding_stage_slices_are_searched_alone() -> None:
    stages = Stages()
    assert asyncio.run(in_slices([1, 2, 3], 2, stages.search)) == [[1, 2], [3]]
    assert stages.log == ["search 1", "searched 1", "search 3", "searched 3"]


def test_a_failed_search_stops_the_rest_and_cancels_the_embedding_under_way() -> None:
    stages = Stages(fail_search=3)
    with pytest.raises(RuntimeError, match="search 3 failed"):
        asyncio.run(in_slices(list(range(10)), 3, stages.search, stages.embed))
    assert "search 6" not in stages.log
    assert stages.cancelled == [6]


def test_a_failed_embedding_is_raised_and_nothing_after_it_runs() -> None:
    stages = Stages(fail_embed=3)
    with pytest.raises(RuntimeError, match="embedding 3 failed"):
        asyncio.run(in_slices(list(range(10)), 3, stages.search, stages.embed))
    assert "search 3" not in stages.log and "embed 6" not in stages.log


def test_a_cancelled_request_cancels_its_embedding_under_way() -> None:
    stages = Stages()

    async def cancel_midway() -> None:
        task = asyncio.ensure_future(in_slices(list(range(10)), 3, stages.search, stages.embed))
        while "search 0" not in stages.log:
            await asyncio.sleep(0.001)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0.05)  # anything left running would log on

    asyncio.run(cancel_midway())
    assert stages.cancelled == [3] and "search 3" not in stages.log
