"""What bounds the work a request brings: the body size limit, the admission gate, the micro-batcher in
front of the encoder and the search threads. Each answers overload itself (413, 429, 503)."""
