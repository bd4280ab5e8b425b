"""search.keyword.index."""
