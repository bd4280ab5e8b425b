"""`semsearch index` writing a document while API writes of the same id race it, on SQLite and on a real
PostgreSQL 15 server: the document ends as one of the writes left it."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from sqlalchemy import event

from indexer.ingest.chunking import Chunker
from indexer.write.pipeline import Indexer
from search.dense.catalog import IndexCatalog
from search.embedding.encoder import Encoder
from search.storage.records import DocumentIn
from search.storage.retry import retry_write
from search.storage.store import Store
from search.work.queue import enqueue

WRITERS, ROUNDS = 6, 6
SEED = DocumentIn("race", "the cat sat on the mat", "Title", {"writer": "seed"})


def _put_after_the_run_reads(store: Store, read: threading.Event) -> None:
    """When the index run (its "prepare" thread) has read the content hash, let the PUTs go, and keep
    the run from acting on what it read for a while: the PUTs write meanwhile, unless the read holds
    the row until the run's commit."""

    def after(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        by_the_run = threading.current_thread().name.startswith("prepare")
        reads_hash = statement.lstrip().upper().startswith("SELECT") and "content_hash" in statement
        if by_the_run and reads_hash and not read.is_set():
            read.set()
            time.sleep(0.2)

    event.listen(store.engine, "after_cursor_execute", after)


def test_an_index_run_racing_puts_of_one_id_leaves_one_writes_document(
    database_url: str, tmp_path: Path, tiny_encoder: Encoder
) -> None:
    # The index run resends the stored text with metadata of its own (a metadata-only update) while
    # the PUTs send new texts: the run's metadata must never end on a PUT's text.
    store = Store(database_url)
    indexer = Indexer(tiny_encoder, store, IndexCatalog(store, tmp_path / "index"), Chunker(tiny_encoder, 16, 2))
    read = threading.Event()
    _put_after_the_run_reads(store, read)

    def put(doc: DocumentIn) -> None:
        assert read.wait(timeout=30)
        retry_write(enqueue, store, [doc])

    for r in range(ROUNDS):
        indexer.run([SEED])
        read.clear()
        indexed = DocumentIn("race", SEED.text, "Title", {"writer": f"index-{r}"})
        puts = [
            DocumentIn("race", f"dogs ran in the park {n} {r}", "Title", {"writer": f"{n}-{r}"}) for n in range(WRITERS)
        ]
        with ThreadPoolExecutor(max_workers=WRITERS + 1) as pool:
            done = [pool.submit(indexer.run, [indexed]), *(pool.submit(put, doc) for doc in puts)]
            for future in done:
                future.result()
        doc = store.get_document("race")
        assert doc is not None
        won = {d.metadata["writer"]: d for d in [indexed, *puts]}[doc.meta["writer"]]
        assert (doc.text, doc.content_hash) == (won.text, won.content_hash), f"{doc.meta} on another write's text"
        indexer.resume()  # the PUTs' versions embedded: chunks of the text that won
        inputs = store.chunk_inputs(store.all_chunk_ids())
        assert inputs and all(text in won.text for _, text in inputs.values())
    store.close()
