"""`POST /documents/upload`: a file read by the same readers as `semsearch index`, written like a PUT,
on SQLite and PostgreSQL. An unknown type is a 415, an unreadable file of a known type a 422 saying
why, a file over the body limit a 413; writes need the API key."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr
from sample_files import HTML, MARKDOWN, MARKDOWN_TEXT, PAGE_ONE, PAGE_TWO, encrypted_pdf, pdf_bytes

from api.server.app import create_app
from search.settings import Settings

AUTH = {"Authorization": "Bearer s3cret"}
PDF = "application/pdf"


@pytest.fixture
def client(settings: Settings, database_url: str, start_server: Callable[[FastAPI], str]) -> Iterator[httpx.Client]:
    """A keyed server with its indexing worker, on each database."""
    from indexer.write.worker import BackgroundWorker, open_worker

    live = settings.model_copy(
        update={
            "database_url": database_url,
            "reload_seconds": 0.1,
            "publish_seconds": 0.1,
            "api_key": SecretStr("s3cret"),
        }
    )
    background = BackgroundWorker(open_worker(live))
    background.start()
    try:
        url = start_server(create_app(live, background.worker.state))
        with httpx.Client(base_url=url, timeout=60, headers=AUTH) as http:
            yield http
    finally:
        background.stop()


def _upload(client: httpx.Client, name: str, data: bytes, media_type: str, **form: str) -> httpx.Response:
    return client.post(
        "/documents/upload", params={"wait": "true"}, files={"file": (name, data, media_type)}, data=form
    )


def test_uploaded_files_are_read_stored_and_found(client: httpx.Client) -> None:
    done = _upload(
        client, "leave.md", MARKDOWN.encode(), "text/markdown", id="policies/leave", metadata='{"team": "ops"}'
    )
    assert done.status_code == 200, done.text
    assert done.json()["added"] == ["policies/leave"] and done.json()["indexed"] is True
    served = client.get("/documents/policies/leave").json()
    assert (served["title"], served["text"]) == ("Leave policy", MARKDOWN_TEXT)
    # The form's metadata is laid over what the file gives.
    meta = served["metadata"]
    assert (meta["team"], meta["year"], meta["ext"], meta["size"]) == ("ops", 2024, "md", len(MARKDOWN.encode()))
    [hit] = client.post("/search", json={"query": "paid leave", "mode": "keyword"}).json()["results"]
    assert hit["text"] == served["text"][hit["start"] : hit["end"]] and "**" not in hit["text"]

    long_pdf = pdf_bytes((" ".join([PAGE_ONE] * 40), " ".join([PAGE_TWO] * 40)))
    done = _upload(client, "q3.pdf", long_pdf, PDF)  # no id: the file's name
    assert done.status_code == 200 and done.json()["added"] == ["q3.pdf"], done.text
    body = {"query": "helium valves", "mode": "keyword", "filter": {"ext": "pdf"}}
    [hit] = client.post("/search", json=body).json()["results"]
    assert (hit["id"], hit["page"]) == ("q3.pdf", 2)

    # A name without an extension is read by its media type.
    done = _upload(client, "billing", HTML.encode(), "text/html; charset=utf-8")
    assert done.status_code == 200, done.text
    page = client.get("/documents/billing").json()
    assert page["title"] == "Billing migration" and page["metadata"]["lang"] == "fr" and "NAVLINK" not in page["text"]


@pytest.mark.parametrize(
    ("name", "data", "media_type", "form", "status", "detail"),
    [
        ("logo.png", b"\x89PNG\r\n", "image/png", {}, 415, "file: unknown type (.png); readers exist for .docx"),
        ("blob", b"\x00\x01", "application/octet-stream", {}, 415, "file: unknown type (no extension)"),
        ("broken.pdf", b"%PDF-1.4 garbage", PDF, {}, 422, "file: not a readable PDF"),
        ("locked.pdf", encrypted_pdf(), PDF, {}, 422, "file: encrypted PDF: it needs a password to be read"),
        ("notes.txt", "caf\xe9".encode("latin-1"), "text/plain", {}, 422, "file: not UTF-8 (byte 3)"),
        ("notes.txt", b"   ", "text/plain", {}, 422, "text: is blank: there is nothing to embed"),
        ("notes.txt", b"fine", "text/plain", {"metadata": "[1]"}, 422, "metadata: must be a JSON object, got list"),
        ("notes.txt", b"fine", "text/plain", {"metadata": "{bad"}, 422, "metadata: not valid JSON"),
        ("notes.txt", b"fine", "text/plain", {"metadata": '{"x": NaN}'}, 422, "metadata.x: nan is not a finite"),
        ("notes.txt", b"fine", "text/plain", {"id": "a\x01b"}, 422, "id: 'a\\x01b' holds the control character"),
    ],
    ids=["png", "no-extension", "broken-pdf", "encrypted-pdf", "latin1", "blank", "list", "not-json", "nan", "id"],
)
def test_files_that_cannot_be_documents_are_refused_saying_why(
    client: httpx.Client, name: str, data: bytes, media_type: str, form: dict[str, str], status: int, detail: str
) -> None:
    response = client.post("/documents/upload", files={"file": (name, data, media_type)}, data=form)
    assert response.status_code == status, response.text
    assert response.json()["detail"].startswith(detail)


def test_an_upload_needs_the_key(client: httpx.Client) -> None:
    files = {"file": ("notes.txt", b"fine", "text/plain")}
    assert client.post("/documents/upload", files=files, headers={"Authorization": ""}).status_code == 401
    assert client.get("/documents").json()["total"] == 0


def test_a_file_over_the_body_limit_is_a_413(small_body_url: str) -> None:
    big = pdf_bytes(tuple(os.urandom(1500).hex() for _ in range(3)))  # text that does not compress
    assert len(big) > 4096
    response = httpx.post(f"{small_body_url}/documents/upload", files={"file": ("big.pdf", big, PDF)}, timeout=60)
    assert response.status_code == 413, response.text
    assert "4096" in response.json()["detail"]
