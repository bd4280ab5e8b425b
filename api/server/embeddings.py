"""Query vectors from the shared batcher, and the OpenAI-compatible `/v1/embeddings` that exposes them.

`/v1/embeddings` answers the official `openai` Python client as it calls it: `encoding_format`
base64 (the client's default: each vector's little-endian float32 bytes) or float; `dimensions` only
where the model makes vectors of that length (its own: this model was not trained for shortened
vectors, so cutting them would not give usable embeddings); token-id inputs are a 422.
"""

from __future__ import annotations

import base64
from collections.abc import Awaitable

import numpy as np
from fastapi import APIRouter, HTTPException
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from api.server.bodies import BoundedRoute
from api.server.deps import AdmissionDep, BatcherDep, SearcherDep, SettingsDep
from api.server.flow.batcher import MicroBatcher, TextEncoder
from api.server.flow.slicing import SLICE_TEXTS
from api.server.openai_models import check_model
from api.server.schemas import MAX_EMBED_INPUTS, Embedding, EmbeddingsRequest, EmbeddingsResponse, Usage
from search.dense.catalog import Serving, follow
from search.embedding.encoder import Encoder
from search.query.searcher import Searcher

router = APIRouter(route_class=BoundedRoute)


async def embed(batcher: MicroBatcher, searcher: Searcher, texts: list[str]) -> tuple[np.ndarray, Serving]:
    """Vectors of `texts` from the shared batcher, with the encoder-and-index pair they belong to.

    The texts are queued a slice at a time (api/server/flow/slicing.py), so that other requests' texts
    go through the encoder between the slices: 512 SciFact abstracts queued at once held every single
    search behind them for 28 s. Should the serving encoder change between slices, the earlier
    slices are embedded again by the last one's, so that every vector is in one space."""
    parts = [texts[i : i + SLICE_TEXTS] for i in range(0, len(texts), SLICE_TEXTS)]
    made = []
    for i, part in enumerate(parts):
        # Only the first slice may be refused for a backlog at the encoder: past it, the request is in.
        made.append(await embedded(batcher.submit(part, continuing=i > 0, bulk=True), searcher, part))
    serving = made[-1][1]
    vectors = [
        v if s.encoder is serving.encoder else await run_in_threadpool(serving.encoder.encode, part)
        for part, (v, s) in zip(parts, made, strict=True)
    ]
    return np.concatenate(vectors), serving


async def embedded(
    pending: Awaitable[tuple[np.ndarray, TextEncoder]], searcher: Searcher, texts: list[str]
) -> tuple[np.ndarray, Serving]:
    """The vectors of `texts` queued with `MicroBatcher.submit`, with the pair they belong to."""
    vectors, made_by = await pending
    serving = searcher.serving
    # A generation with another model may have been swapped in meanwhile: the vectors are made again
    # by the serving encoder unless they are in its space (the batcher runs only Encoders here).
    encoder = follow(serving, made_by, lambda pair: pair.encoder) if isinstance(made_by, Encoder) else serving.encoder
    if encoder is not made_by:
        vectors = await run_in_threadpool(encoder.encode, texts)
    return vectors, serving


@router.post("/v1/embeddings", response_model=EmbeddingsResponse, summary="OpenAI-compatible embeddings")
async def embeddings(
    body: EmbeddingsRequest, searcher: SearcherDep, batcher: BatcherDep, admission: AdmissionDep, settings: SettingsDep
) -> Response:
    """The service's own vectors (same model, pooling and normalisation as the index); a `model` it
    does not answer to is a 404 (api/server/openai_models.py)."""
    check_model(body.model, searcher.serving.encoder.model_name, settings)
    texts = [body.input] if isinstance(body.input, str) else body.input
    if not texts or len(texts) > MAX_EMBED_INPUTS:
        raise HTTPException(422, f"'input' must hold 1 to {MAX_EMBED_INPUTS} texts, got {len(texts)}")
    dim = searcher.serving.encoder.dim
    if body.dimensions is not None and body.dimensions != dim:
        message = (
            f"'dimensions' is {body.dimensions}, but model {searcher.serving.encoder.model_name!r} makes "
            f"{dim}-dimensional vectors and was not trained for shorter ones: leave 'dimensions' out or send {dim}"
        )
        raise HTTPException(422, {"message": message, "param": "dimensions"})
    with admission.admit():
        vectors, serving = await embed(batcher, searcher, texts)
        return await run_in_threadpool(_embeddings_json, serving.encoder, texts, vectors, body.encoding_format)


def _embeddings_json(encoder: Encoder, texts: list[str], vectors: np.ndarray, encoding: str) -> Response:
    """The finished response. Counting tokens and validating and writing up to 2048 x 384 floats takes
    some 300 ms, which a coroutine route would spend on the event loop (FastAPI validates its return
    value there): here it is done in the thread pool, and a Response is returned as it is."""
    tokens = encoder.count_tokens(texts)
    data = np.ascontiguousarray(vectors, dtype="<f4")
    body = EmbeddingsResponse(
        data=[Embedding(index=i, embedding=_encoded(v, encoding)) for i, v in enumerate(data)],
        model=encoder.model_name,
        usage=Usage(prompt_tokens=tokens, total_tokens=tokens),
    )
    return Response(body.model_dump_json(), media_type="application/json")


def _encoded(vector: np.ndarray, encoding: str) -> list[float] | str:
    if encoding == "base64":
        return base64.b64encode(vector.tobytes()).decode("ascii")
    return vector.tolist()  # type: ignore[no-any-return]
