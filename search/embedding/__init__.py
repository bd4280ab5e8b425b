"""search.embedding."""
