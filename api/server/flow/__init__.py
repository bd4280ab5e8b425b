"""What bounds the work a request brings: the body size limit, the budget of hits a search may ask for,
the admission gate, the micro-batcher in front of the encoder and the search threads. Each answers
what it refuses itself (413, 422, 429, 503)."""
