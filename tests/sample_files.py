"""Small real documents of each supported format, made by the tests themselves (no file is shipped):
a two-page PDF, an encrypted one and one without text, a page with navigation and scripts, a Word
file with headings, Markdown with front matter. Test modules import this as `sample_files`."""

from __future__ import annotations

import io

PAGE_ONE = "Alpine hiking starts with boots. Pack water for the glacier trail."
PAGE_TWO = "Zeppelin hangars store the airships. The balloon crew inspects helium valves."


def pdf_bytes(pages: tuple[str, ...] = (PAGE_ONE, PAGE_TWO), title: str | None = "Field guide") -> bytes:
    """A PDF with one page per text (fpdf2), each page's text in its text layer."""
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_font("Helvetica", size=12)
    for text in pages:
        pdf.add_page()
        pdf.multi_cell(0, 8, text)
    if title:
        pdf.set_title(title)
    return bytes(pdf.output())


def image_only_pdf() -> bytes:
    """A PDF whose page holds only a drawing (as a scan holds only an image): no text layer."""
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    pdf.rect(20, 20, 100, 60, style="F")
    return bytes(pdf.output())


def encrypted_pdf(password: str = "s3cret") -> bytes:
    """A two-page PDF that opens only with `password` (pypdf's AES encryption)."""
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(pdf_bytes())))
    writer.encrypt(user_password=password, algorithm="AES-128")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


ARTICLE = "The quarterly review covers the migration of the billing service to the new cluster."
HTML = f"""<!doctype html>
<html lang="fr"><head><meta charset="utf-8"><title>Billing migration</title>
<style>body {{ font-family: STYLERULE; }}</style>
<script>window.tracker = "SCRIPTCODE";</script></head>
<body>
<nav><ul><li><a href="/">Home NAVLINK</a></li><li><a href="/team">Team NAVLINK</a></li>
<li><a href="/blog">Blog NAVLINK</a></li></ul></nav>
<main><article><h1>Billing migration</h1>
<p>{ARTICLE}</p>
<p>Every invoice job moved without downtime, and the old database was archived after a week of checks.</p>
<p>The team thanks the operators who watched the dashboards through the weekend of the switch.</p>
</article></main>
<footer>Copyright FOOTERTEXT 2026</footer>
<script>console.log("SCRIPTCODE2")</script>
</body></html>"""


def docx_bytes() -> bytes:
    """A Word document: a title, two headings with paragraphs under them, and a small table."""
    import docx

    document = docx.Document()
    document.add_heading("Travel policy", level=0)
    document.add_heading("Booking", level=1)
    document.add_paragraph("Book trains at least two weeks ahead.")
    document.add_heading("Expenses", level=2)
    document.add_paragraph("Keep every receipt for the expense report.")
    table = document.add_table(rows=1, cols=2)
    table.rows[0].cells[0].text = "Meal allowance"
    table.rows[0].cells[1].text = "40 EUR"
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


MARKDOWN = """---
title: Leave policy
team: hr
year: 2024
reviewed: 2024-03-01
tags: [leave, holidays]
---
# Leave *policy*

Everyone gets **25 days** of paid leave. Ask via [the form](https://intranet.example/leave).

## Carry over

- Up to `5` days carry over
- Until the end of <b>March</b>
"""
MARKDOWN_TEXT = (
    "Leave policy\n\nEveryone gets 25 days of paid leave. Ask via the form.\n\nCarry over\n\n"
    "Up to 5 days carry over\n\nUntil the end of March"
)
