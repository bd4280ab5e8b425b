"""Which part of a relevance ranking a request sees: a page of it (`offset`, `top_k`), optionally
ordered by a metadata field (`sort`), with value counts of a few fields (`facets`).

Paging alone ranks `offset + top_k` documents by relevance and shows the last `top_k`: a ranking's
top documents do not depend on how many are asked for, so page 2 at top_k 10 is items 11-20 of
top_k 20. Sort and facets work on the relevance ranking's first SORT_CANDIDATES documents (those
matching the query and filter), not on every match: a dense search ranks every document, so
"every match" would be the whole corpus. A sorted page must lie within them (422 beyond).

Sort order, ascending: numbers (by value, ints and floats exactly), then false, true, then strings
(by Unicode code point, not a locale); descending is the exact reverse. A document without the
field, or with a value of another kind (null, a list, an object, NaN), comes last either way.
Documents with equal values keep their relevance order."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from search.filters import check_field
from search.query.hits import Fused
from search.storage.store import Store

# The documents, in relevance order, that sort and facets look at.
SORT_CANDIDATES = 1000
# Fields one request may count values of, and the values reported per field (most frequent first).
MAX_FACETS = 5
FACET_VALUES = 20

# Metadata of chunks by chunk id (the store's `chunk_owners(ids, metadata=True)`).
MetadataOf = Callable[[Sequence[int]], Mapping[int, Mapping[str, Any] | None]]
# A value's place in the sort order: its kind (numbers, booleans, strings), then the value.
_Key = tuple[int, Any]


@dataclass(frozen=True)
class SortKey:
    """Order by `field`, ascending unless `descending`."""

    field: str
    descending: bool = False


@dataclass(frozen=True)
class FacetCount:
    """How many of the candidates hold `value` in a field."""

    value: str | int | float | bool
    count: int


@dataclass(frozen=True)
class View:
    """The part of a ranking one query's answer shows, already validated (`view`)."""

    top_k: int = 10
    offset: int = 0
    sort: SortKey | None = None
    facets: tuple[str, ...] = ()

    @property
    def depth(self) -> int:
        """How many documents to rank by relevance for this view."""
        return SORT_CANDIDATES if self.sort is not None or self.facets else self.offset + self.top_k


def parse_sort(raw: str | Mapping[str, Any] | None) -> SortKey | None:
    """`{"field": "year", "order": "desc"}`, or its short form "-year" ("year": ascending); ValueError
    naming the problem otherwise. The field follows the rules of filter fields."""
    if raw is None:
        return None
    if isinstance(raw, str):
        descending = raw.startswith("-")
        name = raw[1:] if descending else raw
        check_field(name, "sort field")
        return SortKey(name, descending)
    if not isinstance(raw, Mapping) or set(raw) - {"field", "order"} or "field" not in raw:
        raise ValueError('sort must be {"field": NAME, "order": "asc"|"desc"} or a field name, "-NAME" for descending')
    order = raw.get("order", "asc")
    if order not in ("asc", "desc"):
        raise ValueError(f'sort order must be "asc" or "desc", not {order!r}')
    check_field(raw["field"], "sort field")
    return SortKey(raw["field"], order == "desc")


def view(
    top_k: int,
    offset: int = 0,
    sort: str | Mapping[str, Any] | SortKey | None = None,
    facets: Sequence[str] = (),
    max_hits: int | None = None,
) -> View:
    """A validated view; ValueError naming `offset`, `sort` or `facets` when one is out of bounds.
    `max_hits`: the most documents a relevance page may reach (`offset + top_k`)."""
    if top_k < 1:
        raise ValueError(f"top_k must be at least 1, got {top_k}")
    if offset < 0:
        raise ValueError(f"offset must be 0 or more, got {offset}")
    key = sort if isinstance(sort, SortKey) else parse_sort(sort)
    if len(facets) > MAX_FACETS:
        raise ValueError(f"facets names {len(facets)} fields; at most {MAX_FACETS} are allowed")
    for name in facets:
        check_field(name, "facets field")
    shown = View(top_k, offset, key, tuple(dict.fromkeys(facets)))
    bound: int | None = SORT_CANDIDATES
    why = f"sort and facets look at the {SORT_CANDIDATES} most relevant documents"
    if key is None and not facets:
        bound, why = max_hits, f"a search reaches at most {max_hits} documents deep (SEMSEARCH_SEARCH_MAX_HITS)"
    if bound is not None and offset + top_k > bound:
        raise ValueError(f"offset {offset} + top_k {top_k} = {offset + top_k} is past the limit of {bound}: {why}")
    return shown


@dataclass
class Pager:
    """Cuts each ranking a search makes down to `shown`'s page (sorted first when asked), keeping the
    facet counts of each, in query order: handed to HybridSearcher.search_prepared as `arrange`."""

    shown: View
    metadata_of: MetadataOf
    facets: list[dict[str, list[FacetCount]]] = field(default_factory=list)

    @classmethod
    def over(cls, store: Store, shown: View) -> Pager:
        """A pager reading the metadata it sorts and counts from `store` (one query per ranking)."""

        def metadata_of(chunk_ids: Sequence[int]) -> dict[int, dict[str, Any] | None]:
            return {cid: owner.metadata for cid, owner in store.chunk_owners(chunk_ids, metadata=True).items()}

        return cls(shown, metadata_of)

    def __call__(self, ranking: list[Fused]) -> list[Fused]:
        shown = self.shown
        if shown.sort is None and not shown.facets:
            self.facets.append({})
            return ranking[shown.offset : shown.offset + shown.top_k]
        rows = self.metadata_of([f.chunk.chunk_id for f in ranking])
        metas = [rows.get(f.chunk.chunk_id) or {} for f in ranking]
        self.facets.append({name: count_values(metas, name) for name in shown.facets})
        order = range(len(ranking)) if shown.sort is None else sort_order(metas, shown.sort)
        return [ranking[i] for i in order][shown.offset : shown.offset + shown.top_k]


def sort_key(value: object) -> _Key | None:
    """A metadata value's place in the sort order (see the module's doc); None: it sorts last."""
    if isinstance(value, bool):
        return (1, value)
    if isinstance(value, int | float):
        return (0, value) if math.isfinite(value) else None
    if isinstance(value, str):
        return (2, value)
    return None


def sort_order(metas: Sequence[Mapping[str, Any]], key: SortKey) -> list[int]:
    """Positions of `metas` (in relevance order) sorted by `key`'s field; ties keep relevance order
    (Python's sort is stable, reversed too), documents without a sortable value last."""
    keys = [sort_key(m.get(key.field)) for m in metas]
    present = [i for i, k in enumerate(keys) if k is not None]
    present.sort(key=lambda i: keys[i], reverse=key.descending)  # type: ignore[arg-type,return-value]
    return present + [i for i, k in enumerate(keys) if k is None]


def count_values(metas: Sequence[Mapping[str, Any]], name: str) -> list[FacetCount]:
    """The FACET_VALUES most frequent values of field `name` among `metas`, ties in sort order. Only
    values a filter can match by equality count (strings, finite numbers, booleans); 1 and 1.0 are one
    value, as they are to a filter, and true is not 1."""
    counts: Counter[_Key] = Counter()
    for meta in metas:
        key = sort_key(meta.get(name))
        if key is not None:
            counts[key] += 1
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:FACET_VALUES]
    return [FacetCount(value, count) for (_, value), count in ranked]
