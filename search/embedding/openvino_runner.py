"""The encoder's transformer run by OpenVINO on a CPU (imported by search/embedding/encoder.py only).

The model is exported from the local PyTorch weights (never downloaded; search/embedding/openvino_export.py,
the one part that needs torch) and kept as OpenVINO IR in a cache folder keyed by the model files and
library versions, so later processes skip the export and never import torch or transformers."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov

from search.embedding.calibration import Calibration
from search.settings import Dtype

log = logging.getLogger(__name__)

# Bump when the exported graph changes (its inputs or outputs), so old cache entries are not reused.
_EXPORT_FORMAT = 1
# int8 quantizes the matrix multiplications; what stays floating point (softmax, norms) runs in f32.
_PRECISION: dict[Dtype, str] = {"float32": "f32", "bfloat16": "bf16", "float16": "f16", "int8": "f32"}
_WEIGHT_SUFFIXES = (".json", ".safetensors", ".bin")
# Bump when the quantization's own settings change (search/embedding/openvino_quantize.py).
_QUANTIZE_FORMAT = 1
# Cache entries no process has loaded for this long are removed (a new library version or model
# leaves its predecessor's entry behind); a crashed writer's scratch folder after a day.
STALE_SECONDS = 14 * 24 * 3600
_SCRATCH_STALE_SECONDS = 24 * 3600


@dataclass(frozen=True)
class Outputs:
    """What `search.embedding.encoder.pool` reads from a forward pass, as from a transformers model output."""

    last_hidden_state: np.ndarray
    pooler_output: np.ndarray | None


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
        "versions": [ov.__version__, _version("torch"), _version("transformers"), _EXPORT_FORMAT],
        "pooler": pooler,
    }
    digest = hashlib.sha256(json.dumps(stamp, sort_keys=True).encode()).hexdigest()[:20]
    return f"{folder.name}-{digest}"


def _version(package: str) -> str:
    """An installed package's version, read without importing it (torch takes seconds)."""
    try:
        return version(package)
    except PackageNotFoundError:
        return "absent"


def convert(path: str, pooler: bool) -> ov.Model:
    """Export the local model at `path` to OpenVINO (imports torch and transformers: only here)."""
    from search.embedding.openvino_export import export

    return export(path, pooler)


def load_or_convert(path: str, pooler: bool, cache_dir: Path | None) -> ov.Model:
    """The converted model from the cache, else converted now and cached for the next process."""
    if cache_dir is None or not Path(path).is_dir():
        return convert(path, pooler)
    return load_or_build(cache_dir / cache_key(path, pooler), partial(convert, path, pooler))


def load_or_quantize(path: str, pooler: bool, cache_dir: Path | None, calibration: Calibration) -> ov.Model:
    """The int8 model from the cache, else quantized now from the (cached) converted one and cached: its key
    adds NNCF's version and the calibration's stamp to the converted model's, so no change reuses it."""

    def build() -> ov.Model:
        from search.embedding.openvino_quantize import quantize  # imported here: NNCF is the int8 extra

        return quantize(load_or_convert(path, pooler, cache_dir), calibration.inputs())

    if cache_dir is None or not Path(path).is_dir():
        return build()
    stamp = json.dumps([_version("nncf"), _QUANTIZE_FORMAT, calibration.stamp])
    digest = hashlib.sha256(stamp.encode()).hexdigest()[:12]
    return load_or_build(cache_dir / f"{cache_key(path, pooler)}-int8-{digest}", build)


def load_or_build(target: Path, build: Callable[[], ov.Model]) -> ov.Model:
    """The model cached at `target`, else built now and cached there for the next process."""
    if (target / "model.xml").is_file():
        try:
            model = ov.Core().read_model(target / "model.xml")
            os.utime(target)  # the entry's time is its last use: pruning keeps what is in use
            return model
        except (RuntimeError, OSError):
            log.warning("damaged OpenVINO cache entry %s; converting again", target, exc_info=True)
    model = build()
    try:
        save_atomically(model, target)
    except OSError:
        log.warning("could not cache the OpenVINO model in %s", target, exc_info=True)
    # Pruned only after a conversion: a process that found its entry has nothing new to clear away.
    prune(target.parent, keep=target)
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
        self,
        path: str,
        pooler: bool,
        precision: Dtype,
        threads: int | None,
        cache_dir: Path | None,
        calibration: Calibration | None = None,
    ) -> None:
        """`calibration`: what an int8 model (`precision` int8, where it is required) is calibrated on."""
        if precision == "int8":
            if calibration is None:
                raise ValueError("an int8 model needs a calibration")
            model = load_or_quantize(path, pooler, cache_dir, calibration)
        else:
            model = load_or_convert(path, pooler, cache_dir)
        # Set in every case: OpenVINO's own default on a CPU with native bf16 is bf16, even for float32.
        config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": _PRECISION[precision], "PERFORMANCE_HINT": "LATENCY"}
        if threads is not None:
            config["INFERENCE_NUM_THREADS"] = threads
        self.pooler = pooler
        self._compiled = ov.Core().compile_model(model, "CPU", config)
        # An infer request must not be shared by threads running at once; each thread gets its own.
        self._local = threading.local()

    def describe(self) -> str:
        """The compiled model's threads, hint, streams and precision, and its kernels by implementation
        (e.g. jit_avx2_f32, gemm_mlas_f32): what a benchmark must say it ran with."""
        names = ("PERFORMANCE_HINT", "INFERENCE_NUM_THREADS", "NUM_STREAMS", "INFERENCE_PRECISION_HINT")
        config = " ".join(f"{n}={self._compiled.get_property(n)}" for n in names)
        kernels: Counter[str] = Counter()
        for op in self._compiled.get_runtime_model().get_ops():
            info = op.get_rt_info()
            kind = info["primitiveType"].astype(str) if "primitiveType" in info else "unknown"
            if not kind.startswith(("unknown", "ref")):  # shape arithmetic and reference code: no ISA
                kernels[kind] += 1
        return f"{config}; kernels " + ", ".join(f"{k} x{n}" for k, n in kernels.most_common())

    def __call__(self, input_ids: np.ndarray, mask: np.ndarray) -> Outputs:
        """Forward pass; the outputs are valid until this thread's next call."""
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self._compiled.create_infer_request()
        results = request.infer([input_ids, mask])
        return Outputs(last_hidden_state=results[0], pooler_output=results[1] if self.pooler else None)
