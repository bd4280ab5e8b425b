"""Building the core objects from one `Settings`: the encoder, the store and a ready searcher."""

from __future__ import annotations

import threading
from collections.abc import Callable

from search.dense.catalog import IndexCatalog, IndexWatcher
from search.embedding.encoder import Encoder
from search.keyword.index import KeywordIndex
from search.query.hits import FusionConfig
from search.query.hybrid import HybridSearcher
from search.query.searcher import Searcher
from search.settings import Settings
from search.storage import schema
from search.storage.models import IndexGeneration
from search.storage.store import Store


def make_encoder(settings: Settings) -> Encoder:
    """The encoder the settings describe."""
    return Encoder(
        model=settings.model,
        pooling=settings.pooling,
        max_length=settings.max_length,
        device=settings.device,
        dtype=settings.dtype,
        batch_tokens=settings.batch_tokens,
        threads=settings.torch_threads,
        backend=settings.backend,
    )


# The settings that make an encoder: collections that agree on these share one in memory.
ENCODER_FIELDS = ("model", "pooling", "max_length", "device", "dtype", "batch_tokens", "torch_threads", "backend")


class EncoderPool:
    """One encoder per distinct model setup, shared by every collection that uses it (a model's
    weights are most of a server's memory)."""

    def __init__(self) -> None:
        self._made: dict[tuple[object, ...], Encoder] = {}
        self._lock = threading.Lock()

    def get(self, settings: Settings) -> Encoder:
        """The encoder of `settings`, made on first use."""
        key = tuple(getattr(settings, name) for name in ENCODER_FIELDS)
        with self._lock:
            if key not in self._made:
                self._made[key] = make_encoder(settings)
            return self._made[key]

    def add(self, settings: Settings, encoder: Encoder) -> None:
        """Share `encoder`, made elsewhere for `settings`."""
        with self._lock:
            self._made.setdefault(tuple(getattr(settings, name) for name in ENCODER_FIELDS), encoder)

    def __len__(self) -> int:
        return len(self._made)


def encoder_factory(settings: Settings, like: Encoder | None = None) -> Callable[[IndexGeneration], Encoder]:
    """Makes the encoder of a generation built with another model or pooling than the settings name
    (device, dtype and batch size as the settings say; the batch hook copied from `like`)."""

    def encoder_for(generation: IndexGeneration) -> Encoder:
        changed = {"model": generation.model, "pooling": generation.pooling, "max_length": generation.max_length}
        fresh = make_encoder(settings.model_copy(update=changed))
        fresh.on_batch = like.on_batch if like is not None else None  # e.g. the API's batch-size metric
        return fresh

    return encoder_for


def is_deployment(settings: Settings) -> bool:
    """Whether the settings' collection lives in the deployment's own database (`default` does)."""
    return settings.resolved_database_url == settings.deployment_database_url


def migrate(settings: Settings) -> str:
    """Bring the settings' database to the newest schema: once, as a writing command or the server
    starts, before it opens its stores. Returns the schema's revision."""
    store = Store(settings.resolved_database_url, upgrade=True, deployment=is_deployment(settings))
    try:
        return schema.revisions(store.engine, store.url)[0] or ""
    finally:
        store.close()


def open_store(settings: Settings) -> Store:
    """The store at the settings' database URL, not migrated: a SchemaBehindError when its schema is
    not the newest (`migrate` first); an empty database is created."""
    store = Store(settings.resolved_database_url, upgrade=False, deployment=is_deployment(settings))
    try:
        store.require_current_schema()
    except BaseException:
        store.close()
        raise
    return store


def open_searcher(
    settings: Settings, encoder: Encoder | None = None, store: Store | None = None, watch: bool = False
) -> Searcher:
    """A searcher over the serving index generation (an empty index when nothing was indexed yet).

    With `watch`, it picks up every index the indexer publishes later, within `reload_seconds`, and
    a generation rebuilt with another model or pooling comes with an encoder for it."""
    encoder = encoder or make_encoder(settings)
    store = store or open_store(settings)
    watcher = IndexWatcher(
        IndexCatalog(store, settings.index_dir),
        encoder,
        settings.index_factory,
        settings.reload_seconds,
        encoder_factory(settings, like=encoder) if watch else None,
    )
    serving = watcher.load()
    return Searcher(serving.encoder, serving.index, store, watcher if watch else None)


def open_keyword(settings: Settings) -> KeywordIndex:
    """The keyword index of the settings' data directory and analyzer language."""
    return KeywordIndex(settings.keyword_dir, settings.keyword_language, settings.reload_seconds)


def open_hybrid(
    settings: Settings, encoder: Encoder | None = None, store: Store | None = None, watch: bool = False
) -> HybridSearcher:
    """A searcher of every mode (hybrid, dense, keyword) over the dense searcher `open_searcher`
    gives and the keyword index, fused as the settings say."""
    dense = open_searcher(settings, encoder, store, watch)
    return HybridSearcher(dense, open_keyword(settings), FusionConfig.from_settings(settings))
