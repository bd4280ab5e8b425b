"""semsearch api."""
