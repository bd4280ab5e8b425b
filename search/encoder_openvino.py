"""The encoder's transformer run by OpenVINO on a CPU (imported by search/encoder.py only).

The model is exported from the local PyTorch weights (never downloaded) and kept as OpenVINO IR in a
cache folder keyed by the model files and library versions, so later processes skip the export."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov
import torch
import transformers
from transformers import AutoModel

log = logging.getLogger(__name__)

# Bump when the exported graph changes (its inputs or outputs), so old cache entries are not reused.
_EXPORT_FORMAT = 1
_PRECISION = {torch.float32: "f32", torch.bfloat16: "bf16", torch.float16: "f16"}
_WEIGHT_SUFFIXES = (".json", ".safetensors", ".bin")
# Cache entries no process has loaded for this long are removed (a new library version or model
# leaves its predecessor's entry behind); a crashed writer's scratch folder after a day.
STALE_SECONDS = 14 * 24 * 3600
_SCRATCH_STALE_SECONDS = 24 * 3600


@dataclass(frozen=True)
class Outputs:
    """What `search.encoder.pool` reads from a forward pass, as from a transformers model output."""

    last_hidden_state: torch.Tensor
    pooler_output: torch.Tensor | None


class _Exportable(torch.nn.Module):
    """The transformer with plain tensors in and out, as tracing needs; the pooler head only on request."""

    def __init__(self, model: torch.nn.Module, pooler: bool) -> None:
        super().__init__()
        self.model = model
        self.pooler = pooler

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> Any:
        out = self.model(input_ids=input_ids, attention_mask=attention_mask)
        return (out.last_hidden_state, out.pooler_output) if self.pooler else out.last_hidden_state


def default_cache_dir() -> Path | None:
    """A per-user folder in the temp dir; None when it cannot be made or someone else could write to it."""
    root = Path(tempfile.gettempdir()) / f"semsearch-openvino-{os.getuid()}"
    try:
        root.mkdir(mode=0o700, exist_ok=True)
        info = root.stat()
    except OSError:
        return None
    # A model read from a folder another user can write to could be swapped for anything.
    if info.st_uid != os.getuid() or info.st_mode & 0o022:
        log.warning("not caching OpenVINO models in %s: not private to this user", root)
        return None
    return root


def cache_key(path: str, pooler: bool) -> str:
    """Folder name of a converted model: changes with the model's files, the export and the library versions."""
    folder = Path(path)
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in _WEIGHT_SUFFIXES)
    stamp = {
        "path": str(folder.resolve()),
        "files": [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files],
        "versions": [ov.__version__, torch.__version__, transformers.__version__, _EXPORT_FORMAT],
        "pooler": pooler,
    }
    digest = hashlib.sha256(json.dumps(stamp, sort_keys=True).encode()).hexdigest()[:20]
    return f"{folder.name}-{digest}"


def convert(path: str, pooler: bool) -> ov.Model:
    """Export the local model at `path` to OpenVINO, with batch size and sequence length left dynamic."""
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


def load_or_convert(path: str, pooler: bool, cache_dir: Path | None) -> ov.Model:
    """The converted model from the cache, else converted now and cached for the next process."""
    if cache_dir is None or not Path(path).is_dir():
        return convert(path, pooler)
    target = cache_dir / cache_key(path, pooler)
    if (target / "model.xml").is_file():
        try:
            model = ov.Core().read_model(target / "model.xml")
            os.utime(target)  # the entry's time is its last use: pruning keeps what is in use
            return model
        except (RuntimeError, OSError):
            log.warning("damaged OpenVINO cache entry %s; converting again", target, exc_info=True)
    model = convert(path, pooler)
    try:
        save_atomically(model, target)
    except OSError:
        log.warning("could not cache the OpenVINO model in %s", target, exc_info=True)
    # Pruned only after a conversion: a process that found its entry has nothing new to clear away.
    prune(cache_dir, keep=target)
    return model


def prune(cache_dir: Path, keep: Path, now: float | None = None) -> list[Path]:
    """Remove the cache entries unused for `STALE_SECONDS` (and scratch folders a crash left behind),
    never `keep`; returns what was removed. Another process's entry in use is recent, so it stays."""
    now = time.time() if now is None else now
    removed = []
    for entry in cache_dir.iterdir():
        try:
            age = now - entry.stat().st_mtime
        except OSError:
            continue  # removed meanwhile by another process
        limit = _SCRATCH_STALE_SECONDS if entry.name.startswith(".partial-") else STALE_SECONDS
        if entry != keep and entry.is_dir() and age > limit:
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    if removed:
        log.info("removed %d unused OpenVINO cache entries from %s", len(removed), cache_dir)
    return removed


def save_atomically(model: ov.Model, target: Path) -> None:
    """Write the IR beside `target` and rename it into place, so that a reader never sees half a model
    and two processes converting at once both succeed (the second one's copy is dropped)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".partial-", dir=target.parent))
    try:
        # Keep float32 weights: the fp16 default would round them before the bf16/f32 inference does.
        ov.save_model(model, scratch / "model.xml", compress_to_fp16=False)
        scratch.rename(target)
    except OSError:
        if not (target / "model.xml").is_file():
            raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


class OpenVinoRunner:
    """One compiled model; `__call__` runs a padded batch through it (safe from several threads)."""

    def __init__(
        self, path: str, pooler: bool, precision: torch.dtype, threads: int | None, cache_dir: Path | None
    ) -> None:
        model = load_or_convert(path, pooler, cache_dir)
        # Set in every case: OpenVINO's own default on a CPU with native bf16 is bf16, even for float32.
        config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": _PRECISION[precision], "PERFORMANCE_HINT": "LATENCY"}
        if threads is not None:
            config["INFERENCE_NUM_THREADS"] = threads
        self.pooler = pooler
        self._compiled = ov.Core().compile_model(model, "CPU", config)
        # An infer request must not be shared by threads running at once; each thread gets its own.
        self._local = threading.local()

    def __call__(self, input_ids: np.ndarray, mask: np.ndarray) -> Outputs:
        """Forward pass; the outputs are valid until this thread's next call."""
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self._compiled.create_infer_request()
        results = request.infer([input_ids, mask])
        hidden = torch.from_numpy(results[0])
        pooled = torch.from_numpy(results[1]) if self.pooler else None
        return Outputs(last_hidden_state=hidden, pooler_output=pooled)
