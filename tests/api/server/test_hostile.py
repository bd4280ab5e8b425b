"""The hostile battery: every case of the attack on `semsearch serve` (issue 12), against the real
command in its own process, with an API key, on SQLite, with its indexing worker beside it.

Each case gets a 4xx or a correct 200, never a 5xx and never a dropped connection; afterwards the
store still serves every read (filtered searches, document reads, lists)."""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from pydantic import SecretStr

from indexer.cli.main import main
from indexer.ingest.chunking import Chunker
from indexer.write.pipeline import Indexer
from search.components import make_encoder, open_store
from search.dense.catalog import IndexCatalog
from search.settings import Settings, settings_env
from search.storage.records import DocumentIn
from search.work.queue import enqueue

KEY = "hostile-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
REPO = Path(__file__).resolve().parents[3]


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Iterator[tuple[str, Settings]]:
    """`semsearch serve` (with its worker) over the three fixture documents; yields (URL, settings)."""
    folder = tmp_path_factory.mktemp("hostile")
    settings = Settings(
        data_dir=folder / "data",
        model=str(tiny_model_dir),
        dtype="float32",
        device="cpu",
        api_key=SecretStr(KEY),
        # Concurrent requests wait 20 ms for each other, so that they share forward passes.
        batch_wait_ms=20.0,
        reload_seconds=0.1,
        publish_seconds=0.1,
    )
    index_docs(settings)
    port = _port()
    env = {**os.environ, **settings_env(settings)}
    log = (folder / "serve.log").open("wb")
    command = [sys.executable, "-m", "indexer.cli.main", "serve", "--port", str(port)]
    proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while not _up(url):
            assert proc.poll() is None, (folder / "serve.log").read_text()
            assert time.monotonic() < deadline, "semsearch serve did not start"
            time.sleep(0.2)
        yield url, settings
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
        # Whatever a case did, the server never answered a 5xx: its log holds no traceback.
        assert "Traceback" not in (folder / "serve.log").read_text(errors="replace")


def index_docs(settings: Settings) -> None:
    encoder, store = make_encoder(settings), open_store(settings)
    docs = [
        DocumentIn("pets", "the cat sat on the mat", "Pets", {"kind": "animal"}),
        DocumentIn("space", "the sun and the moon and a star in the sky", "Space", {"kind": "sky"}),
    ]
    Indexer(encoder, store, IndexCatalog(store, settings.index_dir), Chunker(encoder)).run(docs)
    store.close()


def _up(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _raw(url: str, method: str, path: str, body: str) -> httpx.Response:
    """A request whose JSON body is sent as written: NaN, Infinity and lone surrogates included."""
    headers = {**AUTH, "Content-Type": "application/json"}
    return httpx.request(method, url + path, content=body.encode(), headers=headers, timeout=60)


def _nested(depth: int) -> str:
    return '{"a": ' * depth + "1" + "}" * depth


@pytest.mark.parametrize(
    ("method", "path", "body", "names"),
    [
        ("POST", "/search", '{"query": "cat", "top_k": NaN}', "top_k"),
        ("POST", "/search", '{"query": "cat", "top_k": Infinity}', "top_k"),
        ("POST", "/search", '{"query": "cat", "top_k": -Infinity}', "top_k"),
        ("POST", "/search/batch", '{"queries": ["cat"], "top_k": NaN}', "top_k"),
        ("POST", "/search", '{"query": "\\ud800 cat"}', "query"),
        ("POST", "/search/batch", '{"queries": ["cat", "\\udfff"]}', "queries"),
        ("POST", "/search", '{"query": "cat", "filter": {"kind": "\\ud800"}}', "surrogate"),
        ("POST", "/v1/embeddings", '{"input": ["\\udc00 x"]}', "input"),
        ("PUT", "/documents/s1", '{"text": "\\ud800 cat"}', "text"),
        ("PUT", "/documents/s1", '{"text": "cat", "title": "\\udbff"}', "title"),
        ("PUT", "/documents/s1", '{"text": "a\\u0000b"}', "NUL"),
        ("PUT", "/documents/m1", '{"text": "cat", "metadata": {"x": NaN}}', "metadata.x"),
        ("PUT", "/documents/m1", '{"text": "cat", "metadata": {"x": [1, Infinity]}}', "metadata.x[1]"),
        ("PUT", "/documents/m1", '{"text": "cat", "metadata": {"x": ' + _nested(256) + "}}", "nested deeper"),
        ("PUT", "/documents/m1", '{"text": "cat", "metadata": {"\\ud800": 1}}', "the key"),
        ("PUT", "/documents/m1", '{"text": "cat", "metadata": {"n": 1' + "0" * 30 + "}}", "64-bit"),
        ("PUT", "/documents/m1", json.dumps({"text": "cat", "metadata": {"big": "x" * 70_000}}), "bytes as JSON"),
        ("POST", "/documents", '[{"id": "m2", "text": "cat", "metadata": {"y": {"z": NaN}}}]', "metadata.y.z"),
    ],
)
def test_hostile_input_gets_a_422_naming_the_field(
    served: tuple[str, Settings], method: str, path: str, body: str, names: str
) -> None:
    url, _ = served
    response = _raw(url, method, path, body)
    assert response.status_code == 422, response.text
    assert names in response.text


def test_after_hostile_metadata_every_read_still_answers(served: tuple[str, Settings]) -> None:
    url, settings = served
    # Rows as they were stored before writes were validated (straight into the store, as an old
    # server did): a NaN, nesting past pydantic's serialisation limit, a lone surrogate in a key.
    store = open_store(settings)
    old = {"kind": "animal", "x": float("nan"), "deep": json.loads(_nested(256)), "\ud800": "key", "tag": "\udc00"}
    enqueue(store, [DocumentIn("old-poison", "the cat sat on the mat again", "Old", old)])
    store.close()
    _wait_until_indexed(url, ["old-poison"])
    with httpx.Client(base_url=url, headers=AUTH, timeout=60) as client:
        for body in ({"kind": "animal"}, {"kind": {"$in": ["animal", "sky"]}}, {"x": {"$gt": 0}}):
            filtered = client.post("/search", json={"query": "cat", "filter": body})
            assert filtered.status_code == 200, filtered.text
        plain = client.post("/search", json={"query": "the cat sat on the mat again", "top_k": 10})
        assert plain.status_code == 200, plain.text
        hit = next(r for r in plain.json()["results"] if r["id"] == "old-poison")
        assert hit["metadata"]["x"] == "NaN" and hit["metadata"]["\ufffd"] == "key"
        # Sorted and counted too: a NaN and a nested object are no value, a lone surrogate shown as U+FFFD.
        counted = client.post("/search", json={"query": "cat", "sort": "-x", "facets": ["tag", "x", "deep"]})
        assert counted.status_code == 200, counted.text
        assert counted.json()["facets"] == {"tag": [{"value": "\ufffd", "count": 1}], "x": [], "deep": []}
        one = client.get("/documents/old-poison")
        assert one.status_code == 200 and one.json()["metadata"]["kind"] == "animal"
        page = client.get("/documents", params={"limit": 1000})
        assert page.status_code == 200 and "old-poison" in [d["id"] for d in page.json()["documents"]]


def test_a_long_in_list_and_the_filter_cost_bound(served: tuple[str, Settings]) -> None:
    url, _ = served
    with httpx.Client(base_url=url, headers=AUTH, timeout=60) as client:
        long_in = client.post("/search", json={"query": "cat", "filter": {"kind": {"$in": [*range(999), "animal"]}}})
        assert long_in.status_code == 200 and long_in.json()["results"][0]["id"] == "pets"
        wide = {f"f{i}": {"$in": list(range(500))} for i in range(8)}
        assert client.post("/search", json={"query": "cat", "filter": wide}).status_code == 200
        costly = {f"f{i}": {"$in": list(range(900))} for i in range(32)}
        refused = client.post("/search", json={"query": "cat", "filter": costly})
        assert refused.status_code == 422 and "at most 4096" in refused.text


def test_concurrent_searches_sharing_batches_with_a_poisoned_embeddings_call_all_succeed(
    served: tuple[str, Settings],
) -> None:
    url, _ = served

    def search(i: int) -> httpx.Response:
        return httpx.post(f"{url}/search", json={"query": f"the cat {i}", "top_k": 2}, headers=AUTH, timeout=60)

    with ThreadPoolExecutor(max_workers=14) as pool:
        searches = [pool.submit(search, i) for i in range(13)]
        poisoned = pool.submit(_raw, url, "POST", "/v1/embeddings", '{"input": ["\\udc00 x"]}')
        answers = [f.result() for f in searches]
    assert poisoned.result().status_code == 422
    assert [a.status_code for a in answers] == [200] * 13
    # Each got its own query's results: the same as asked alone, afterwards.
    for i, answer in enumerate(answers):
        assert [r["id"] for r in answer.json()["results"]] == [r["id"] for r in search(i).json()["results"]]


def test_twenty_racing_writers_on_one_id(served: tuple[str, Settings]) -> None:
    url, settings = served

    def writer(n: int) -> list[int]:
        codes = []
        # One keep-alive connection per writer: a 5xx would have the server close it.
        with httpx.Client(base_url=url, headers=AUTH, timeout=60) as client:
            for round_ in range(5):
                if (n + round_) % 3 == 0:
                    codes.append(client.delete("/documents/race").status_code)
                elif (n + round_) % 3 == 1:
                    codes.append(client.get("/documents/race").status_code)
                else:
                    body = {"text": f"racing text {n} {round_}", "metadata": {"n": n}}
                    codes.append(client.put("/documents/race", json=body).status_code)
        return codes

    with ThreadPoolExecutor(max_workers=20) as pool:
        codes = [c for result in pool.map(writer, range(20)) for c in result]
    assert set(codes) <= {200, 404}, codes  # 404: a GET or DELETE after another writer's DELETE
    assert codes.count(200) > 20
    # Settle: the last write wins, the worker indexes it, and rows and index agree.
    final = httpx.put(f"{url}/documents/race", json={"text": "the final race text"}, headers=AUTH, timeout=60)
    assert final.status_code == 200
    _wait_until_indexed(url, ["race"])
    check = main(["check", "--json", "--data-dir", str(settings.data_dir), "--model", settings.model])
    assert check == 0


def test_openai_shapes_at_the_door(served: tuple[str, Settings]) -> None:
    url, _ = served
    with httpx.Client(base_url=url, headers=AUTH, timeout=60) as client:
        tokens = client.post("/v1/embeddings", json={"input": [101, 2023, 102]})
        assert tokens.status_code == 422 and "token-id inputs are not supported" in tokens.text
        nested = client.post("/v1/embeddings", json={"input": [[101, 102]]})
        assert nested.status_code == 422 and "token-id" in nested.text
        dims = client.post("/v1/embeddings", json={"input": "cat", "dimensions": 8})
        assert dims.status_code == 422 and "32-dimensional" in dims.text
        floats = client.post("/v1/embeddings", json={"input": ["cat", "dog"], "encoding_format": "float"}).json()
        packed = client.post("/v1/embeddings", json={"input": ["cat", "dog"], "encoding_format": "base64"}).json()
        same = client.post("/v1/embeddings", json={"input": ["cat", "dog"], "dimensions": 32}).json()
    decoded = [np.frombuffer(base64.b64decode(d["embedding"]), dtype="<f4") for d in packed["data"]]
    assert np.array_equal(decoded, [d["embedding"] for d in floats["data"]])
    assert same["data"] == floats["data"]


def test_health_reports_the_worker_and_queue(served: tuple[str, Settings]) -> None:
    url, _ = served
    health = httpx.get(f"{url}/health", timeout=30).json()  # public: no key
    assert health["status"] == "ok" and health["worker"]["consecutive_failures"] == 0
    assert health["queue"]["unindexed_documents"] >= 0
    assert httpx.get(f"{url}/stats", timeout=30).status_code == 401


def _wait_until_indexed(url: str, ids: list[str]) -> None:
    deadline = time.monotonic() + 60
    while True:
        statuses = [httpx.get(f"{url}/documents/{i}", headers=AUTH, timeout=30).json().get("status") for i in ids]
        if all(s == "indexed" for s in statuses):
            return
        assert time.monotonic() < deadline, f"never indexed: {dict(zip(ids, statuses, strict=True))}"
        time.sleep(0.1)
