"""semsearch indexer."""
