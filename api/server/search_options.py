"""The search request's options beyond a query text: maximal marginal relevance, and a query given as
a vector (search/query/mmr.py holds the algorithm and its bounds; the serving model's dimension is
checked where it is known, in the route)."""

from __future__ import annotations

from typing import Annotated

import numpy as np
from fastapi import HTTPException
from pydantic import BaseModel, ConfigDict, Field

from api.server.flow.search_threads import SearchThreads
from search.filters import MetadataFilter
from search.query.hits import HybridHit
from search.query.hybrid import Arrange, HybridSearcher
from search.query.mmr import MAX_FETCH_K, MMR

# Wider than any sentence-embedding model's vectors; the model's own dimension is checked per request.
MAX_VECTOR_DIM = 8192

FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]

VECTOR_DOC = (
    "The query as a vector, instead of `query`: the serving model's dimension (GET /stats), finite numbers; "
    "it is L2-normalised, so scores are cosines. Dense mode only (the default with a vector)."
)


class MMRRequest(BaseModel):
    """Diversify the page by maximal marginal relevance."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid")

    lambda_: float = Field(
        default=0.5,
        alias="lambda",
        ge=0.0,
        le=1.0,
        description="Relevance against novelty: 1 is the plain order, 0 the most diverse page.",
    )
    fetch_k: int = Field(
        default=20,
        ge=1,
        le=MAX_FETCH_K,
        description="The candidates MMR picks top_k among (at least top_k); in a batch, queries x fetch_k "
        "count against SEMSEARCH_SEARCH_MAX_HITS.",
    )

    def settings(self) -> MMR:
        """The algorithm's settings."""
        return MMR(lambda_=self.lambda_, fetch_k=self.fetch_k)


MMR_DOC = (
    "Re-rank the fetch_k best documents by maximal marginal relevance (relevance: the hit's score; novelty: "
    "the stored vectors of the chunks shown), in any mode."
)


def query_vector(vector: list[float], dim: int, model: str) -> np.ndarray:
    """The request's `vector` as the unit vector searched with; a 422 naming it when it does not fit
    the serving model or has no direction."""
    if len(vector) != dim:
        raise HTTPException(
            422,
            f"vector has {len(vector)} numbers, but the serving model {model!r} makes {dim}-dimensional vectors",
        )
    array = np.asarray(vector, dtype=np.float64)
    largest = float(np.abs(array).max())
    if largest == 0.0:
        raise HTTPException(422, "vector is all zeros: it has no direction to search in")
    array /= largest  # first, so that squaring huge numbers cannot overflow
    return (array / np.linalg.norm(array)).astype(np.float32)


async def search_by_vector(
    hybrid: HybridSearcher,
    threads: SearchThreads,
    vector: list[float],
    k: int,
    metadata_filter: MetadataFilter | None,
    mmr: MMR | None,
    arrange: Arrange | None = None,
) -> list[HybridHit]:
    """The `k` best documents for a query vector, in the space of the pair serving now (no model time),
    made into the page shown by `arrange` when given."""
    serving = hybrid.dense.serving
    query = query_vector(vector, serving.encoder.dim, serving.encoder.model_name)
    found = await threads.run(
        hybrid.search_prepared, [""], query[np.newaxis], k, metadata_filter, "dense", serving, None, mmr, arrange
    )
    return found[0]
