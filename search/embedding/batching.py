"""Where and in what batches the encoder runs: device, dtype, the token budget of a batch, and
length-sorted batches within it (no model library here; torch is asked only about a GPU)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

import numpy as np

from search.settings import Dtype

DTYPES: tuple[str, ...] = get_args(Dtype)
_ITEMSIZE = {"float32": 4, "float16": 2, "bfloat16": 2, "int8": 1}
# Without one of these a machine has no GPU driver, so torch (seconds to import) need not be asked.
_GPU_DRIVERS = ("/proc/driver/nvidia", "/dev/kfd")


@dataclass(frozen=True)
class Device:
    """Where the model runs, as torch names it (`cpu`, `cuda`, `cuda:1`); `type` without the index."""

    name: str

    @property
    def type(self) -> str:
        """The device type: cpu or cuda."""
        return self.name.split(":", 1)[0]

    def __str__(self) -> str:
        return self.name


def cpu_has_native_bf16() -> bool:
    """True where the CPU computes bfloat16 natively (AVX512-BF16 or AMX), so bf16 weights pay off."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def cuda_available() -> bool:
    """Whether torch sees a GPU; not asked (nor imported) on a machine with no GPU driver."""
    if not any(Path(p).exists() for p in _GPU_DRIVERS):
        return False
    from search.embedding.torch_runner import cuda_is_available

    return cuda_is_available()


def resolve_device(device: str) -> Device:
    """`auto` is CUDA when there is a GPU, else the CPU."""
    if device == "auto":
        return Device("cuda" if cuda_available() else "cpu")
    return Device(device)


def resolve_dtype(dtype: str, device: Device) -> Dtype:
    """`auto` is float16 on CUDA, bfloat16 on a CPU with native bf16 (AVX512-BF16/AMX), float32 elsewhere;
    never int8, which is asked for by name (its vectors differ more from float32's)."""
    if dtype != "auto":
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be auto or one of {', '.join(DTYPES)}, not {dtype!r}")
        if dtype == "int8" and device.type != "cpu":
            raise ValueError(f"dtype int8 runs on a CPU (the openvino backend), not on {device}")
        return dtype  # type: ignore[return-value]
    if device.type == "cuda":
        return "float16"
    return "bfloat16" if cpu_has_native_bf16() else "float32"


def default_batch_tokens(device: Device, config: Mapping[str, Any], dtype: Dtype) -> int:
    """Tokens per batch: 8192 on a CPU (measured best, bench/encoder.py); on CUDA sized from free memory."""
    if device.type != "cuda":
        return 8192
    from search.embedding.torch_runner import cuda_free_memory

    free = cuda_free_memory(device.name)
    # Peak activation memory per token of one layer in inference: the hidden states a few times
    # over plus the feed-forward expansion; use a third of what is free.
    per_token = (8 * int(config["hidden_size"]) + 2 * int(config["intermediate_size"])) * _ITEMSIZE[dtype]
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
