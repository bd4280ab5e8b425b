"""Collections: named corpora in one deployment, each with its own store, indexes and settings."""
