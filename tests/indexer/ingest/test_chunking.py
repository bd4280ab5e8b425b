"""Chunking: token windows with overlap, sentence-aware ends, offsets that cite the document exactly."""

from __future__ import annotations

from itertools import pairwise

import pytest

from indexer.ingest.chunking import Chunker
from search.embedding.encoder import Encoder
from search.embedding.space import chunk_input
from search.storage.records import DocumentIn

SENTENCES = [
    "The cat sat on the mat.",
    "A dog ran in the park with a big red ball.",
    "Patients in this study had a small risk of cancer.",
    "The sun and the moon and the star in the sky.",
    "Python can read a file line by line with a loop.",
]
LONG = " ".join(SENTENCES * 6)


def _tokens(encoder: Encoder, text: str) -> int:
    return len(encoder.tokenizer(text, add_special_tokens=False)["input_ids"])


def test_short_document_is_one_chunk(tiny_encoder: Encoder) -> None:
    doc = DocumentIn("a", "The cat sat on the mat.", "Pets")
    (chunks,) = Chunker(tiny_encoder, size=64, overlap=8).split([doc])
    assert len(chunks) == 1 and chunks[0].text == doc.text and (chunks[0].start, chunks[0].end) == (0, len(doc.text))


def test_long_document_windows(tiny_encoder: Encoder) -> None:
    doc = DocumentIn("long", LONG)
    (chunks,) = Chunker(tiny_encoder, size=40, overlap=8).split([doc])
    assert len(chunks) > 5
    assert [c.ordinal for c in chunks] == list(range(len(chunks)))
    for chunk in chunks:
        assert LONG[chunk.start : chunk.end] == chunk.text  # offsets cite the exact span
        assert _tokens(tiny_encoder, chunk.text) <= 40
    for prev, nxt in pairwise(chunks):
        assert nxt.start < prev.end, "neighbouring chunks overlap"
        assert nxt.start > prev.start
    assert chunks[0].start == 0 and chunks[-1].end == len(LONG.rstrip())
    # Windows prefer to stop at a sentence end.
    assert sum(c.text.endswith(".") for c in chunks[:-1]) >= len(chunks[:-1]) - 1


def test_title_shrinks_windows_to_fit_the_model(tiny_model_dir: str) -> None:
    encoder = Encoder(model=str(tiny_model_dir), max_length=48, dtype="float32", device="cpu")
    title = "the cat sat on the mat and the dog ran"
    (chunks,) = Chunker(encoder, size=256, overlap=4).split([DocumentIn("t", LONG, title)])
    for chunk in chunks:
        # Title, chunk and [CLS]/[SEP] all fit, so no chunk text is truncated away when embedded.
        assert _tokens(encoder, chunk_input(title, chunk.text)) + 2 <= 48


def test_disabled_chunking_and_bad_settings(tiny_encoder: Encoder) -> None:
    (chunks,) = Chunker(tiny_encoder, size=16, overlap=2, enabled=False).split([DocumentIn("x", LONG)])
    assert len(chunks) == 1 and chunks[0].text == LONG
    with pytest.raises(ValueError, match="overlap"):
        Chunker(tiny_encoder, size=16, overlap=16)
    assert chunk_input("", "body") == "body" and chunk_input("T", "body") == "T body"
