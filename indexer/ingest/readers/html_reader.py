"""HTML: the page's main content (trafilatura), without navigation, scripts, styles or footers."""

from __future__ import annotations

import logging
from typing import Any

from indexer.ingest.readers.base import Extracted, ReadError


class HtmlReader:
    """The main text of a page, paragraphs and headings one a line; `<title>` as the title and the
    `lang` the page declares as metadata `lang`."""

    suffixes = (".html", ".htm", ".xhtml")
    media_types = ("text/html", "application/xhtml+xml")

    def read(self, data: bytes, name: str) -> Extracted:
        """The main content; a page where none is found is refused."""
        import lxml.html
        import trafilatura
        from lxml.etree import ParserError

        # trafilatura logs its heuristics' steps ("discarding data") at WARNING; the outcome is what matters.
        logging.getLogger("trafilatura").setLevel(logging.ERROR)

        try:
            # lxml honours the page's declared charset (and falls back to guessing from the bytes).
            tree = lxml.html.document_fromstring(data)
        except (ParserError, ValueError) as exc:
            raise ReadError(f"not a readable HTML page ({exc})") from exc
        title = (tree.findtext(".//title") or "").strip() or None
        lang = (tree.get("lang") or tree.get("{http://www.w3.org/XML/1998/namespace}lang") or "").strip()
        text = _main_text(trafilatura, tree)
        if not text:
            raise ReadError("no text found in the page's body")
        meta: dict[str, Any] = {"lang": lang} if lang else {}
        return Extracted(text, title, meta)


def _main_text(trafilatura: Any, tree: Any) -> str:
    """The main content by trafilatura's boilerplate heuristics, else (a page too small or odd for
    them) everything it finds with recall favoured."""
    for favor_recall in (False, True):
        text = trafilatura.extract(
            tree, include_comments=False, include_tables=True, favor_recall=favor_recall, deduplicate=False
        )
        if text and text.strip():
            return str(text).strip()
    return ""
