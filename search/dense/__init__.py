"""search.dense."""
