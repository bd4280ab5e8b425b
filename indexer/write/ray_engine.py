"""The rebuild's embedding stage on Ray Data (`semsearch rebuild --engine ray`), for corpora that one
machine embeds too slowly. The only module that imports ray, and only when that engine is asked for.

The driver alone talks to SQL: it reads the chunks lacking a vector in blocks, ships their texts to
embedding actors (one per GPU, or CPU actors on a cluster without GPUs) and writes each block of
vectors back as it returns. So the cluster's nodes need the model and semsearch but no database
access, and an interruption keeps every block already written: a rerun embeds only the rest."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from search.components import make_encoder
from search.embedding.space import chunk_input
from search.settings import Settings
from search.storage.vectors import VectorRows

log = logging.getLogger(__name__)

RAY_MISSING = "--engine ray needs Ray: pip install 'semsearch[ray]'"


class RayMissingError(ImportError):
    """Ray (with Ray Data) is not installed."""


def require_ray() -> Any:
    """The `ray` module, with `ray.data` loaded; imported here so semsearch runs without it."""
    try:
        import ray
        import ray.data  # loads the submodule onto `ray`
    except ImportError as exc:
        raise RayMissingError(RAY_MISSING) from exc
    return ray


class ChunkEmbedder:
    """A Ray Data callable class: each actor builds its encoder once, then embeds batch after batch."""

    def __init__(self, settings: Settings) -> None:
        self.encoder = make_encoder(settings)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """{"chunk_id", "text"} -> {"chunk_id", "vector"}."""
        vectors = self.encoder.encode([str(t) for t in batch["text"]])
        return {"chunk_id": np.asarray(batch["chunk_id"], dtype=np.int64), "vector": vectors}


def ray_embed_missing(
    rows: VectorRows,
    settings: Settings,
    address: str | None = None,
    block: int = 4096,
    actors: int | None = None,
) -> int:
    """Embed the chunks that have no vector in the space on a Ray cluster (`address`; None or "local":
    a Ray instance on this machine, unless this process is connected to one already). Each returned
    block is committed as it arrives, so a rerun resumes. Returns the number of vectors written."""
    ray = require_ray()
    missing = rows.chunks_without_vectors()
    if not missing:
        return 0  # a change of index type only: no need to start or join a cluster
    written = 0
    with _connected(ray, address):
        dataset = _chunk_dataset(ray, rows, missing, block)
        options = _actor_options(ray, settings, actors, dataset.num_blocks())
        embedded = dataset.map_batches(ChunkEmbedder, batch_size=block, **options)
        batches = embedded.iter_batches(batch_size=None, batch_format="numpy")
        try:
            for batch in batches:
                written += _write(rows, batch)
                log.info("ray: %d of %d chunks embedded", written, len(missing))
        finally:
            # Ends the streaming execution now (and frees the actors' CPUs/GPUs) rather than at GC.
            close = getattr(batches, "close", None)
            if close is not None:
                close()
    return written


@contextmanager
def _connected(ray: Any, address: str | None) -> Iterator[None]:
    """Joins the cluster at `address` (or starts a local instance); disconnects only what it started,
    so a caller's own Ray session (the tests', an application's) stays up."""
    if ray.is_initialized():
        yield
        return
    if address in (None, "", "local"):
        ray.init(include_dashboard=False)
    else:
        ray.init(address=address)
    try:
        yield
    finally:
        ray.shutdown()


def _chunk_dataset(ray: Any, rows: VectorRows, chunk_ids: list[int], block: int) -> Any:
    """A dataset of {"chunk_id", "text"} rows, one Ray block per `block` chunks, read from SQL block
    by block and put in the object store (which spills to disk), so the driver holds one at a time."""
    import pyarrow as pa  # comes with ray[data]

    refs = []
    for start in range(0, len(chunk_ids), block):
        ids = chunk_ids[start : start + block]
        inputs = rows.store.chunk_inputs(ids)
        kept = [i for i in ids if i in inputs]  # a chunk deleted since the list was read is skipped
        # Exactly the text `embed_missing` embeds, so both engines give the same vectors.
        texts = [chunk_input(*inputs[i]) for i in kept]
        table = pa.table({"chunk_id": pa.array(kept, pa.int64()), "text": pa.array(texts, pa.string())})
        refs.append(ray.put(table))
    return ray.data.from_arrow_refs(refs)


def _actor_options(ray: Any, settings: Settings, actors: int | None, blocks: int) -> dict[str, Any]:
    """map_batches resources: one actor per GPU where the cluster has GPUs (and the settings do not
    ask for the CPU), else `actors` CPU actors (default one per CPU of the cluster); never more
    actors than blocks, as each loads the model for nothing to do."""
    # Workers get only what the encoder needs: no database URL (it may hold a password), no API key.
    worker = settings.model_copy(update={"database_url": None, "api_key": None})
    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    if gpus and not settings.device.startswith("cpu"):
        # Ray shows each actor only its own GPU (CUDA_VISIBLE_DEVICES), so a cuda:N setting would miss.
        worker = worker.model_copy(update={"device": "cuda"})
        count = min(gpus, blocks)
        log.info("ray: %d GPU embedding actors", count)
        return {"fn_constructor_args": (worker,), "concurrency": count, "num_gpus": 1}
    count = min(actors or max(1, int(resources.get("CPU", 1))), blocks)
    log.info("ray: %d CPU embedding actors", count)
    return {"fn_constructor_args": (worker,), "concurrency": count, "num_cpus": 1}


def _write(rows: VectorRows, batch: dict[str, np.ndarray]) -> int:
    """Commit one returned batch of vectors; returns how many."""
    ids, vectors = batch["chunk_id"], np.asarray(batch["vector"], dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[1] != rows.dim:
        # The actors' settings and the space's encoder disagree: stored, such bytes would be garbage.
        raise ValueError(f"ray actors returned vectors of shape {vectors.shape}, the space has dim {rows.dim}")
    rows.write([int(i) for i in ids], vectors)
    return len(ids)
