"""What hybrid retrieval answers and is told: the modes, a ranked document with each retriever's say,
the keyword side ranked ahead of the vectors, and the fusion's settings (search/query/hybrid.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from search.query.planning import RequestPlan
from search.query.searcher import Ranked
from search.settings import Fusion, Settings

Mode = Literal["hybrid", "dense", "keyword"]
MODES: tuple[str, ...] = get_args(Mode)


@dataclass(frozen=True)
class Signal:
    """What one retriever said of a document: its rank (from 1) and its score there."""

    rank: int
    score: float


@dataclass(frozen=True)
class HybridHit:
    """One ranked document: its fused score, the chunk shown, each retriever's say (None: it did not
    return the document, or did not run), the words of the chunk that match the query's terms, and
    the page the chunk starts on where its document is paged (search/pages.py), else None."""

    id: str
    chunk_id: int
    score: float
    title: str
    text: str
    metadata: dict[str, object]
    start: int
    end: int
    dense: Signal | None
    keyword: Signal | None
    matched_terms: list[str]
    page: int | None = None


@dataclass(frozen=True)
class Fused:
    """A document in a fused ranking before its row is read: the chunk shown, the fused score, and
    each retriever's say."""

    chunk: Ranked
    score: float
    dense: Signal | None
    keyword: Signal | None


@dataclass(frozen=True)
class KeywordSide:
    """The keyword retriever's part of a hybrid request, ranked before the query vectors exist (it
    needs none), so the API runs it while the queries are embedded."""

    plan: RequestPlan
    terms: list[list[str]]
    rankings: list[list[Ranked]]


@dataclass(frozen=True)
class FusionConfig:
    """How the two rankings are combined."""

    method: Fusion = "bounded"
    weight: float = 0.5  # bounded and convex: the dense score's weight
    rrf_k: int = 60
    candidates: int = 100

    @classmethod
    def from_settings(cls, settings: Settings) -> FusionConfig:
        """The fusion the settings describe."""
        return cls(settings.fusion, settings.fusion_weight, settings.rrf_k, settings.candidates)


def at_least(hits: list[HybridHit], min_score: float | None) -> list[HybridHit]:
    """The hits scoring `min_score` or more (all of them for None): what a threshold keeps, with the
    same meaning whatever else matched, since a score is the document's own (search/query/signals.py)."""
    return hits if min_score is None else [hit for hit in hits if hit.score >= min_score]


def check_mode(mode: str) -> Mode:
    """`mode` when it is one of MODES; else a ValueError naming the allowed values."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    return mode  # type: ignore[return-value]
