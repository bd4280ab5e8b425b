"""The encoder on CUDA (float16 weights, pinned memory, memory-sized batches); skipped without a GPU."""

from __future__ import annotations

import pytest
import torch

from search.embedding.encoder import Encoder

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def test_cuda_float16_matches_cpu_float32() -> None:
    texts = ["the cat sat on the mat", "vaccines train the immune system", "a" * 3000]
    gpu = Encoder()
    assert gpu.device.type == "cuda" and gpu.dtype == "float16" and gpu.batch_tokens >= 4096
    cpu = Encoder(device="cpu", dtype="float32")
    assert (gpu.encode(texts) * cpu.encode(texts)).sum(axis=1).min() >= 0.999
