"""semsearch search."""
