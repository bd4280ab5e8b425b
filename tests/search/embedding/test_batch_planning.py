"""Batch planning: the CUDA token budget follows free GPU memory (checked without a GPU)."""

from __future__ import annotations

import pytest
import torch

from search.embedding.batching import Device, default_batch_tokens

MINILM = {"hidden_size": 384, "intermediate_size": 1536}


@pytest.mark.parametrize(
    ("free", "expected"),
    [
        # fp16 MiniLM: (8 * 384 + 2 * 1536) * 2 bytes = 12,288 per token; a third of what is free.
        (3 * 2**30, 3 * 2**30 // 3 // 12_288),
        (2**20, 4096),  # a nearly full GPU still gets a workable floor
        (2**40, 1 << 20),  # a huge one is capped
    ],
)
def test_cuda_budget_is_sized_from_free_memory(monkeypatch: pytest.MonkeyPatch, free: int, expected: int) -> None:
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda _device: (free, 80 * 2**30))
    assert default_batch_tokens(Device("cuda"), MINILM, "float16") == expected


def test_cpu_budget_does_not_ask_the_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda _device: pytest.fail("asked a GPU on the CPU path"))
    assert default_batch_tokens(Device("cpu"), MINILM, "bfloat16") == 8192
