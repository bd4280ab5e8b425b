"""The write queue: documents written for the worker to embed, on SQLite and on a real PostgreSQL 15 server."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from sqlalchemy import event, select

from indexer.ingest.chunking import Chunker
from indexer.write.embedding import embed_pending
from search.embedding.encoder import Encoder
from search.embedding.space import chunk_input
from search.filters import parse_filter
from search.storage.models import MetadataValue
from search.storage.records import DocumentIn
from search.storage.retry import retry_write
from search.storage.store import Store
from search.storage.vectors import VectorRows
from search.work.queue import enqueue

THREADS, ROUNDS = 8, 6


def _widen_the_window(store: Store) -> None:
    """Sleep after every read of a document's content hash: a writer that decides from the hash it
    read (same text: update the metadata; new text: replace the document) then acts on it well after
    any racing writer has read the same hash, unless the read holds the row until the commit."""

    def after(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "content_hash" in statement:
            time.sleep(0.02)

    event.listen(store.engine, "after_cursor_execute", after)


def test_racing_puts_of_one_id_leave_one_writes_text_and_metadata(database_url: str, tiny_encoder: Encoder) -> None:
    # Each round starts from the same stored document; then half the writers resend its text with
    # new metadata (a metadata-only update) while half send new text, every write with metadata of
    # its own, all at once. Whatever the interleaving, the document must end as one of the writes
    # left it (the last of some serial order): that write's text, metadata and hash, its metadata
    # index, and once the worker has embedded it, chunks and vectors of that text.
    store = Store(database_url)
    seed = DocumentIn("race", "the cat sat on the mat", "Title", {"writer": "seed"})
    _widen_the_window(store)
    barrier = threading.Barrier(THREADS)

    def writer(write: DocumentIn) -> None:
        barrier.wait()  # all at once, for the widest race
        retry_write(enqueue, store, [write])

    for r in range(ROUNDS):
        enqueue(store, [seed])
        writes = {
            f"{n}-{r}": DocumentIn("race", seed.text if n % 2 else f"dogs ran in the park {n} {r}", "Title", meta)
            for n in range(THREADS)
            for meta in [{"writer": f"{n}-{r}"}]
        }
        with ThreadPoolExecutor(max_workers=THREADS) as pool:
            list(pool.map(writer, writes.values()))
        doc = store.get_document("race")
        assert doc is not None and doc.meta["writer"] in writes
        won = writes[doc.meta["writer"]]
        assert (doc.text, doc.content_hash) == (won.text, won.content_hash), f"{doc.meta} on another write's text"

    rows = VectorRows(store, tiny_encoder.space.key, tiny_encoder.dim)
    while embed_pending(rows, tiny_encoder, Chunker(tiny_encoder, 16, 2))[0]:
        pass
    chunk_ids = store.all_chunk_ids()
    inputs = store.chunk_inputs(chunk_ids)
    assert inputs and all(text in won.text for _, text in inputs.values())
    ids, vectors = rows.fetch(chunk_ids)
    assert ids.tolist() == chunk_ids
    expected = tiny_encoder.encode([chunk_input(*inputs[i]) for i in chunk_ids])
    np.testing.assert_allclose(vectors, expected, rtol=1e-4, atol=1e-5)
    # The metadata index holds the winner's value alone: a filter on it finds the chunks.
    assert store.matching_chunk_ids(parse_filter({"writer": won.metadata["writer"]})).tolist() == chunk_ids
    with store.session() as s:
        assert s.scalars(select(MetadataValue.key).where(MetadataValue.document_id == doc.id)).all() == ["writer"]
    store.close()
