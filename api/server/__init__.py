"""api.server."""
