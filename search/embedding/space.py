"""What makes vectors comparable, and what a chunk is read as: the embedding space, the pooling modes
(checked here and nowhere else) and the text a chunk is embedded and keyword-indexed from."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal, get_args

Pooling = Literal["mean", "cls", "pooler"]
POOLING_MODES: tuple[Pooling, ...] = get_args(Pooling)


def check_pooling(value: str) -> Pooling:
    """The pooling mode named, or a ValueError listing the allowed ones."""
    if value not in POOLING_MODES:
        raise ValueError(f"pooling must be one of {', '.join(POOLING_MODES)}, not {value!r}")
    return value


def chunk_input(title: str, text: str) -> str:
    """What a chunk is embedded and keyword-indexed from: its document's title, then the chunk text."""
    return f"{title} {text}" if title else text


@dataclass(frozen=True)
class EmbeddingSpace:
    """What makes two vectors comparable: the same model, pooling, dimension and token limit. The
    encoder makes it, each generation stores it, and every check compares two of them with `==`."""

    model: str
    pooling: str
    dim: int
    max_length: int

    @property
    def key(self) -> str:
        """A short key of the space, under which SQL keeps its vectors (whatever index type holds them)."""
        return hashlib.sha1(f"{self.model}|{self.pooling}|{self.dim}|{self.max_length}".encode()).hexdigest()[:16]

    def describe(self) -> str:
        """The space in words, for messages."""
        return f"model {self.model!r}, {self.pooling} pooling, dimension {self.dim}, max_length {self.max_length}"
