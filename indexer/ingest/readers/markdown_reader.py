"""Markdown: YAML front matter becomes metadata, the body is stored as plain text.

Headings, paragraphs, list items, table rows and code blocks each stay a block of their own (blank
lines between), so chunks still end at section boundaries; the markup (`#`, `*`, links' targets,
HTML tags) is left out, so neither the embedding nor a snippet carries it, and a chunk's offsets
point into exactly the text that `GET /documents/{id}` serves."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from indexer.ingest.readers.base import Extracted, ReadError, decode_utf8, plain_values

_TAG = re.compile(r"<!--.*?-->|<[^>]*>", re.DOTALL)
# Blocks whose inline text is one block of the output; a table row joins its cells.
_BLOCK_ENDS = frozenset({"paragraph_close", "heading_close"})


class MarkdownReader:
    """CommonMark with tables (markdown-it-py), front matter read by python-frontmatter."""

    suffixes = (".md", ".markdown")
    media_types = ("text/markdown", "text/x-markdown")

    def read(self, data: bytes, name: str) -> Extracted:
        """The body as plain text; the title is the front matter's `title`, else the first `#` heading."""
        import frontmatter
        import yaml

        source = decode_utf8(data)
        try:
            meta, body = frontmatter.parse(source)
        except yaml.YAMLError as exc:
            raise ReadError(f"the front matter is not valid YAML: {_first_line(exc)}") from exc
        text, heading = plain_text(body)
        title = meta.get("title")
        return Extracted(text, title if isinstance(title, str) else heading, plain_values(dict(meta)))


def plain_text(markdown: str) -> tuple[str, str | None]:
    """Markdown as plain text, one block per paragraph, heading, list item, table row or code
    block; and the text of the first level-1 heading, if any."""
    from markdown_it import MarkdownIt

    tokens = MarkdownIt("commonmark").enable("table").parse(markdown)
    blocks: list[str] = []
    pending: list[str] = []
    first_heading: str | None = None
    in_h1 = False
    for token in tokens:
        if token.type == "heading_open":
            in_h1 = token.tag == "h1"
        elif token.type == "inline":
            line = _inline(token.children or [])
            pending.append(line)
            if in_h1 and first_heading is None:
                first_heading = line.strip()
        elif token.type in ("fence", "code_block"):
            blocks.append(token.content.rstrip("\n"))
        elif token.type == "html_block":
            blocks.append(_TAG.sub("", token.content).strip())
        elif token.type in _BLOCK_ENDS or token.type == "tr_close":
            blocks.append((" | " if token.type == "tr_close" else " ").join(p for p in pending if p))
            pending = []
    return "\n\n".join(b for b in blocks if b.strip()), first_heading


def _inline(children: Sequence[Any]) -> str:
    """One block's inline tokens as text: emphasis, link targets and inline HTML left out."""
    out = []
    for child in children:
        if child.type in ("text", "code_inline"):
            out.append(child.content)
        elif child.type == "image":
            out.append(child.content)  # the alt text
        elif child.type == "softbreak":
            out.append(" ")
        elif child.type == "hardbreak":
            out.append("\n")
    return "".join(out)


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
