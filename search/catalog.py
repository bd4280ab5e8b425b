"""Index generations: which FAISS file serves, built with which model and pooling."""

from __future__ import annotations

from pathlib import Path

from search.encoder import Encoder
from search.index import VectorIndex
from search.models import IndexGeneration
from search.store import Store


class IndexMismatchError(RuntimeError):
    """The serving index was built with another model, pooling or dimension than the settings ask for."""


class IndexCatalog:
    """Opens, creates and publishes index generations; the store records them, files hold the vectors."""

    def __init__(self, store: Store, index_dir: Path) -> None:
        self.store = store
        self.index_dir = index_dir

    def path_of(self, generation: IndexGeneration) -> Path:
        """The file of a generation (paths are stored relative to the index directory)."""
        return self.index_dir / generation.path

    def open_active(self, encoder: Encoder, mmap: bool = False) -> tuple[VectorIndex, IndexGeneration] | None:
        """The serving index, checked against the encoder; None when nothing was indexed yet."""
        generation = self.store.active_generation()
        if generation is None:
            return None
        _check_compatible(generation, encoder)
        path = self.path_of(generation)
        if not path.exists():
            # A generation that never got its first save (the indexer stopped before it): start it empty.
            return VectorIndex(generation.dim, generation.factory), generation
        return VectorIndex.load(path, factory=generation.factory, mmap=mmap), generation

    def open_or_create(self, encoder: Encoder, factory: str) -> tuple[VectorIndex, IndexGeneration]:
        """The serving index, or a new empty generation for this encoder when there is none."""
        opened = self.open_active(encoder)
        if opened is not None:
            return opened
        generation = self.store.save_generation(
            IndexGeneration(
                path="",
                factory=factory,
                model=encoder.model_name,
                pooling=encoder.pooling,
                dim=encoder.dim,
                max_length=encoder.max_length,
                state="active",
                vectors=0,
            )
        )
        generation.path = f"gen-{generation.id:06d}.faiss"
        generation = self.store.save_generation(generation)
        return VectorIndex(encoder.dim, factory), generation

    def publish(self, index: VectorIndex, generation: IndexGeneration) -> IndexGeneration:
        """Save the index file atomically, then record its size and resolved type."""
        index.save(self.path_of(generation))
        generation.vectors = index.ntotal
        generation.factory = index.resolved_factory
        return self.store.save_generation(generation)


def _check_compatible(generation: IndexGeneration, encoder: Encoder) -> None:
    built = (generation.model, generation.pooling, generation.dim)
    wanted = (encoder.model_name, encoder.pooling, encoder.dim)
    if built != wanted:
        raise IndexMismatchError(
            f"the serving index (generation {generation.id}) was built with model {generation.model!r}, "
            f"{generation.pooling} pooling, dimension {generation.dim}; the settings ask for "
            f"{encoder.model_name!r}, {encoder.pooling} pooling, dimension {encoder.dim}. "
            "Run `semsearch rebuild` to re-embed, or change the settings back."
        )
