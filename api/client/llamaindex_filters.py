"""LlamaIndex `MetadataFilters` as the server's filter (api/client/llamaindex.py's stores and retriever)."""

from __future__ import annotations

from typing import Any

from llama_index.core.vector_stores.types import FilterCondition, FilterOperator, MetadataFilter, MetadataFilters

_OPERATORS = {
    FilterOperator.NE: "$ne",
    FilterOperator.GT: "$gt",
    FilterOperator.GTE: "$gte",
    FilterOperator.LT: "$lt",
    FilterOperator.LTE: "$lte",
    FilterOperator.IN: "$in",
    FilterOperator.NIN: "$nin",
}
_EXPRESSIBLE = "==, !=, >, >=, <, <=, in, nin, is_empty"


def to_semsearch_filter(filters: MetadataFilters | None) -> dict[str, Any] | None:
    """LlamaIndex filters as the server's filter: ==, !=, >, >=, <, <=, in, nin and is_empty, joined by
    AND, OR or NOT (none of them holds, as LlamaIndex reads it), nested to any depth the server allows.
    Both read a missing field alike: it passes != and nin. The server validates the result."""
    if filters is None:
        return None
    return _filters(filters)


def _filters(filters: MetadataFilters) -> dict[str, Any] | None:
    parts = [_filters(item) if isinstance(item, MetadataFilters) else _condition(item) for item in filters.filters]
    present = [part for part in parts if part]  # an empty MetadataFilters filters nothing out
    if not present:
        return None
    condition = filters.condition or FilterCondition.AND
    if condition == FilterCondition.NOT:
        return {"$not": present[0] if len(present) == 1 else {"$or": present}}
    if condition == FilterCondition.OR:
        return present[0] if len(present) == 1 else {"$or": present}
    if condition == FilterCondition.AND:
        return _all_of(present)
    raise ValueError(f"semsearch filters join conditions with AND, OR or NOT, not {condition}")


def _condition(item: MetadataFilter) -> dict[str, Any]:
    if item.operator == FilterOperator.EQ:
        return {item.key: item.value}
    if item.operator in (FilterOperator.IN, FilterOperator.NIN):
        values = list(item.value) if isinstance(item.value, list) else [item.value]
        return {item.key: {_OPERATORS[item.operator]: values}}
    if item.operator in _OPERATORS:
        return {item.key: {_OPERATORS[item.operator]: item.value}}
    if item.operator == FilterOperator.IS_EMPTY:
        # Absent, null or an empty list (lists and objects are never filterable: they count as absent), or "".
        return {"$or": [{item.key: {"$exists": False}}, {item.key: ""}]}
    raise ValueError(
        f"filter on {item.key!r}: semsearch has no {item.operator.value!r} operator ({_EXPRESSIBLE}); "
        "it filters on whole string, number and boolean values, not substrings or list members"
    )


def _all_of(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """`parts` in one object where their keys allow (e.g. year >= 2000 and year < 2010), else $and."""
    merged: dict[str, Any] = {}
    for part in parts:
        for key, cond in part.items():
            if key not in merged:
                merged[key] = cond
            elif _operators_apart(key, merged[key], cond):
                merged[key] = {**merged[key], **cond}
            else:
                return {"$and": parts}
    return merged


def _operators_apart(key: str, old: Any, cond: Any) -> bool:
    """Whether two conditions on field `key` are operator objects with no operator in common."""
    return not key.startswith("$") and isinstance(old, dict) and isinstance(cond, dict) and not old.keys() & cond.keys()
