"""Where and in what batches the encoder runs: device, dtype, the token budget of a batch, and
length-sorted batches within it (torch only; no model library here)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def cpu_has_native_bf16() -> bool:
    """True where the CPU computes bfloat16 natively (AVX512-BF16 or AMX), so bf16 weights pay off."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_device(device: str) -> torch.device:
    """`auto` is CUDA when there is a GPU, else the CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """`auto` is float16 on CUDA, bfloat16 on a CPU with native bf16 (AVX512-BF16/AMX), float32 elsewhere."""
    if dtype != "auto":
        return _DTYPES[dtype]
    if device.type == "cuda":
        return torch.float16
    return torch.bfloat16 if cpu_has_native_bf16() else torch.float32


def default_batch_tokens(device: torch.device, config: Any, dtype: torch.dtype) -> int:
    """Tokens per batch: 8192 on a CPU (measured best, bench/encoder.py); on CUDA sized from free memory."""
    if device.type != "cuda":
        return 8192
    free, _total = torch.cuda.mem_get_info(device)
    # Peak activation memory per token of one layer in inference: the hidden states a few times
    # over plus the feed-forward expansion; use a third of what is free.
    per_token = (8 * int(config.hidden_size) + 2 * int(config.intermediate_size)) * dtype.itemsize
    return int(min(max(free // 3 // per_token, 4096), 1 << 20))


def plan_batches(lengths: np.ndarray, token_budget: int, max_batch: int = 512) -> list[np.ndarray]:
    """Group indices longest first so that (longest length in a batch) x (batch size) stays within the budget."""
    order = np.argsort(-lengths, kind="stable")
    batches: list[np.ndarray] = []
    start = 0
    while start < len(order):
        longest = int(lengths[order[start]])
        size = max(1, min(max_batch, token_budget // max(longest, 1)))
        batches.append(order[start : start + size])
        start += size
    return batches
