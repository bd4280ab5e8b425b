"""Which page of its document a chunk starts on, for documents read from paged files (PDF).

Chunks carry only character offsets into their document's text; a paged document keeps, in its
metadata under PAGE_STARTS, the offset where each page's text starts (the PDF reader writes it).
A chunk's page is then derived where a hit is shown: no per-chunk column, and nothing to migrate."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Mapping
from itertools import pairwise
from typing import Any

PAGE_STARTS = "page_starts"


def page_of(metadata: Mapping[str, Any], start: int) -> int | None:
    """The page (from 1) holding the character at `start`, or None when the document has no page
    starts (or what is stored under the key is not an ascending list of integers)."""
    starts = metadata.get(PAGE_STARTS)
    if not isinstance(starts, list) or not starts:
        return None
    if not all(isinstance(s, int) and not isinstance(s, bool) for s in starts):
        return None
    if any(a > b for a, b in pairwise(starts)):
        return None
    return max(1, bisect_right(starts, start))
