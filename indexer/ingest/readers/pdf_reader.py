"""PDF: the text layer of every page (pypdf), with each page's start offset kept in the metadata."""

from __future__ import annotations

import logging

from indexer.ingest.readers.base import Extracted, ReadError
from search.pages import PAGE_STARTS

# Pages are joined by a blank line: a chunk that crosses one still reads as two paragraphs.
PAGE_BREAK = "\n\n"


class PdfReader:
    """Text per page in reading order; an encrypted PDF is opened with the empty password (as viewers
    do), else refused; one with no text at all (scanned images) is refused, naming OCR."""

    suffixes = (".pdf",)
    media_types = ("application/pdf",)

    def read(self, data: bytes, name: str) -> Extracted:
        """The pages' text joined by blank lines; metadata `pages` (the count) and `page_starts`."""
        import io

        from pypdf import PdfReader as Pdf
        from pypdf.errors import FileNotDecryptedError, PdfReadError

        # pypdf logs every oddity it repairs; the outcome is what matters here.
        logging.getLogger("pypdf").setLevel(logging.ERROR)
        try:
            pdf = Pdf(io.BytesIO(data))
            if pdf.is_encrypted and not pdf.decrypt(""):
                raise ReadError("encrypted PDF: it needs a password to be read")
            pages = [page.extract_text() or "" for page in pdf.pages]
            title = pdf.metadata.title if pdf.metadata else None
        except FileNotDecryptedError as exc:
            raise ReadError("encrypted PDF: it needs a password to be read") from exc
        except (PdfReadError, ValueError, KeyError, TypeError, AttributeError, IndexError, OSError) as exc:
            if isinstance(exc, ReadError):
                raise
            raise ReadError(f"not a readable PDF ({type(exc).__name__}: {exc})") from exc
        if not any(page.strip() for page in pages):
            raise ReadError(f"PDF of {len(pages)} pages without a text layer (scanned images?): run OCR on it first")
        starts, offset = [], 0
        for page in pages:
            starts.append(offset)
            offset += len(page) + len(PAGE_BREAK)
        text = PAGE_BREAK.join(pages)
        return Extracted(text, title or None, {"pages": len(pages), PAGE_STARTS: starts})
