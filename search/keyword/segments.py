"""The tantivy calls of writing the keyword index, for its one writer (indexer/write/keyword_writer.py):
an open index, changes staged on a writer, and a commit that records the applied seq inside the index."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import tantivy

from search.embedding.space import chunk_input
from search.keyword.index import KeywordIndex
from search.keyword.state import STATE_ID


class Segments:
    """The committed index opened for writing (created when missing); changes are staged until
    `commit`. The caller holds the cross-process writer lock: tantivy allows one writer per directory."""

    def __init__(self, keyword: KeywordIndex) -> None:
        self.keyword = keyword
        self.schema = keyword.schema
        self.index = keyword.open(create=True)
        self._staged: tantivy.IndexWriter | None = None
        # A process killed inside a commit leaves files the committed meta does not name; the next
        # commit may pick one of their names (a delete file is named by segment and opstamp) and fail
        # with "FileAlreadyExists". Removing them first makes that impossible.
        self._new_writer().garbage_collect_files()

    def _new_writer(self) -> tantivy.IndexWriter:
        # One indexing thread: the machines this runs on share their few cores with the encoder.
        return self.index.writer(heap_size=64_000_000, num_threads=1)

    def _writer(self) -> tantivy.IndexWriter:
        if self._staged is None:
            self._staged = self._new_writer()
        return self._staged

    def applied(self) -> int | None:
        """The seq the committed state says it has applied (None: never built)."""
        return self.keyword.applied_in(self.index)

    def count(self) -> int:
        """Chunks held (the state document is not one)."""
        return int(self.index.searcher().num_docs) - (self.applied() is not None)

    def clear(self) -> None:
        """Stage the removal of everything."""
        self._writer().delete_all_documents()

    def add(self, rows: Iterable[tuple[int, str, str]]) -> None:
        """Stage (chunk id, title, chunk text) rows."""
        writer = self._writer()
        for chunk_id, title, text in rows:
            doc = tantivy.Document()
            doc.add_unsigned("chunk_id", int(chunk_id))
            doc.add_text("text", self.keyword.analyzer.index_text(chunk_input(title, text)))
            writer.add_document(doc)

    def delete(self, chunk_ids: Sequence[int]) -> None:
        """Stage the removal of these chunks."""
        # A query, not delete_documents_by_term: that one makes a signed term, which never
        # matches the unsigned field.
        if chunk_ids:
            query = tantivy.Query.term_set_query(self.schema, "chunk_id", list(chunk_ids))
            self._writer().delete_documents_by_query(query)

    def commit(self, seq: int) -> None:
        """Record `seq` inside the index with what was staged, commit, and let merges finish (so
        segments stay few)."""
        writer = self._writer()
        self.delete([STATE_ID])
        state = tantivy.Document()
        state.add_unsigned("chunk_id", STATE_ID)
        state.add_unsigned("applied", seq)
        writer.add_document(state)
        writer.commit()
        writer.wait_merging_threads()  # consumes the writer: the next change stages on a new one
        self._staged = None
        self.index.reload()

    def held_of(self, chunk_ids: list[int]) -> list[int]:
        """Those of `chunk_ids` the committed index holds."""
        searcher = self.index.searcher()
        hits = searcher.search(self.keyword.among(chunk_ids), len(chunk_ids), count=False).hits
        return [int(i) for i in searcher.fast_field_values("chunk_id", [a for _, a in hits]) if i is not None]
