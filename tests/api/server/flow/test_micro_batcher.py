"""Micro-batching of query embeddings: the batcher alone, with a fake encoder (tests/api/server/flow/test_batching.py
has the real server over HTTP).

No assertion depends on timing: where a test needs requests to pile up, it holds the encoder at a
gate and waits (with a generous deadline against hangs) until the batcher reports them waiting."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

import numpy as np
import pytest

from api.server.flow.batcher import BatcherOverloadedError, BatcherStoppedError, MicroBatcher, TextEncodingError


class FakeEncoder:
    """Each text is a number n, embedded as [n, -n]. Records the batches it gets; can hold or fail them."""

    def __init__(self, hold: bool = False, fail_on: str | None = None) -> None:
        self.batches: list[list[str]] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        if not hold:
            self.release.set()
        self.fail_on = fail_on

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        self.batches.append(list(texts))
        self.entered.set()
        self.release.wait(30)
        if self.fail_on in texts:
            raise ValueError(f"cannot embed {self.fail_on}")
        return np.array([[float(t), -float(t)] for t in texts], dtype=np.float32).reshape(-1, 2)


def rows(*numbers: int) -> np.ndarray:
    return np.array([[n, -n] for n in numbers], dtype=np.float32).reshape(-1, 2)


def test_concurrent_callers_share_one_encode_and_each_gets_its_own_rows() -> None:
    fake = FakeEncoder()
    inputs = [[str(10 * i + j) for j in range(1 + i % 3)] for i in range(20)]

    async def main() -> list[np.ndarray]:
        async with MicroBatcher(fake, max_wait=0.05) as batcher:
            return await asyncio.gather(*(batcher.embed(texts) for texts in inputs))

    results = asyncio.run(main())
    assert len(fake.batches) == 1 and len(fake.batches[0]) == sum(len(t) for t in inputs)
    for texts, got in zip(inputs, results, strict=True):
        assert np.array_equal(got, rows(*map(int, texts)))


def test_the_row_cap_splits_batches_and_a_large_request_goes_alone() -> None:
    fake = FakeEncoder()
    inputs = [["1"], ["2"], ["3"], [str(n) for n in range(10, 16)], ["4"], ["5"]]

    async def main() -> list[np.ndarray]:
        async with MicroBatcher(fake, max_wait=0.01, max_rows=4) as batcher:
            return await asyncio.gather(*(batcher.embed(texts) for texts in inputs))

    results = asyncio.run(main())
    # The 6-text request would overflow the first batch: it opens the next one, alone (it is over the cap).
    assert [len(b) for b in fake.batches] == [3, 6, 2]
    for texts, got in zip(inputs, results, strict=True):
        assert np.array_equal(got, rows(*map(int, texts)))


def test_a_text_the_encoder_refuses_fails_only_its_own_request() -> None:
    fake = FakeEncoder(fail_on="13")

    async def main() -> tuple[list[object], np.ndarray]:
        async with MicroBatcher(fake, max_wait=0.05) as batcher:
            shared = await asyncio.gather(
                batcher.embed(["1"]), batcher.embed(["13", "2"]), batcher.embed(["3"]), return_exceptions=True
            )
            return shared, await batcher.embed(["7", "8"])

    (one, bad, three), after = asyncio.run(main())
    # The shared pass failed, then each request went alone: only the one holding "13" failed.
    assert fake.batches == [["1", "13", "2", "3"], ["1"], ["13", "2"], ["3"], ["7", "8"]]
    assert np.array_equal(one, rows(1)) and np.array_equal(three, rows(3))  # type: ignore[arg-type]
    assert isinstance(bad, TextEncodingError) and "cannot embed 13" in str(bad)
    assert np.array_equal(after, rows(7, 8))


def test_an_error_that_is_not_the_texts_reaches_the_caller_as_it_is() -> None:
    class Broken(FakeEncoder):
        def encode(self, texts: Sequence[str]) -> np.ndarray:
            raise RuntimeError("the model is gone")

    async def main() -> list[object]:
        async with MicroBatcher(Broken(), max_wait=0.05) as batcher:
            return await asyncio.gather(batcher.embed(["1"]), batcher.embed(["2"]), return_exceptions=True)

    failed = asyncio.run(main())
    assert all(type(e) is RuntimeError and "the model is gone" in str(e) for e in failed)


def test_the_queue_is_bounded_and_a_refusal_says_when_to_retry() -> None:
    fake = FakeEncoder(hold=True)

    async def main() -> tuple[BatcherOverloadedError, list[np.ndarray], np.ndarray]:
        async with MicroBatcher(fake, max_wait=0.0, max_pending=4) as batcher:
            first = asyncio.create_task(batcher.embed(["1"]))
            assert await asyncio.to_thread(fake.entered.wait, 30), "the first batch never reached the encoder"
            queued = [asyncio.create_task(batcher.embed([str(n), str(n + 1)])) for n in (2, 4)]
            await asyncio.sleep(0)
            assert batcher.waiting_rows == 4
            with pytest.raises(BatcherOverloadedError) as refused:
                await batcher.embed(["9"])
            fake.release.set()
            done = await asyncio.gather(first, *queued)
            # Nothing waits any more: a request larger than the bound goes, alone.
            return refused.value, done, await batcher.embed([str(n) for n in range(6)])

    refused, done, large = asyncio.run(main())
    assert refused.retry_after >= 1 and "4 texts are waiting" in str(refused)
    assert [d.tolist() for d in done] == [rows(1).tolist(), rows(2, 3).tolist(), rows(4, 5).tolist()]
    assert np.array_equal(large, rows(0, 1, 2, 3, 4, 5))


def test_a_later_slice_of_a_request_let_in_is_queued_past_the_bound() -> None:
    fake = FakeEncoder(hold=True)

    async def main() -> tuple[np.ndarray, int]:
        async with MicroBatcher(fake, max_wait=0.0, max_pending=2) as batcher:
            first = asyncio.create_task(batcher.embed(["1"]))
            assert await asyncio.to_thread(fake.entered.wait, 30), "the first batch never reached the encoder"
            queued = batcher.submit(["2", "3"])
            with pytest.raises(BatcherOverloadedError):
                batcher.submit(["4"])  # a new request behind the backlog
            later = batcher.submit(["4"], continuing=True)  # the next slice of one already in
            waiting = batcher.waiting_rows
            fake.release.set()
            await asyncio.gather(first, queued)
            vectors, _encoder = await later
            return vectors, waiting

    vectors, waiting = asyncio.run(main())
    assert waiting == 3 and np.array_equal(vectors, rows(4))


def test_an_interactive_request_goes_before_a_bulk_backlog_and_alone() -> None:
    fake = FakeEncoder(hold=True)

    async def main() -> list[np.ndarray]:
        async with MicroBatcher(fake, max_wait=0.05) as batcher:
            first = batcher.submit(["1"], bulk=True)
            assert await asyncio.to_thread(fake.entered.wait, 30), "the first batch never reached the encoder"
            backlog = [batcher.submit([str(n), str(n + 1)], bulk=True) for n in (2, 4, 6)]
            query = batcher.submit(["9"])  # a search's query, arriving last
            fake.release.set()
            done = await asyncio.gather(first, query, *backlog)
            return [vectors for vectors, _encoder in done]

    done = asyncio.run(main())
    # The query had the next pass to itself; the bulk texts then shared theirs.
    assert fake.batches == [["1"], ["9"], ["2", "3", "4", "5", "6", "7"]]
    assert np.array_equal(done[1], rows(9)) and np.array_equal(done[4], rows(6, 7))


def test_a_bulk_pass_takes_the_interactive_requests_arriving_within_its_wait() -> None:
    fake = FakeEncoder()

    async def main() -> None:
        async with MicroBatcher(fake, max_wait=0.2) as batcher:
            bulk = batcher.submit(["1"], bulk=True)
            await asyncio.sleep(0.01)
            await asyncio.gather(bulk, batcher.submit(["2"]))

    asyncio.run(main())
    assert fake.batches == [["1", "2"]]


def test_the_current_encoder_is_asked_for_off_the_event_loop() -> None:
    fake = FakeEncoder()
    threads: list[str] = []

    def current() -> FakeEncoder:
        threads.append(threading.current_thread().name)  # a reload may read a file or build a model
        return fake

    async def main() -> np.ndarray:
        async with MicroBatcher(fake, max_wait=0.0, current=current) as batcher:
            return await batcher.embed(["5"])

    assert np.array_equal(asyncio.run(main()), rows(5))
    assert threads and all(name.startswith("encoder") for name in threads)


def test_cancelled_callers_do_not_disturb_the_others() -> None:
    fake = FakeEncoder(hold=True)

    async def main() -> dict[str, object]:
        async with MicroBatcher(fake, max_wait=0.01) as batcher:
            a = asyncio.create_task(batcher.embed(["1"]))
            d = asyncio.create_task(batcher.embed(["4"]))
            assert await asyncio.to_thread(fake.entered.wait, 30), "the first batch never reached the encoder"
            b = asyncio.create_task(batcher.embed(["2"]))
            c = asyncio.create_task(batcher.embed(["3"]))
            await asyncio.sleep(0)  # b and c are queued behind the batch being encoded
            d.cancel()  # its batch is in the encoder
            b.cancel()  # still waiting for a batch: its text must never be encoded
            fake.release.set()
            done = await asyncio.gather(a, b, c, d, return_exceptions=True)
            return dict(zip("abcd", done, strict=True))

    got = asyncio.run(main())
    assert fake.batches == [["1", "4"], ["3"]]
    assert np.array_equal(got["a"], rows(1)) and np.array_equal(got["c"], rows(3))
    assert isinstance(got["b"], asyncio.CancelledError) and isinstance(got["d"], asyncio.CancelledError)


def test_stopping_fails_waiting_callers_and_refuses_new_ones() -> None:
    fake = FakeEncoder(hold=True)

    async def main() -> tuple[list[object], MicroBatcher]:
        batcher = MicroBatcher(fake, max_wait=0.0)
        await batcher.start()
        encoding = asyncio.create_task(batcher.embed(["1"]))
        assert await asyncio.to_thread(fake.entered.wait, 30)
        queued = asyncio.create_task(batcher.embed(["2"]))
        await asyncio.sleep(0)
        stopping = asyncio.create_task(batcher.stop())
        await asyncio.sleep(0)
        fake.release.set()  # stop() waits for the forward pass in flight to end
        await stopping
        return await asyncio.gather(encoding, queued, return_exceptions=True), batcher

    failed, batcher = asyncio.run(main())
    assert all(isinstance(e, BatcherStoppedError) for e in failed)
    with pytest.raises(BatcherStoppedError):
        asyncio.run(batcher.embed(["3"]))
