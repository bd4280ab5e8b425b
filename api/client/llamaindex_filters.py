"""LlamaIndex metadata filters as the server's filter (api/client/llamaindex.py)."""

from __future__ import annotations

from typing import Any

from llama_index.core.vector_stores.types import FilterCondition, FilterOperator, MetadataFilter, MetadataFilters

_OPERATORS = {
    FilterOperator.GT: "$gt",
    FilterOperator.GTE: "$gte",
    FilterOperator.LT: "$lt",
    FilterOperator.LTE: "$lte",
}


def to_semsearch_filter(filters: MetadataFilters | None) -> dict[str, Any] | None:
    """LlamaIndex filters as the server's filter: ==, in, >, >=, <, <= joined by AND (nested ANDs too)."""
    if filters is None or not filters.filters:
        return None
    if filters.condition not in (None, FilterCondition.AND):
        raise ValueError(f"semsearch filters join conditions with AND only, not {filters.condition}")
    out: dict[str, Any] = {}
    for item in filters.filters:
        if isinstance(item, MetadataFilters):
            for key, cond in (to_semsearch_filter(item) or {}).items():
                _merge_condition(out, key, cond)
            continue
        _merge_condition(out, item.key, _condition(item))
    return out


def _condition(item: MetadataFilter) -> Any:
    if item.operator == FilterOperator.EQ:
        return item.value
    if item.operator == FilterOperator.IN:
        return {"$in": list(item.value) if isinstance(item.value, list) else [item.value]}
    if item.operator in _OPERATORS:
        return {_OPERATORS[item.operator]: item.value}
    raise ValueError(
        f"filter on {item.key!r}: semsearch has no {item.operator.value!r} operator (==, in, >, >=, <, <=)"
    )


def _merge_condition(out: dict[str, Any], key: str, cond: Any) -> None:
    old = out.get(key)
    if old is None:
        out[key] = cond
    elif isinstance(old, dict) and isinstance(cond, dict) and not old.keys() & cond.keys():
        out[key] = {**old, **cond}  # e.g. year >= 2000 and year < 2010
    else:
        raise ValueError(f"filter on {key!r}: conditions {old!r} and {cond!r} cannot be combined")
