"""Hostile JSON bodies (issue 21) against `semsearch serve` in its own process, with an API key: JSON
nested past the bound on every route is a 422 naming the depth, never a 500; a long body is parsed
and validated off the event loop, and an oversized metadata value is refused before it is walked,
so /health keeps answering while a 15 MiB body is refused."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
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
    routes = [
        (m.upper(), p)
        for p, ops in paths.items()
        for m, op in ops.items()
        if "application/json" in op.get("requestBody", {}).get("content", {})  # not the upload's multipart form
    ]
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


class _HealthPoller(threading.Thread):
    """Asks /health every 20 ms on a connection of its own, noting how long each answer took."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url, self.latencies, self.codes, self.stop = url, list[float](), list[int](), threading.Event()

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as client:
            while not self.stop.is_set():
                started = time.perf_counter()
                self.codes.append(client.get("/health").status_code)
                self.latencies.append(time.perf_counter() - started)
                time.sleep(0.02)


def _refused_while_polling(url: str, path: str, body: bytes) -> tuple[httpx.Response, list[int], float]:
    """`body` sent to `path` while /health is polled: (the answer, the polls' statuses, the slowest poll)."""
    poller = _HealthPoller(url)
    poller.start()
    time.sleep(0.3)
    started = time.monotonic()
    refused = _send(url, "POST", path, body)
    took = time.monotonic() - started
    time.sleep(0.1)
    poller.stop.set()
    poller.join()
    slowest = max(poller.latencies)
    print(f"{path}: refused in {took:.2f} s; /health polled {len(poller.codes)} times, slowest {slowest * 1000:.0f} ms")
    return refused, poller.codes, slowest


def test_health_answers_while_a_15_mib_metadata_list_is_refused(url: str) -> None:
    # Issue 21: 2.5 million short strings under the 16 MiB body limit stopped the server, /health
    # too, for about 15 s: validation walked every item on the event loop before the size check.
    body = json.dumps([{"id": "big", "text": "cat", "metadata": {"tags": ["ab"] * 2_600_000}}]).encode()
    assert 14 * 2**20 < len(body) < 16 * 2**20
    refused, codes, slowest = _refused_while_polling(url, "/documents", body)
    assert refused.status_code == 422, refused.text[:500]
    assert refused.json() == {"detail": "body[0].metadata.tags: an array of 2600000 items; at most 65536 are allowed"}
    assert set(codes) == {200} and len(codes) >= 10
    # The aim is 100 ms on a quiet machine (bench/hostile_body.py measures it); this loaded 2-core
    # host is given room.
    assert slowest < 1.0, f"/health took {slowest:.2f} s while the body was refused"


@pytest.mark.parametrize(
    ("path", "body", "fragment"),
    [
        ("/v1/embeddings", {"input": ["ab"] * 2_000_000}, "body.input: an array of 2000000 items"),
        ("/search", {"query": "cat", "filter": {f"f{i}": 1 for i in range(1_000_000)}}, "body.filter: an object of"),
        ("/search/batch", {"queries": ["cat"] * 2_000_000}, "body.queries: an array of 2000000 items"),
        (
            "/documents",
            [{"id": "wide", "text": "cat", "metadata": {f"k{i}": 1 for i in range(1_000_000)}}],
            "body[0].metadata: an object of 1000000 items",
        ),
    ],
    ids=["embeddings-inputs", "filter-fields", "batch-queries", "metadata-keys"],
)
def test_oversized_values_are_refused_before_they_are_built(url: str, path: str, body: object, fragment: str) -> None:
    # Each was parsed, then walked item by item (by pydantic or a rule) on the event loop before
    # its count was checked, and echoed whole in the 422.
    refused, codes, slowest = _refused_while_polling(url, path, json.dumps(body).encode())
    assert refused.status_code == 422 and fragment in refused.text, refused.text[:500]
    assert len(refused.content) < 2_000
    assert set(codes) == {200} and slowest < 1.0, f"/health took {slowest:.2f} s"


@pytest.mark.parametrize(
    ("path", "body", "fragment"),
    [
        ("/documents", [{"id": "m", "text": "cat", "metadata": {"tags": ["abcdefghij"] * 60_000}}], "bytes as JSON"),
        ("/v1/embeddings", {"input": ["ab"] * 60_000}, "'input' must hold 1 to 2048 texts, got 60000"),
        ("/search", {"query": "cat", "filter": {f"f{i}": 1 for i in range(60_000)}}, "at most 32 are allowed"),
    ],
    ids=["metadata-bytes", "embeddings-inputs", "filter-fields"],
)
def test_values_within_the_item_bound_are_counted_before_they_are_walked(
    url: str, path: str, body: object, fragment: str
) -> None:
    refused = _send(url, "POST", path, json.dumps(body))
    assert refused.status_code == 422 and fragment in refused.text, refused.text[:500]
    assert len(refused.content) < 2_000
