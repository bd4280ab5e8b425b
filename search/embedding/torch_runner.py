"""The encoder's transformer run by PyTorch (GPU, or a CPU without OpenVINO): imported by
search/embedding/encoder.py only when this backend is used, since importing torch costs a process seconds."""

from __future__ import annotations

import logging
from functools import cached_property
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 - the conventional alias
from transformers import AutoModel
from transformers.utils import logging as hf_logging

from search.embedding.batching import Device
from search.embedding.space import Pooling
from search.settings import Dtype

_TORCH_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def quiet_transformers() -> None:
    """Loading a local model needs no progress bar; and OpenVINO's conversion reads every attribute of
    the model, `loss_function` among them, after which transformers warns that no training loss is
    configured: noise about a loss an encoder never uses."""
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    logger = logging.getLogger("transformers.modeling_utils")
    if not any(isinstance(f, _LossNoise) for f in logger.filters):
        logger.addFilter(_LossNoise())


class _LossNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "`loss_type=" not in record.getMessage()


class TorchRunner:
    """One model on one device; `__call__` embeds a padded batch (pooled, L2-normalised, float32)."""

    def __init__(self, path: str, device: Device, dtype: Dtype, threads: int | None) -> None:
        if threads is not None:
            # Process-wide: a server that shares its cores with the HTTP side may want fewer than torch's
            # default of one per core (bench/http_load.py).
            torch.set_num_threads(threads)
        quiet_transformers()
        self._path = path
        self.device = torch.device(device.name)
        self.dtype = _TORCH_DTYPES[dtype]

    @cached_property
    def model(self) -> Any:
        """The PyTorch model, loaded on first use."""
        # The weights themselves are cast (not autocast): on a CPU with AMX/AVX512-BF16 that measured
        # 2.6x float32 against 2.2x for autocast, at a cosine of 0.99992 to the float32 vectors
        # (bench/encoder.py). Pooling and normalisation run in float32 whatever the dtype.
        return AutoModel.from_pretrained(self._path).eval().to(self.device, self.dtype)

    def __call__(self, input_ids: np.ndarray, mask: np.ndarray, pooling: Pooling) -> np.ndarray:
        ids_t, mask_t = torch.from_numpy(input_ids), torch.from_numpy(mask)
        cuda = self.device.type == "cuda"
        if cuda:
            # Page-locked host memory lets the copy to the GPU run asynchronously (non_blocking).
            ids_t, mask_t = ids_t.pin_memory(), mask_t.pin_memory()
        ids_t = ids_t.to(self.device, non_blocking=cuda)
        mask_t = mask_t.to(self.device, non_blocking=cuda)
        with torch.inference_mode():
            output = self.model(input_ids=ids_t, attention_mask=mask_t)
            vectors = F.normalize(_pool(output, mask_t, pooling).float(), p=2, dim=1)
        return np.asarray(vectors.cpu().numpy(), dtype=np.float32)

    def release(self) -> None:
        """After an out-of-memory error: give the GPU's cached blocks back before the smaller retries."""
        if self.device.type == "cuda":
            torch.cuda.empty_cache()


def _pool(output: Any, mask: torch.Tensor, pooling: Pooling) -> torch.Tensor:
    """Sentence vectors on the device (search.embedding.encoder.pool is the same for OpenVINO's arrays)."""
    hidden: torch.Tensor = output.last_hidden_state
    if pooling == "cls":
        return hidden[:, 0]
    if pooling == "pooler":
        pooled: torch.Tensor | None = getattr(output, "pooler_output", None)
        if pooled is None:
            raise ValueError("pooling='pooler' needs a model with a pooler head")
        return pooled
    hidden = hidden.float()
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    # Padding contributes nothing; the clamp keeps an all-padding row from dividing by zero.
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)


def cuda_is_available() -> bool:
    """Whether torch sees a GPU (search/embedding/batching.py asks only where a GPU driver exists)."""
    return bool(torch.cuda.is_available())


def cuda_free_memory(device: str) -> int:
    """Bytes free on the named CUDA device."""
    free, _total = torch.cuda.mem_get_info(torch.device(device))
    return int(free)
