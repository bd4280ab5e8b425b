"""Word documents (.docx): paragraphs and headings in order, then table cells (python-docx)."""

from __future__ import annotations

import io

from indexer.ingest.readers.base import Extracted, ReadError


class DocxReader:
    """Each paragraph and heading a block of its own; the title is the document's Title property,
    else its first Title or Heading 1 paragraph."""

    suffixes = (".docx",)
    media_types = ("application/vnd.openxmlformats-officedocument.wordprocessingml.document",)

    def read(self, data: bytes, name: str) -> Extracted:
        """The body's text, one paragraph a block."""
        import zipfile

        import docx
        from docx.opc.exceptions import PackageNotFoundError

        try:
            document = docx.Document(io.BytesIO(data))
        except (PackageNotFoundError, zipfile.BadZipFile, KeyError, ValueError) as exc:
            raise ReadError(f"not a readable DOCX file ({type(exc).__name__}: {exc})") from exc
        blocks: list[str] = []
        heading: str | None = None
        for paragraph in document.paragraphs:
            text = paragraph.text.strip()
            if not text:
                continue
            style = paragraph.style.name if paragraph.style is not None else ""
            if heading is None and style in ("Title", "Heading 1"):
                heading = text
            blocks.append(text)
        for table in document.tables:
            for row in table.rows:
                cells = [cell.text.strip() for cell in row.cells]
                if any(cells):
                    blocks.append(" | ".join(cells))
        if not blocks:
            raise ReadError("no text in the document")
        return Extracted("\n\n".join(blocks), document.core_properties.title or heading)
