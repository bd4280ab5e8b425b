"""indexer.cli.main."""
