"""Splitting documents into overlapping token windows that keep their character offsets (for citing)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from search.embedding.encoder import Encoder, TokenSpans
from search.storage.records import ChunkIn, DocumentIn

_SENTENCE_END = frozenset(".!?")
# A window may end early at a sentence boundary, but never before this fraction of its length.
_MIN_FILL = 0.5
# A title that eats more of the token limit than this still leaves chunks this long.
_MIN_CHUNK_TOKENS = 32


class Chunker:
    """Cuts documents into windows of at most `size` tokens sharing `overlap` tokens, ending at sentences."""

    def __init__(self, encoder: Encoder, size: int = 256, overlap: int = 32, enabled: bool = True) -> None:
        if overlap >= size:
            raise ValueError(f"chunk overlap ({overlap}) must be smaller than chunk size ({size})")
        self.encoder = encoder
        self.size = size
        self.overlap = overlap
        self.enabled = enabled

    def split(self, docs: Sequence[DocumentIn]) -> list[list[ChunkIn]]:
        """The chunks of each document, in order."""
        if not self.enabled or not docs:
            return [[ChunkIn(0, d.text, 0, len(d.text))] for d in docs]
        spans = self.encoder.token_spans([d.text for d in docs])
        title_spans = self.encoder.token_spans([d.title for d in docs])
        budget = self.encoder.max_length - self.encoder.special_tokens
        chunks = []
        for doc, tokens, title in zip(docs, spans, title_spans, strict=True):
            # The title goes in front of every chunk's embedding input; shrinking the window by its
            # length keeps the whole chunk inside the model's token limit.
            title_cost = len(title.starts) + 1 if doc.title else 0
            size = max(_MIN_CHUNK_TOKENS, min(self.size, budget - title_cost))
            chunks.append(self._split_one(doc.text, tokens, size))
        return chunks

    def _split_one(self, text: str, tokens: TokenSpans, size: int) -> list[ChunkIn]:
        n = len(tokens.starts)
        if n <= size:
            return [ChunkIn(0, text, 0, len(text))]
        overlap = min(self.overlap, size // 2)
        boundaries = _sentence_boundaries(text, tokens)
        chunks: list[ChunkIn] = []
        first = 0
        while True:
            stop = min(first + size, n)
            if stop < n:
                stop = _last_boundary(boundaries, first + int(size * _MIN_FILL), stop) or stop
            start, end = int(tokens.starts[first]), int(tokens.ends[stop - 1])
            chunks.append(ChunkIn(len(chunks), text[start:end], start, end))
            if stop >= n:
                return chunks
            first = max(stop - overlap, first + 1)


def _sentence_boundaries(text: str, tokens: TokenSpans) -> np.ndarray:
    """Token indices t where a sentence ends right before token t (after . ! ? and a space, or a newline)."""
    n = len(tokens.starts)
    marks = np.zeros(n + 1, dtype=bool)
    for t in range(1, n):
        prev_start, prev_end, start = tokens.starts[t - 1], tokens.ends[t - 1], tokens.starts[t]
        gap = text[prev_end:start]
        if "\n" in gap or (gap and text[prev_start:prev_end] in _SENTENCE_END):
            marks[t] = True
    return np.flatnonzero(marks)


def _last_boundary(boundaries: np.ndarray, low: int, high: int) -> int | None:
    """The largest boundary in [low, high], if any."""
    pos = int(np.searchsorted(boundaries, high, side="right")) - 1
    if pos >= 0 and boundaries[pos] >= low:
        return int(boundaries[pos])
    return None
