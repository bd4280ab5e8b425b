"""Building the core objects from one `Settings`: the encoder, the store and a ready searcher."""

from __future__ import annotations

from search.catalog import IndexCatalog
from search.encoder import Encoder
from search.index import VectorIndex
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
    )


def open_store(settings: Settings) -> Store:
    """The store at the settings' database URL, migrated to the newest schema."""
    return Store(settings.resolved_database_url)


def open_searcher(settings: Settings, encoder: Encoder | None = None, store: Store | None = None) -> Searcher:
    """A searcher over the serving index generation (an empty index when nothing was indexed yet)."""
    encoder = encoder or make_encoder(settings)
    store = store or open_store(settings)
    opened = IndexCatalog(store, settings.index_dir).open_active(encoder, mmap=True)
    index = opened[0] if opened else VectorIndex(encoder.dim, settings.index_factory)
    return Searcher(encoder, index, store)
