"""Work handed between processes: the queue of documents to embed, jobs for the indexing slot, the worker's state."""
