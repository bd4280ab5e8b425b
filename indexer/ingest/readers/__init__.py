"""Readers of document formats: each turns a file's bytes into text, a title and metadata.

`registry.py` holds the one list of supported types (by file extension and media type); a reader
is any object with the `Reader` protocol's attributes and `read` method, added with `register`."""

from indexer.ingest.readers.base import Extracted, Reader, ReadError
from indexer.ingest.readers.registry import reader_for, register, supported_suffixes

__all__ = ["Extracted", "ReadError", "Reader", "reader_for", "register", "supported_suffixes"]
