"""The typed client (api/client/blocking.py) against real servers: a `semsearch serve` process for the API's
round trips, in-process uvicorn servers where a test needs a key or an overloaded server."""

from __future__ import annotations

import httpx
import pytest

from api.client import (
    AsyncSemsearchClient,
    AuthenticationError,
    Hit,
    InvalidRequestError,
    NotFoundError,
    SemsearchClient,
    SemsearchError,
    ServerBusyError,
    WriteResult,
)
from api.client.calls import Requests, document_path, merge_writes
from api.client.types import error_message

DOCS = [
    {"id": "pets", "title": "Pets", "text": "the cat sat on the mat", "metadata": {"kind": "animal", "year": 2001}},
    {"id": "space", "title": "Space", "text": "the sun and the moon and a star", "metadata": {"kind": "sky"}},
    {"id": "bio", "text": "cancer patients study results", "metadata": {"kind": "science", "year": 2019}},
]


def test_documents_search_and_stats_round_trip(empty_server: str) -> None:
    with SemsearchClient(empty_server) as client:
        written = client.put_documents(DOCS, wait=True)
        assert sorted(written.added) == ["bio", "pets", "space"] and written.indexed
        again = client.put_document("pets", "the cat sat on the mat", title="Pets", metadata={"kind": "pet"}, wait=True)
        assert again.unchanged == ["pets"] and again.indexed

        found = client.search("the cat sat on the mat", top_k=2)
        assert found.results[0].id == "pets" and len(found.results) == 2 and found.took_ms > 0
        top = found.results[0]
        assert (top.title, top.text, top.start, top.end) == ("Pets", "the cat sat on the mat", 0, 22)
        assert top.metadata == {"kind": "pet"}  # the metadata of the unchanged write was replaced
        # The filter applies inside the search: the one matching document, however it ranks.
        filtered = client.search("the cat sat on the mat", top_k=3, filter={"year": {"$gte": 2010}})
        assert [h.id for h in filtered.results] == ["bio"]
        batch = client.search_batch(["the cat sat on the mat", "cancer patients study results"], top_k=1)
        assert [[h.id for h in hits] for hits in batch.results] == [["pets"], ["bio"]]

        assert client.get_document("bio").status == "indexed"
        assert [d.id for d in client.iter_documents(page_size=2)] == ["pets", "space", "bio"]
        assert client.list_documents(offset=1, limit=1).documents[0].id == "space"
        stats = client.stats()
        assert (stats.documents, stats.chunks) == (3, 3)
        vectors = client.embed(["the cat", "a star"])
        assert len(vectors) == 2 and len(vectors[0]) == stats.dimension
        assert client.health()

        assert client.delete_document("space").chunks == 1
        assert client.delete_documents(["space", "bio", "never"]) == ["bio"]
        with pytest.raises(NotFoundError, match="no document with id 'space'"):
            client.get_document("space")
        assert [h.id for h in client.search("the sun and the moon", top_k=5).results] == ["pets"]


@pytest.mark.parametrize("doc_id", ["a/b c?d#e%f&g=h", "..", ".", "ünï code/", "+plus"])
def test_any_id_the_server_accepts_makes_the_round_trip(empty_server: str, doc_id: str) -> None:
    with SemsearchClient(empty_server) as client:
        assert client.put_document(doc_id, "the cat sat on the mat").added == [doc_id]
        assert client.get_document(doc_id).id == doc_id
        assert client.delete_document(doc_id).id == doc_id


def test_errors_carry_the_servers_message(empty_server: str) -> None:
    with SemsearchClient(empty_server) as client:
        with pytest.raises(InvalidRequestError, match=r"filter field 'year': \$gt needs a number") as bad:
            client.search("cat", filter={"year": {"$gt": "x"}})
        assert bad.value.status_code == 422 and "year" in bad.value.message
        # A pydantic validation error (a list) reads as `where: what`.
        with pytest.raises(InvalidRequestError, match=r"body\.top_k: Input should be less than or equal to 1000"):
            client.search("cat", top_k=5000)
        with pytest.raises(InvalidRequestError, match="text: is blank"):
            client.put_document("x", "   ")
        # The whole filter language, checked by the server's one parser: a bad operator or nesting by name.
        with pytest.raises(InvalidRequestError, match=r"filter field 'a' at \$or\[1\]: unknown operator '\$near'"):
            client.search("cat", filter={"$or": [{"a": 1}, {"a": {"$near": 2}}]})
        with pytest.raises(InvalidRequestError, match=r"filter at \$and\[0\]: an empty object"):
            client.search_batch(["cat"], filter={"$and": [{}]})
        client.search("cat", filter={"$and": [{"a": {"$ne": 1}}, {"b": {"$exists": False}}]})  # valid: no error
        with pytest.raises(NotFoundError):
            client.delete_document("never-written")


def test_a_non_json_error_body_is_the_message() -> None:
    response = httpx.Response(502, text="<html>Bad gateway</html>", request=httpx.Request("GET", "http://x/"))
    assert error_message(response) == "<html>Bad gateway</html>"
    assert error_message(httpx.Response(500, request=httpx.Request("GET", "http://x/"))) == "Internal Server Error"


def test_mode_is_sent_only_when_given() -> None:
    requests = Requests("http://x", None, 1.0, 0, 0.0)
    assert "mode" not in requests.search("q", 5, None, None).json
    assert requests.search("q", 5, {"kind": "a"}, "hybrid").json == {
        "query": "q",
        "top_k": 5,
        "filter": {"kind": "a"},
        "mode": "hybrid",
    }
    assert document_path("a/b?c") == "/documents/a%2Fb%3Fc" and document_path("..") == "/documents/%2E%2E"


def test_fields_a_newer_server_adds_are_kept() -> None:
    raw = {"id": "d", "chunk_id": 1, "score": 0.5, "title": "", "text": "t", "metadata": {}, "start": 0, "end": 1}
    hit = Hit.model_validate({**raw, "rerank_score": 0.4, "status": "new"})
    assert hit.rerank_score == 0.4  # type: ignore[attr-defined]
    assert hit.model_dump()["status"] == "new"
    # And an older server's answer, without the per-retriever signals, still reads.
    assert (hit.dense, hit.keyword, hit.matched_terms) == (None, None, [])


def test_a_sliced_write_keeps_every_slices_reason() -> None:
    parts = [
        WriteResult(added=["a"], updated=[], unchanged=[], indexed=False, reason="the worker is failing"),
        WriteResult(added=["b"], updated=[], unchanged=["c"], indexed=True),
        WriteResult(added=[], updated=["d"], unchanged=[], indexed=False, reason="the worker is failing"),
    ]
    merged = merge_writes(parts)
    assert (merged.added, merged.updated, merged.unchanged) == (["a", "b"], ["d"], ["c"])
    assert (merged.indexed, merged.reason) == (False, "the worker is failing")


def test_the_api_key(keyed_url: str) -> None:
    with SemsearchClient(keyed_url) as anonymous, pytest.raises(AuthenticationError, match="missing or wrong API key"):
        anonymous.stats()
    with SemsearchClient(keyed_url, api_key="s3cret") as client:
        assert client.stats().documents == 0


def test_429_and_503_are_retried_then_reported(overloaded) -> None:
    front, url = overloaded
    front.failures = 2
    with SemsearchClient(url, retries=3) as client:
        assert client.search("the cat", top_k=1).results[0].id == "pets"
    assert front.refused == 2
    # Without Retry-After the client backs off on its own; past its retries it reports the server's message.
    front.failures, front.refused, front.status, front.retry_after = 10, 0, 429, None
    with SemsearchClient(url, retries=2, backoff=0.01) as client, pytest.raises(ServerBusyError) as busy:
        client.search("the cat")
    assert front.refused == 3 and busy.value.status_code == 429 and "overloaded" in busy.value.message


def test_an_unreachable_server_is_an_error_naming_it() -> None:
    with SemsearchClient("http://127.0.0.1:9", retries=1, backoff=0.01) as client, pytest.raises(SemsearchError) as err:
        client.health()
    assert err.value.status_code is None and "cannot reach the semsearch server at http://127.0.0.1:9" in str(err.value)


async def test_the_async_client(empty_server: str) -> None:
    async with AsyncSemsearchClient(empty_server) as client:
        assert (await client.put_documents(DOCS, wait=True)).indexed
        found = await client.search("cancer patients study results", top_k=1, filter={"kind": "science"})
        assert [h.id for h in found.results] == ["bio"]
        batch = await client.search_batch(["the cat sat on the mat"], top_k=1)
        assert batch.results[0][0].id == "pets"
        assert (await client.get_document("pets")).metadata == {"kind": "animal", "year": 2001}
        assert [d.id async for d in client.iter_documents(page_size=1)] == ["pets", "space", "bio"]
        assert (await client.stats()).documents == 3
        assert len(await client.embed(["x"])) == 1
        assert await client.delete_documents(["pets", "nope"]) == ["pets"]
        with pytest.raises(NotFoundError):
            await client.delete_document("pets")
        with pytest.raises(InvalidRequestError, match="needs a number"):
            await client.search("x", filter={"year": {"$lt": "y"}})
