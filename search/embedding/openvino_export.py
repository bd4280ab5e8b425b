"""Export of a local PyTorch model to OpenVINO: the one part of the OpenVINO backend that needs torch
and transformers, imported only when a model is not yet in the cache (search/embedding/openvino_runner.py)."""

from __future__ import annotations

import warnings
from typing import Any

import openvino as ov
import torch
from transformers import AutoModel

from search.embedding.torch_runner import quiet_transformers


class _Exportable(torch.nn.Module):
    """The transformer with plain tensors in and out, as tracing needs; the pooler head only on request."""

    def __init__(self, model: torch.nn.Module, pooler: bool) -> None:
        super().__init__()
        self.model = model
        self.pooler = pooler

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> Any:
        out = self.model(input_ids=input_ids, attention_mask=attention_mask)
        return (out.last_hidden_state, out.pooler_output) if self.pooler else out.last_hidden_state


def export(path: str, pooler: bool) -> ov.Model:
    """The local model at `path` as an OpenVINO model, with batch size and sequence length left dynamic."""
    quiet_transformers()
    model = AutoModel.from_pretrained(path).eval()
    # The example has a padded row, so the traced graph keeps the attention mask in use.
    input_ids = torch.ones((2, 8), dtype=torch.int64)
    mask = torch.ones_like(input_ids)
    mask[1, 4:] = 0
    dynamic = [("input_ids", [-1, -1], ov.Type.i64), ("attention_mask", [-1, -1], ov.Type.i64)]
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about Python control flow on shapes
        return ov.convert_model(
            _Exportable(model, pooler),
            example_input={"input_ids": input_ids, "attention_mask": mask},
            input=dynamic,
            # Own copies of the weights: the PyTorch model is dropped once this returns.
            share_weights=False,
        )
