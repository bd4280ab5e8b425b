"""indexer.ingest."""
