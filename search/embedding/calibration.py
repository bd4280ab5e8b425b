"""The texts int8 quantization is calibrated on (search/embedding/openvino_quantize.py) and their model inputs.

Written here, not fetched: a few hundred short English sentences on everyday, technical and scientific
topics, as questions, statements and numbers, plus paragraphs of them up to a chunk's length, so that the
activation ranges seen cover short queries and long chunks alike. Generated from the word lists below
(free of any licence), deterministically: the same texts in every process, so the cache key holds."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from search.embedding.tokenization import WordPieces

_SUBJECTS = [
    "The new vaccine",
    "A small bakery in the old town",
    "The city council",
    "Our database server",
    "The patient's blood pressure",
    "A team of marine biologists",
    "The train to the airport",
    "My grandmother's recipe",
    "The latest software update",
    "A sudden storm",
    "The protein complex",
    "The football club",
    "An independent bookshop",
    "The solar panel array",
    "The central bank",
    "A young violinist",
    "The clinical trial",
    "The river delta",
    "This search engine",
    "The mountain village",
]
_VERBS = [
    "reduced",
    "doubled",
    "was linked to",
    "depends on",
    "slowly changed",
    "did not affect",
    "is expected to improve",
    "failed to explain",
    "quickly replaced",
    "was compared with",
    "measured",
    "may increase",
]
_OBJECTS = [
    "the risk of infection in older adults",
    "the price of bread last winter",
    "traffic on the northern bridge",
    "the number of queries per second",
    "gene expression in liver cells",
    "the migration of whales along the coast",
    "delays during the holiday season",
    "the amount of sugar in the dough",
    "memory use on small laptops",
    "flooding in low-lying streets",
    "the binding of the enzyme to its target",
    "ticket sales for the final match",
    "interest in printed poetry",
    "electricity costs for the school",
    "inflation over the next two years",
    "the tempo of the second movement",
    "hospital admissions for heart failure",
    "sediment carried to the sea",
    "the ranking of relevant documents",
    "the supply of fresh water",
]
_TAILS = [
    ".",
    ", according to a report published on Tuesday.",
    " after 12 weeks of treatment (p < 0.05).",
    ", but the effect was small.",
    " in 3 of the 5 regions studied.",
    "; nobody knows why yet.",
    " by roughly 40 percent since 2019.",
    ", which surprised most observers.",
]
_QUESTIONS = [
    "How do I reset my router to factory settings?",
    "What causes the northern lights?",
    "Is coffee bad for your heart?",
    "Where can I find cheap flights to Lisbon?",
    "Why does bread go stale?",
    "Which vitamins help the immune system?",
    "How long should I boil an egg?",
    "What is the capital of Australia?",
    "Does exercise lower blood sugar?",
    "How can I speed up a slow SQL query?",
    "When was the printing press invented?",
    "What does a mitochondrion do?",
    "Can dogs eat grapes?",
    "How many people live in Tokyo?",
    "What is the difference between a virus and a bacterium?",
    "how to fix a leaking tap",
    "best hiking trails near the lake",
    "python read csv file into list",
    "symptoms of vitamin D deficiency",
    "error 404 page not found meaning",
]


def calibration_texts() -> list[str]:
    """About 300 texts: 240 sentences, 20 questions and queries, and 40 paragraphs of 4 to 18 sentences."""
    sentences = []
    for i in range(240):
        subject = _SUBJECTS[i % len(_SUBJECTS)]
        verb = _VERBS[(i * 7) % len(_VERBS)]
        obj = _OBJECTS[(i * 3 + i // len(_SUBJECTS)) % len(_OBJECTS)]
        sentences.append(f"{subject} {verb} {obj}{_TAILS[(i * 5) % len(_TAILS)]}")
    paragraphs = []
    for p in range(40):
        size = 4 + p % 15
        paragraphs.append(" ".join(sentences[(p * 11 + k * 17) % len(sentences)] for k in range(size)))
    return sentences + _QUESTIONS + paragraphs


@dataclass(frozen=True)
class Calibration:
    """What an int8 model is calibrated on: `stamp` names everything beside the float model that the
    result depends on (the texts, the tokenizer's length limit, the pooling), for the cache key; `inputs`
    makes the model inputs (called only when a quantized model is not yet cached)."""

    stamp: str
    inputs: Callable[[], list[list[np.ndarray]]]


def calibration(pieces: WordPieces, max_length: int, pooling: str) -> Calibration:
    """The calibration of a model with word pieces `pieces` (already truncated at `max_length`)."""
    texts = calibration_texts()
    digest = hashlib.sha256("\n".join(texts).encode()).hexdigest()[:16]
    return Calibration(stamp=f"{digest}-{max_length}-{pooling}", inputs=lambda: model_inputs(pieces, texts))


def model_inputs(pieces: WordPieces, texts: list[str]) -> list[list[np.ndarray]]:
    """[input_ids, attention_mask] of each text alone: no padding, so no padding token's activations
    widen the ranges that the quantization parameters are fitted to."""
    rows = pieces.ids(texts)
    return [[np.asarray([row], dtype=np.int64), np.ones((1, len(row)), dtype=np.int64)] for row in rows]
