"""semsearch migrations."""
