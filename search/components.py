"""Building the core objects from one `Settings`: the encoder, the store and a ready searcher."""

from __future__ import annotations

from search.catalog import IndexCatalog, IndexWatcher
from search.encoder import Encoder
from search.searcher import Searcher
from search.settings import Settings
from search.store import Store


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
    )


def open_store(settings: Settings) -> Store:
    """The store at the settings' database URL, migrated to the newest schema."""
    return Store(settings.resolved_database_url)


def open_searcher(
    settings: Settings, encoder: Encoder | None = None, store: Store | None = None, watch: bool = False
) -> Searcher:
    """A searcher over the serving index generation (an empty index when nothing was indexed yet).

    With `watch`, it picks up every index the indexer publishes later, within `reload_seconds`."""
    encoder = encoder or make_encoder(settings)
    store = store or open_store(settings)
    watcher = IndexWatcher(
        IndexCatalog(store, settings.index_dir), encoder, settings.index_factory, settings.reload_seconds
    )
    return Searcher(encoder, watcher.load(), store, watcher if watch else None)
