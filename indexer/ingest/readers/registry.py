"""The one list of supported document types: each reader under its extensions and media types.

A reader added with `register` is used by every door that reads files: `semsearch index` and
`add` on folders and files, and `POST /documents/upload`."""

from __future__ import annotations

from pathlib import PurePath

from indexer.ingest.readers.base import Reader
from indexer.ingest.readers.docx_reader import DocxReader
from indexer.ingest.readers.html_reader import HtmlReader
from indexer.ingest.readers.markdown_reader import MarkdownReader
from indexer.ingest.readers.pdf_reader import PdfReader
from indexer.ingest.readers.plain import PlainTextReader

_BY_SUFFIX: dict[str, Reader] = {}
_BY_MEDIA_TYPE: dict[str, Reader] = {}


def register(reader: Reader) -> None:
    """Read files with `reader` from now on, for its extensions and media types (replacing any earlier
    reader of the same ones)."""
    for suffix in reader.suffixes:
        if not suffix.startswith(".") or suffix != suffix.lower():
            raise ValueError(f"a reader's suffixes are lower case and start with a dot, got {suffix!r}")
        _BY_SUFFIX[suffix] = reader
    for media_type in reader.media_types:
        _BY_MEDIA_TYPE[media_type.lower()] = reader


def reader_for(name: str, media_type: str | None = None) -> Reader | None:
    """The reader of a file called `name` (by its extension, in any case), else of its media type
    (parameters such as `; charset=utf-8` ignored); None when neither is supported."""
    reader = _BY_SUFFIX.get(PurePath(name).suffix.lower())
    if reader is None and media_type:
        reader = _BY_MEDIA_TYPE.get(media_type.split(";", 1)[0].strip().lower())
    return reader


def supported_suffixes() -> list[str]:
    """Every extension a reader is registered for, sorted (for messages and help)."""
    return sorted(_BY_SUFFIX)


for _reader in (PlainTextReader(), MarkdownReader(), HtmlReader(), PdfReader(), DocxReader()):
    register(_reader)
