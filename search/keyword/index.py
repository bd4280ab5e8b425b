"""The keyword index: BM25 over chunks (title + chunk text) in tantivy, a derived cache of SQL.

SQL is the source of truth. The writer (indexer/write/keyword_writer.py) applies the change log ("add"
and "del" of chunks, see search/storage/changes.py) from the seq it last applied, which it keeps
inside the index itself (a state document committed atomically with the terms), and afterwards
records in `derived_state` under "keyword" so that log compaction keeps the entries it still needs.
One process writes at a time; readers (this module) reload committed segments.

Deleted chunks leave results before the index hears of them: the searcher joins hits with the
chunk rows, and a hit without one is skipped."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import tantivy

from search.keyword.analyzer import Analyzer
from search.keyword.state import STATE_ID, held_ids

log = logging.getLogger(__name__)

NAME = "keyword"  # its derived_state row
# Bumped when what is indexed changes (analyzer, schema): a new directory is then built from SQL.
_FORMAT = 1
# tantivy's BM25 (its defaults): a term contributes idf * (1 + K1) * tf / (tf + K1 * length norm), so
# less than idf * (1 + K1) however often it occurs.
BM25_K1 = 1.2
# Allowed chunks up to this many are looked up one term each; more, as one term set, which walks the
# index's whole dictionary of chunk ids: a cost that grows with the corpus, paid back only by large sets.
_TERMS_AT_MOST = 4096


def _schema(tokenizer: str) -> tantivy.Schema:
    builder = tantivy.SchemaBuilder()
    builder.add_unsigned_field("chunk_id", indexed=True, fast=True)
    builder.add_unsigned_field("applied", stored=True)
    # Term frequencies without positions: BM25 needs no more, and the index stays smaller.
    builder.add_text_field("text", tokenizer_name=tokenizer, index_option="freq")
    return builder.build()


class KeywordIndex:
    """Where the index lives and how it is opened, and its reader side: `reload` (at most once per
    `reload_seconds` unless forced) and `search`. Written by indexer.write.keyword_writer."""

    def __init__(self, root: Path, language: str = "english", reload_seconds: float = 1.0) -> None:
        self.analyzer = Analyzer(language)
        self.root = root
        self.path = root / f"{language}-v{_FORMAT}"
        self.schema = _schema(self.analyzer.name)
        self.reload_seconds = reload_seconds
        self._reader: tantivy.Index | None = None
        self._checked = 0.0
        self._reload_lock = threading.Lock()
        # Why a built index could not be opened (None: open, or nothing built yet), for /health.
        self.open_error: str | None = None
        # Called when a request waits to see a write: a process that applies the change log to this
        # index itself (a server's keyword follower) sets it, to apply it now rather than at its tick.
        self.catch_up_now: Callable[[], None] = lambda: None

    def exists(self) -> bool:
        """True when a committed index is on disk."""
        return self.path.is_dir() and tantivy.Index.exists(str(self.path))

    def open(self, create: bool = False) -> tantivy.Index:
        """The committed index (created empty with `create` when missing)."""
        if self.exists():
            index = tantivy.Index.open(str(self.path))
        elif create:
            self.path.mkdir(parents=True, exist_ok=True)
            index = tantivy.Index(self.schema, path=str(self.path), reuse=False)
        else:
            raise FileNotFoundError(self.path)
        index.register_tokenizer(self.analyzer.name, self.analyzer.tantivy)
        index.config_reader(reload_policy="manual")
        return index

    def applied_in(self, index: tantivy.Index) -> int | None:
        """The seq `index`'s committed state says it has applied (None: never built)."""
        searcher = index.searcher()
        hits = searcher.search(tantivy.Query.term_query(self.schema, "chunk_id", STATE_ID), 1, count=False).hits
        if not hits:
            return None
        value = searcher.doc(hits[0][1]).get_first("applied")
        return None if value is None else int(value)

    def among(self, chunk_ids: list[int]) -> tantivy.Query:
        """A query matching the given chunk ids."""
        if len(chunk_ids) > _TERMS_AT_MOST:
            return tantivy.Query.term_set_query(self.schema, "chunk_id", chunk_ids)
        terms = [(tantivy.Occur.Should, tantivy.Query.term_query(self.schema, "chunk_id", i)) for i in chunk_ids]
        return tantivy.Query.boolean_query(terms)

    def committed(self) -> tuple[int | None, np.ndarray]:
        """What is committed now (opened afresh, not the served snapshot): the applied seq and every
        chunk id held; (None, no ids) when nothing was built."""
        if not self.exists():
            return None, np.empty(0, dtype=np.int64)
        index = self.open()
        return self.applied_in(index), held_ids(index.searcher(), self.schema)

    def reload_if_open(self) -> None:
        """After a commit in this process: its reader (if it has one) sees it at once."""
        if self._reader is not None:
            self.reload(force=True)

    def reload(self, force: bool = False) -> bool:
        """Pick up what was committed since the last look (at most once per interval unless
        `force`); returns True when an index is open. A failed reload (a writer's clean-up racing
        it) keeps the segments already served; a built index that cannot be opened is logged once
        and kept in `open_error` until it opens."""
        # Until an index exists every call looks for it (a stat); then, or while it fails to open,
        # once per interval.
        if (self._reader is not None or self.open_error) and not force and not self._due():
            return self._reader is not None
        with self._reload_lock:
            self._checked = time.monotonic()
            try:
                if self._reader is None:
                    self._reader = self.open()
                    self._opened()
                else:
                    self._reader.reload()
            except (FileNotFoundError, ValueError, OSError) as exc:
                self._not_reloaded(exc)
        return self._reader is not None

    def _due(self) -> bool:
        return time.monotonic() - self._checked >= self.reload_seconds

    def _opened(self) -> None:
        if self.open_error is not None:
            log.warning("keyword index %s opened: keyword and hybrid search use it again", self.path)
            self.open_error = None

    def _not_reloaded(self, exc: Exception) -> None:
        if self._reader is not None:
            log.warning("keyword index reload failed (serving the previous one): %s", exc)
        elif not self.exists():
            self.open_error = None  # nothing built yet: no results, and nothing wrong
        else:
            error = f"{type(exc).__name__}: {exc}"[:500]
            if error != self.open_error:  # once, not once a request
                log.error(
                    "keyword index %s cannot be opened (keyword search finds nothing and hybrid search "
                    "serves dense results alone until it can): %s",
                    self.path,
                    error,
                )
            self.open_error = error

    def applied(self, force: bool = False) -> int | None:
        """The seq the served snapshot has applied (None: nothing built yet); with `force`, what is
        committed now, which searches then serve."""
        self.reload(force)
        return None if self._reader is None else self.applied_in(self._reader)

    def bound(self, terms: Sequence[str]) -> float:
        """An upper bound of any chunk's BM25 for the query `terms`, from the index's statistics
        alone: each term's idf x (1 + k1), as tantivy scores it, summed (a repeated term counts
        again, as in the query). A term no chunk holds counts at its highest idf: no chunk matches
        the whole query then. 0.0 when nothing is served."""
        if not terms or not self.reload():
            return 0.0
        assert self._reader is not None
        searcher = self._reader.searcher()
        total = searcher.num_docs
        bound = 0.0
        for term in terms:
            held = searcher.doc_freq("text", term)
            bound += math.log(1.0 + (total - held + 0.5) / (held + 0.5)) * (1.0 + BM25_K1)
        return bound

    def search(self, terms: Sequence[str], limit: int, allowed: np.ndarray | None = None) -> list[tuple[int, float]]:
        """Up to `limit` (chunk id, BM25 score), best first, for the query `terms`; only among
        `allowed` chunk ids when given (the filter is inside the query, so nothing is crowded out)."""
        if not terms or limit <= 0 or (allowed is not None and not len(allowed)) or not self.reload():
            return []
        assert self._reader is not None
        searcher = self._reader.searcher()
        should = [(tantivy.Occur.Should, tantivy.Query.term_query(self.schema, "text", t)) for t in terms]
        query = tantivy.Query.boolean_query(should)
        if allowed is not None:
            # Scored 0: the filter selects, BM25 alone ranks.
            only = self.among([int(i) for i in allowed])
            query = tantivy.Query.boolean_query(
                [(tantivy.Occur.Must, query), (tantivy.Occur.Must, tantivy.Query.const_score_query(only, 0.0))]
            )
        hits = searcher.search(query, limit, count=False).hits
        ids = searcher.fast_field_values("chunk_id", [address for _, address in hits])
        return [(int(i), float(score)) for (score, _), i in zip(hits, ids, strict=True) if i is not None]
