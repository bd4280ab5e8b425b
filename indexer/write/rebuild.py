"""Offline rebuilds: a new index generation is built beside the serving one and switched to atomically."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from typing import Literal, get_args

from indexer.write.embedding import embed_missing
from indexer.write.publisher import Publisher
from search.components import make_encoder, open_store
from search.dense.catalog import IndexCatalog
from search.dense.files import base_file_name
from search.dense.segments import build_base
from search.embedding.encoder import Encoder
from search.settings import Settings
from search.storage import changes
from search.storage.models import GenerationState, IndexGeneration
from search.storage.store import Store
from search.storage.vectors import VectorRows
from search.work import jobs

log = logging.getLogger(__name__)

Engine = Literal["local", "ray"]
ENGINES: tuple[str, ...] = get_args(Engine)


@dataclass
class RebuildSummary:
    """What a rebuild did."""

    generation: int
    factory: str
    vectors: int
    embedded: int
    reused: int
    seconds: float

    def as_dict(self) -> dict[str, int | float | str]:
        """JSON-ready."""
        return asdict(self)


def rebuild(
    settings: Settings,
    store: Store | None = None,
    encoder: Encoder | None = None,
    engine: Engine = "local",
    address: str | None = None,
    actors: int | None = None,
    block: int = 4096,
) -> RebuildSummary:
    """Build the index the settings describe (factory, model, pooling) from the stored vectors,
    embedding only chunks that have none in that embedding space, then switch readers to it.

    The embedding runs here (`engine="local"`) or on Ray Data (`"ray"`: the cluster at `address`, else a
    local instance; `actors` CPU actors where it has no GPUs), `block` chunks committed at a time.
    Interrupted at any point, it leaves the serving generation untouched; run again, it keeps every
    vector already committed and starts the build afresh."""
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    if engine == "ray":
        # Imported here: Ray is an optional extra. Missing, it fails before anything is touched.
        from indexer.write.ray_engine import require_ray

        require_ray()
    started = time.perf_counter()
    store = store or open_store(settings)
    encoder = encoder or make_encoder(settings)
    catalog = IndexCatalog(store, settings.index_dir)
    catalog.drop_inactive((GenerationState.BUILDING,))  # what an interrupted rebuild left behind
    factory = _factory(settings, store)
    publisher = Publisher(catalog, encoder, factory)
    rows = publisher.rows
    embedded = _embed(rows, settings, encoder, engine, address, actors, block)
    generation = catalog.create(encoder, factory, GenerationState.BUILDING)
    with store.session() as s:
        upto = changes.head(s)
        index = build_base(rows, factory, s, upto)
    generation.path, generation.base_seq = base_file_name(generation.id, upto), upto
    generation.vectors, generation.index_type = index.ntotal, index.resolved_factory
    index.save(catalog.path_of(generation))
    embedded += _switch(publisher, generation)
    summary = RebuildSummary(
        generation=generation.id,
        factory=index.resolved_factory,
        vectors=index.ntotal,
        embedded=embedded,
        reused=index.ntotal - embedded,
        seconds=round(time.perf_counter() - started, 2),
    )
    # Readers swap within reload_seconds; POSIX keeps a file they still map alive after the unlink,
    # and the grace spares one that read the old generation's row just before the switch.
    time.sleep(min(max(2 * settings.reload_seconds, 1.0), 10.0))
    catalog.drop_inactive((GenerationState.RETIRED,))
    return summary


def run_queued(settings: Settings, store: Store) -> bool:
    """Run the oldest rebuild another process queued (`semsearch rebuild` beside a running worker on
    SQLite), here, in the process that holds the indexing slot; True when one ran."""
    taken = jobs.claim(store, ("rebuild",))
    if taken is None:
        return False
    job_id, _kind, params = taken
    log.info("running queued rebuild %d: %s", job_id, params)
    try:
        summary = rebuild(settings.model_copy(update=params), store)
    except Exception as exc:  # the submitter reports it; the worker goes on
        log.exception("queued rebuild %d failed", job_id)
        jobs.finish(store, job_id, False, {"error": f"{type(exc).__name__}: {exc}"})
    else:
        jobs.finish(store, job_id, True, summary.as_dict())
    return True


REBUILD_FIELDS = ("index_factory", "model", "pooling")


def _embed(
    rows: VectorRows,
    settings: Settings,
    encoder: Encoder,
    engine: Engine,
    address: str | None,
    actors: int | None,
    block: int,
) -> int:
    """The bulk embedding stage: every chunk lacking a vector in the space (all of them after a model
    or pooling change). The catch-up at the switch stays local whatever the engine: it is small."""
    if engine == "ray":
        # Imported here: only this engine needs Ray, which is an optional extra.
        from indexer.write.ray_engine import ray_embed_missing

        return ray_embed_missing(rows, settings, address, block, actors)
    return embed_missing(rows, encoder, block)


def _factory(settings: Settings, store: Store) -> str:
    """The index type asked for (flag or SEMSEARCH_INDEX_FACTORY), else the serving generation's."""
    active = store.active_generation()
    if "index_factory" in settings.model_fields_set or active is None:
        return settings.index_factory
    return active.factory


def _switch(publisher: Publisher, generation: IndexGeneration) -> int:
    """Make the new generation the serving one, under the publish lock; readers load its base and
    apply the change log after it, so what changed during the build reaches them. Returns the chunks
    embedded at the switch (documents embedded meanwhile with another model need this space's vectors)."""
    with publisher.locked() as s:
        embedded = embed_missing(publisher.rows, publisher.encoder)
        publisher.catalog.activate(s, generation)
    return embedded
