"""Word pieces for the encoder, from the model folder's own files, without importing torch.

A folder with a `tokenizer.json` (every fast tokenizer saves one) is run by the `tokenizers` library
directly: the same Rust tokenizer transformers' fast tokenizers wrap, with the padding and truncation
the file may carry replaced by the encoder's own. Importing transformers costs a process seconds, since
it imports torch, which a server on OpenVINO never needs. A folder without one (a slow tokenizer only)
falls back to transformers' AutoTokenizer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

# transformers' stand-in for "no limit" when a tokenizer config names none.
_NO_LIMIT = int(1e30)


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from a model folder's file; {} when the file is absent."""
    if not path.is_file():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    return data if isinstance(data, dict) else {}


class WordPieces:
    """Token ids (special tokens added, truncated at `max_length`) and token offsets (neither) of texts.

    Two tokenizer objects, each configured once: a fast tokenizer keeps truncation as state on the
    shared Rust object, so one object serving both uses could cut a document short in a race."""

    def __init__(self, path: str) -> None:
        folder = Path(path)
        config = read_json(folder / "tokenizer_config.json")
        self.model_max_length = int(config.get("model_max_length") or _NO_LIMIT)
        self._fast = (folder / "tokenizer.json").is_file()
        # A tokenizers.Tokenizer, or transformers' tokenizer (another API) for a folder without the file.
        self._ids: Any
        self._spans: Any
        if self._fast:
            from tokenizers import Tokenizer

            self._ids = Tokenizer.from_file(str(folder / "tokenizer.json"))
            self._spans = Tokenizer.from_file(str(folder / "tokenizer.json"))
            for tok in (self._ids, self._spans):
                tok.no_padding()
                tok.no_truncation()
            pad = config.get("pad_token")
            pad_id = self._ids.token_to_id(pad) if isinstance(pad, str) else None
            self.pad_id = int(pad_id or 0)
            self.special_tokens = int(self._ids.num_special_tokens_to_add(False))
        else:
            from transformers import AutoTokenizer

            self._ids = AutoTokenizer.from_pretrained(path)
            self._spans = AutoTokenizer.from_pretrained(path)
            self.pad_id = int(self._ids.pad_token_id or 0)
            self.special_tokens = int(self._ids.num_special_tokens_to_add(pair=False))
        self.max_length: int | None = None

    @property
    def backend(self) -> str:
        """`tokenizers` (the file run directly) or `transformers` (the fallback)."""
        return "tokenizers" if self._fast else "transformers"

    def truncate_at(self, max_length: int) -> None:
        """Set the length `ids` truncates at (special tokens included); called once, before any use."""
        self.max_length = max_length
        if self._fast:
            self._ids.enable_truncation(max_length)

    def ids(self, texts: list[str]) -> list[list[int]]:
        """Each text's token ids with the special tokens, truncated at `max_length`."""
        if self._fast:
            return [e.ids for e in self._ids.encode_batch(texts, add_special_tokens=True)]
        out: list[list[int]] = self._ids(
            texts,
            truncation=True,
            max_length=self.max_length,
            return_attention_mask=False,
            return_token_type_ids=False,
        )["input_ids"]
        return out

    def offsets(self, texts: list[str]) -> list[np.ndarray]:
        """Each text's (start, end) character offsets per token, without special tokens or truncation."""
        if self._fast:
            found = [e.offsets for e in self._spans.encode_batch(texts, add_special_tokens=False)]
        else:
            found = self._spans(
                texts, add_special_tokens=False, return_offsets_mapping=True, truncation=False, verbose=False
            )["offset_mapping"]
        return [np.asarray(o, dtype=np.int64).reshape(-1, 2) for o in found]
