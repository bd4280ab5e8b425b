"""Hostile JSON bodies (issue 21) against `semsearch serve` in its own process, with an API key: JSON
nested past the bound on every route is a 422 naming the depth, never a 500; a long body is parsed
and validated off the event loop."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from search.settings import Settings, settings_env

KEY = "hostile-bodies-key"
AUTH = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
REPO = Path(__file__).resolve().parents[3]
DEEP = "[" * 1000 + "]" * 1000
DEPTH = "JSON nested deeper than 64 levels of arrays and objects"


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Iterator[str]:
    """`semsearch serve` (without a worker: nothing here needs indexing) in its own process, so that
    the test's own threads never share its GIL."""
    folder = tmp_path_factory.mktemp("hostile-bodies")
    settings = Settings(
        data_dir=folder / "data", model=str(tiny_model_dir), dtype="float32", device="cpu", api_key=SecretStr(KEY)
    )
    port = _port()
    log_path = folder / "serve.log"
    command = [sys.executable, "-m", "indexer.cli.main", "serve", "--no-worker", "--port", str(port)]
    with log_path.open("wb") as log:
        env = {**os.environ, **settings_env(settings)}
        proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 120
            while not _answers(f"{base}/health"):
                assert proc.poll() is None, log_path.read_text()
                assert time.monotonic() < deadline, "semsearch serve did not start"
                time.sleep(0.2)
            yield base
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    assert "Traceback" not in log_path.read_text(errors="replace")  # no case was a 5xx


def _answers(address: str) -> bool:
    try:
        return httpx.get(address, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _send(url: str, method: str, path: str, body: str | bytes, headers: dict[str, str] = AUTH) -> httpx.Response:
    content = body.encode() if isinstance(body, str) else body
    return httpx.request(method, url + path, content=content, headers=headers, timeout=120)


_PAD = "x" * 70_000  # past api.server.bodies.INLINE_BYTES: the body is parsed in the thread, in pieces


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/search", '{"query": "cat", "filter": {"a": ' + DEEP + "}}"),
        ("POST", "/search/batch", '{"queries": ["cat"], "filter": {"a": ' + DEEP + "}}"),
        ("POST", "/search/batch", '{"queries": ' + DEEP + "}"),
        ("PUT", "/documents/d1", '{"text": "cat", "metadata": {"a": ' + DEEP + "}}"),
        ("POST", "/documents", '[{"id": "d1", "text": "cat", "metadata": {"a": ' + DEEP + "}}]"),
        ("POST", "/documents", DEEP),
        ("POST", "/v1/embeddings", '{"input": ' + DEEP + "}"),
        ("POST", "/documents", f'[{{"id": "d1", "text": "{_PAD}", "metadata": {{"a": {DEEP}}}}}]'),
        ("PUT", "/documents/d1", f'{{"text": "{_PAD}", "metadata": {{"a": {DEEP}}}}}'),
    ],
)
def test_deep_json_bodies_are_a_422_naming_the_depth(url: str, method: str, path: str, body: str) -> None:
    response = _send(url, method, path, body)
    assert response.status_code == 422, response.text
    assert DEPTH in response.text and "levels)" in response.text


def test_every_route_with_a_json_body_bounds_its_nesting(url: str) -> None:
    # From the schema, so that a route added later is covered: each one's body is read by the bound.
    paths = httpx.get(f"{url}/openapi.json", timeout=30).json()["paths"]
    routes = [(m.upper(), p) for p, ops in paths.items() for m, op in ops.items() if "requestBody" in op]
    assert len(routes) >= 5
    for method, path in routes:
        response = _send(url, method, path.replace("{doc_id}", "d1"), DEEP)
        assert response.status_code == 422 and DEPTH in response.text, (method, path, response.text)


def test_a_deep_filter_in_the_query_string_is_a_422(url: str) -> None:
    response = httpx.get(f"{url}/search", params={"q": "cat", "filter": DEEP}, headers=AUTH, timeout=30)
    assert response.status_code == 422 and f"filter: {DEPTH} (1000 levels)" in response.text


def test_a_long_body_is_validated_in_the_thread_as_on_the_loop(url: str) -> None:
    docs = [
        {"id": f"long{i}", "text": f"text {i} " + "y" * 900, "metadata": {"n": i, "tags": ["a", "b"]}}
        for i in range(100)
    ]
    written = _send(url, "POST", "/documents", json.dumps(docs))
    assert written.status_code == 200, written.text
    assert written.json()["added"] == [d["id"] for d in docs]
    stored = httpx.get(f"{url}/documents/long42", headers=AUTH, timeout=30).json()
    assert stored["metadata"] == {"n": 42, "tags": ["a", "b"]} and stored["text"] == docs[42]["text"]
    # The errors of a refused long body are FastAPI's, as a short body gets them.
    docs[50]["text"], docs[70]["metadata"] = 5, {"x": float("nan")}
    refused = _send(url, "POST", "/documents", json.dumps(docs))
    assert refused.status_code == 422
    assert [e["loc"] for e in refused.json()["detail"]] == [["body", 50, "text"], ["body", 70, "metadata"]]
    # The API key is still checked before the body's errors are told.
    assert _send(url, "POST", "/documents", json.dumps(docs), {"Content-Type": "application/json"}).status_code == 401


def test_a_refused_value_is_not_echoed_whole(url: str) -> None:
    texts = [f"text {i}" for i in range(300)]
    body = json.dumps([{"id": "e", "text": texts}])
    refused = _send(url, "POST", "/documents", body)
    assert refused.status_code == 422 and "string" in refused.text
    assert len(refused.content) < 2_000, refused.text  # a preview of the list, not the list
