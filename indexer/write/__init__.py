"""indexer.write."""
