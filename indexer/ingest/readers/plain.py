"""Plain text (.txt, .rst): the file's text as it is."""

from __future__ import annotations

from indexer.ingest.readers.base import Extracted, decode_utf8


class PlainTextReader:
    """UTF-8 text, stored unchanged; the title is the file name's stem (set by the caller)."""

    suffixes = (".txt", ".text", ".rst")
    media_types = ("text/plain", "text/x-rst")

    def read(self, data: bytes, name: str) -> Extracted:
        """The text as it is."""
        return Extracted(decode_utf8(data))
