"""int8 post-training quantization of the exported encoder with NNCF (the `int8` extra), imported only
when an int8 model is not yet in the OpenVINO cache (search/embedding/openvino_runner.py)."""

from __future__ import annotations

import contextlib
import io
import logging

import numpy as np
import openvino as ov

INT8_MISSING = "SEMSEARCH_DTYPE=int8 needs NNCF, which the `int8` extra installs: pip install 'semsearch[int8]'"


def quantize(model: ov.Model, inputs: list[list[np.ndarray]]) -> ov.Model:
    """`model` with its matrix multiplications in int8, their scales fitted to the activations of `inputs`
    (each one forward pass: [input_ids, attention_mask])."""
    try:
        import nncf
    except ImportError as exc:
        raise ValueError(INT8_MISSING) from exc
    nncf.set_log_level(logging.ERROR)
    # The transformer type keeps softmax, layer norms and the like in floating point, where int8 costs
    # accuracy (NNCF's own choice for BERT-family models); every text is calibrated on.
    # NNCF draws progress bars on stdout: `--json` output must stay clean.
    with contextlib.redirect_stdout(io.StringIO()):
        return nncf.quantize(
            model,
            nncf.Dataset(inputs),
            model_type=nncf.ModelType.TRANSFORMER,
            subset_size=len(inputs),
        )
