"""The client's `upload_document`: a path or bytes sent as the upload route's form, its answers and
refusals as the client's types and errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from sample_files import MARKDOWN, MARKDOWN_TEXT, pdf_bytes

from api.client import AsyncSemsearchClient, InvalidRequestError, SemsearchClient


def test_upload_a_path_or_bytes(worker_url: str, tmp_path: Path) -> None:
    path = tmp_path / "leave.md"
    path.write_text(MARKDOWN, encoding="utf-8")
    with SemsearchClient(worker_url) as client:
        done = client.upload_document(path, metadata={"team": "ops"}, wait=True)
        assert done.added == ["leave.md"] and done.indexed
        doc = client.get_document("leave.md")
        assert (doc.title, doc.text, doc.metadata["team"], doc.metadata["year"]) == (
            "Leave policy",
            MARKDOWN_TEXT,
            "ops",
            2024,
        )
        assert client.upload_document(pdf_bytes(), name="guide.pdf", doc_id="guides/1").added == ["guides/1"]
        with pytest.raises(InvalidRequestError, match=r"unknown type \(\.png\)") as refused:
            client.upload_document(b"\x89PNG", name="logo.png")
        assert refused.value.status_code == 415
        with pytest.raises(InvalidRequestError, match="file: not a readable PDF"):
            client.upload_document(b"%PDF-1.4 nope", name="broken.pdf")
        with pytest.raises(ValueError, match="needs `name`"):
            client.upload_document(b"text")


async def test_the_async_client_uploads(worker_url: str) -> None:
    async with AsyncSemsearchClient(worker_url) as client:
        done = await client.upload_document(b"plain words here", name="notes.txt", wait=True)
        assert done.added == ["notes.txt"] and done.indexed
        assert (await client.get_document("notes.txt")).metadata == {"ext": "txt", "size": 16}
