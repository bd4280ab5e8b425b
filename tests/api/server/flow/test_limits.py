"""Request limits over real HTTP: body size (413), malformed or mistyped bodies (4xx, never 5xx)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from search.settings import Settings

LIMIT = 4096  # the `small_body_url` server's limit


def test_max_body_bytes_is_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().max_body_bytes == 16 * 1024 * 1024
    monkeypatch.setenv("SEMSEARCH_MAX_BODY_BYTES", "65536")
    assert Settings().max_body_bytes == 65536


def test_bodies_over_the_limit_get_413(small_body_url: str) -> None:
    with httpx.Client(base_url=small_body_url, timeout=30) as client:
        fits = client.post("/search", json={"query": "cat " * 900})
        assert fits.status_code == 200
        declared = client.post("/search", json={"query": "cat " * 1100})
        assert declared.status_code == 413
        assert f"larger than the limit of {LIMIT} bytes" in declared.json()["detail"]

    # Chunked transfer: no Content-Length, the size shows only while the body streams in.
    def chunks() -> Iterator[bytes]:
        yield b'{"queries": ['
        for _ in range(200):  # 200 x 26 bytes: over 4 KiB
            yield b'"the cat sat on the mat", '
        yield b'"cat"]}'

    streamed = httpx.post(
        f"{small_body_url}/search/batch", content=chunks(), headers={"Content-Type": "application/json"}, timeout=30
    )
    assert streamed.status_code == 413 and "SEMSEARCH_MAX_BODY_BYTES" in streamed.json()["detail"]
    # The server is fine afterwards.
    assert httpx.get(f"{small_body_url}/health", timeout=30).json()["status"] == "ok"


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (b'{"query": "cat", ', "application/json"),  # malformed JSON
        (b"[1, 2]", "application/json"),  # JSON, but not an object
        (b'{"query": "cat"}', "text/plain"),  # a wrong content type
        (b"query=cat", "application/x-www-form-urlencoded"),
        ('{"query": "caf\u00e9"}'.encode("latin-1"), "application/json"),  # not UTF-8
        (b'{"query": "\xff\xfe\xfd"}', "application/json; charset=utf-8"),
        (b"", "application/json"),
    ],
)
def test_unreadable_bodies_get_a_4xx(base_url: str, content: bytes, content_type: str) -> None:
    response = httpx.post(f"{base_url}/search", content=content, headers={"Content-Type": content_type}, timeout=30)
    assert 400 <= response.status_code < 500, response.text
    assert "detail" in response.json()
