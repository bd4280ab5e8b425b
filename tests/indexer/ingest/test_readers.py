"""Each reader turns a real file of its format (made here) into the text that is stored, its title
and its metadata, and refuses a file it cannot read with a reason a user can act on."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from sample_files import (
    ARTICLE,
    HTML,
    MARKDOWN,
    MARKDOWN_TEXT,
    PAGE_ONE,
    PAGE_TWO,
    docx_bytes,
    encrypted_pdf,
    image_only_pdf,
    pdf_bytes,
)

from indexer.ingest.readers import Extracted, ReadError, reader_for, register, registry, supported_suffixes
from search.pages import page_of


def _read(name: str, data: bytes) -> Extracted:
    reader = reader_for(name)
    assert reader is not None, name
    return reader.read(data, name)


def test_a_two_page_pdf_keeps_its_page_starts() -> None:
    got = _read("guide.pdf", pdf_bytes())
    assert got.title == "Field guide"
    assert got.metadata["pages"] == 2
    starts = got.metadata["page_starts"]
    assert starts[0] == 0 and got.text[starts[1] :].startswith("Zeppelin")
    assert " ".join(got.text[: starts[1]].split()) == PAGE_ONE
    assert " ".join(got.text[starts[1] :].split()) == PAGE_TWO
    # The page a chunk starts on, as a search hit shows it.
    assert page_of(got.metadata, got.text.index("glacier")) == 1
    assert page_of(got.metadata, got.text.index("helium")) == 2


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (encrypted_pdf(), "encrypted PDF: it needs a password to be read"),
        (image_only_pdf(), "PDF of 1 pages without a text layer (scanned images?): run OCR on it first"),
        (b"%PDF-1.4\nthis is not really a PDF", "not a readable PDF"),
        (b"", "not a readable PDF"),
    ],
    ids=["encrypted", "image-only", "broken", "empty"],
)
def test_pdfs_that_cannot_be_read_say_why(data: bytes, reason: str) -> None:
    with pytest.raises(ReadError) as caught:
        _read("bad.pdf", data)
    assert caught.value.reason.startswith(reason)


def test_an_html_page_gives_its_main_text_title_and_language() -> None:
    got = _read("billing.HTML", HTML.encode())  # extensions in any case
    assert got.title == "Billing migration" and got.metadata == {"lang": "fr"}
    assert ARTICLE in got.text and "archived after a week" in got.text
    for noise in ("NAVLINK", "SCRIPTCODE", "STYLERULE", "FOOTERTEXT"):
        assert noise not in got.text


def test_a_page_without_main_text_is_refused_without_library_noise(caplog: pytest.LogCaptureFixture) -> None:
    # trafilatura logged "discarding data: None" at WARNING for each such page, between the CLI's own lines.
    caplog.set_level(logging.DEBUG)
    tiny = _read("tiny.html", b"<html><body><nav><a href='/'>Home</a></nav><p>Short note.</p></body></html>")
    assert "Short note." in tiny.text and tiny.title is None
    with pytest.raises(ReadError, match="no text found in the page's body"):
        _read("empty.html", b"<html><body><script>x = 1</script></body></html>")
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_a_docx_gives_headings_and_paragraphs_in_order() -> None:
    got = _read("travel.docx", docx_bytes())
    assert got.title == "Travel policy"
    assert got.text.split("\n\n") == [
        "Travel policy",
        "Booking",
        "Book trains at least two weeks ahead.",
        "Expenses",
        "Keep every receipt for the expense report.",
        "Meal allowance | 40 EUR",
    ]
    with pytest.raises(ReadError, match="not a readable DOCX file"):
        _read("broken.docx", b"PK not a zip")


def test_markdown_front_matter_is_metadata_and_markup_is_stripped() -> None:
    got = _read("leave.md", MARKDOWN.encode())
    assert got.title == "Leave policy"
    assert got.metadata == {
        "title": "Leave policy",
        "team": "hr",
        "year": 2024,
        "reviewed": "2024-03-01",  # a YAML date, as ISO 8601
        "tags": ["leave", "holidays"],
    }
    assert got.text == MARKDOWN_TEXT
    # No front matter: the first level-1 heading is the title.
    assert _read("n.markdown", b"Intro\n\n# Real *title*\n\nbody\n").title == "Real title"
    with pytest.raises(ReadError, match="front matter is not valid YAML"):
        _read("bad.md", b"---\ntitle: [unclosed\n---\nbody\n")
    with pytest.raises(ReadError, match=r"not UTF-8 \(byte 3\)"):
        _read("latin1.md", "caf\xe9".encode("latin-1"))


@pytest.fixture
def clean_registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(registry, "_BY_SUFFIX", dict(registry._BY_SUFFIX))
    monkeypatch.setattr(registry, "_BY_MEDIA_TYPE", dict(registry._BY_MEDIA_TYPE))
    yield


class CsvReader:
    suffixes = (".csv",)
    media_types = ("text/csv",)

    def read(self, data: bytes, name: str) -> Extracted:
        return Extracted(data.decode().replace(",", " "), None, {"rows": data.count(b"\n")})


@pytest.mark.usefixtures("clean_registry")
def test_a_reader_added_by_a_user_is_found_by_extension_and_media_type() -> None:
    assert reader_for("data.csv") is None and ".csv" not in supported_suffixes()
    register(CsvReader())
    assert isinstance(reader_for("DATA.CSV"), CsvReader)
    assert isinstance(reader_for("upload", "text/csv; charset=utf-8"), CsvReader)
    assert ".csv" in supported_suffixes()
    with pytest.raises(ValueError, match="lower case and start with a dot"):

        class Bad(CsvReader):
            suffixes = ("csv",)

        register(Bad())


def test_every_built_in_type_has_a_reader() -> None:
    assert supported_suffixes() == [
        ".docx",
        ".htm",
        ".html",
        ".markdown",
        ".md",
        ".pdf",
        ".rst",
        ".text",
        ".txt",
        ".xhtml",
    ]
    assert reader_for("x.pdf", None) is reader_for("blob", "application/pdf")
    assert reader_for("photo.png", "image/png") is None
