"""`POST /search/batch`'s work: its queries embedded and searched slice by slice (api/server/flow/slicing.py),
so that other clients' searches take their turns between its slices at the encoder and in the search
threads, and each slice's answer written as JSON in its search thread.

The answer is put together from those pieces: validating and writing thousands of hits at once, on
the event loop, stopped every other request for as long (half a second at 10,000 SciFact hits).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
from pydantic import TypeAdapter

from api.server.embeddings import embedded
from api.server.flow.batcher import MicroBatcher
from api.server.flow.search_threads import SearchThreads
from api.server.flow.slicing import in_slices, slice_size
from api.server.results import results
from api.server.schemas import SearchResult
from search.dense.catalog import Serving
from search.filters import MetadataFilter
from search.query.hits import Mode, at_least
from search.query.hybrid import HybridSearcher
from search.query.mmr import MMR

_LISTS = TypeAdapter(list[list[SearchResult]])


async def search_batch_json(
    hybrid: HybridSearcher,
    batcher: MicroBatcher,
    threads: SearchThreads,
    queries: Sequence[str],
    k: int,
    metadata_filter: MetadataFilter | None,
    mode: Mode,
    min_score: float | None = None,
    mmr: MMR | None = None,
) -> list[bytes]:
    """The hit lists of `queries`, in order, as pieces of one JSON array's items (`batch_body` joins
    them). Keyword mode spends no model time. Each slice is searched with the encoder and index that
    served when it was embedded."""
    slices_sent = 0

    async def embed(part: Sequence[str]) -> tuple[np.ndarray, Serving]:
        nonlocal slices_sent
        texts = list(part)
        # Only the first slice may be refused for a backlog at the encoder: past it, the request is in.
        pending = batcher.submit(texts, continuing=slices_sent > 0, bulk=True)
        slices_sent += 1
        return await embedded(pending, hybrid.dense, texts)

    async def search(part: Sequence[str], made: tuple[np.ndarray, Serving] | None) -> bytes:
        vectors, serving = made if made is not None else (None, None)
        return await threads.run(_slice_json, hybrid, part, vectors, k, metadata_filter, mode, serving, min_score, mmr)

    depth = k if mmr is None else mmr.fetch_k
    return await in_slices(queries, slice_size(depth), search, None if mode == "keyword" else embed)


def _slice_json(
    hybrid: HybridSearcher,
    queries: Sequence[str],
    vectors: np.ndarray | None,
    k: int,
    metadata_filter: MetadataFilter | None,
    mode: Mode,
    serving: Serving | None,
    min_score: float | None,
    mmr: MMR | None,
) -> bytes:
    """In a search thread: the slice's hit lists, each a JSON array, comma-separated. In hybrid mode
    the keyword side is ranked here too, in the same turn (ranked beside the embedding, as a single
    search does, it would take a second search thread)."""
    lists = hybrid.search_prepared(queries, vectors, k, metadata_filter, mode, serving, None, mmr)
    return _LISTS.dump_json([results(at_least(hits, min_score)) for hits in lists])[1:-1]


def batch_body(pieces: list[bytes], took_ms: float) -> bytes:
    """The BatchSearchResponse of the pieces of `search_batch_json`."""
    return b'{"results":[' + b",".join(pieces) + b'],"took_ms":' + json.dumps(took_ms).encode() + b"}"
