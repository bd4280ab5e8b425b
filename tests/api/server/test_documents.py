"""Document writes over real HTTP: stored at once, embedded by the worker, searchable with ?wait=true."""

from __future__ import annotations

import time

import httpx
import pytest

from indexer.write.keyword_writer import KeywordWriter
from search.storage.store import Store
from search.validation import MAX_DOCUMENT_CHARS


def _ids(client: httpx.Client, query: str, k: int = 10) -> list[str]:
    response = client.post("/search", json={"query": query, "top_k": k})
    assert response.status_code == 200, response.text
    return [r["id"] for r in response.json()["results"]]


def test_put_with_wait_is_searchable_on_return(worker_url: str) -> None:
    with httpx.Client(base_url=worker_url, timeout=60) as client:
        put = client.put("/documents/notes/fire.md", params={"wait": "true"}, json={"text": "fire earth wind fire"})
        assert put.status_code == 200, put.text
        assert put.json() == {
            "added": ["notes/fire.md"],
            "updated": [],
            "unchanged": [],
            "indexed": True,
            "reason": None,
        }
        assert _ids(client, "fire earth wind fire", 1) == ["notes/fire.md"]
        got = client.get("/documents/notes/fire.md").json()
        assert got["status"] == "indexed" and got["text"] == "fire earth wind fire" and got["metadata"] == {}
        # New metadata alone re-embeds nothing; new text replaces the chunks.
        same = client.put("/documents/notes/fire.md", json={"text": "fire earth wind fire", "metadata": {"v": 2}})
        assert same.json()["unchanged"] == ["notes/fire.md"]
        assert client.get("/documents/notes/fire.md").json()["metadata"] == {"v": 2}
        changed = client.put("/documents/notes/fire.md", params={"wait": "true"}, json={"text": "water water tree"})
        assert changed.json()["updated"] == ["notes/fire.md"]
        assert _ids(client, "water water tree", 1) == ["notes/fire.md"]


def test_put_with_wait_is_found_by_its_words_on_return(worker_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # The worker brings the keyword index up to date after the vectors commit (slowly, here): a write
    # that waited is found by a keyword search at once, not only by a dense one.
    catch_up = KeywordWriter.catch_up

    def slow(self: KeywordWriter, store: Store, batch: int = 20_000) -> int:
        time.sleep(0.5)
        return catch_up(self, store, batch)

    monkeypatch.setattr(KeywordWriter, "catch_up", slow)
    with httpx.Client(base_url=worker_url, timeout=60) as client:
        put = client.put("/documents/rare", params={"wait": "true"}, json={"text": "the zyxquv token"})
        assert put.status_code == 200 and put.json()["indexed"] is True, put.text
        found = client.post("/search", json={"query": "zyxquv", "mode": "keyword"}).json()["results"]
        assert [hit["id"] for hit in found] == ["rare"]


def test_post_list_delete(worker_url: str) -> None:
    docs = [
        {"id": f"n{i}", "title": f"N{i}", "text": t} for i, t in enumerate(["gene protein", "star sky", "dog park"])
    ]
    with httpx.Client(base_url=worker_url, timeout=60) as client:
        posted = client.post("/documents", params={"wait": "true"}, json=docs)
        assert posted.status_code == 200 and sorted(posted.json()["added"]) == ["n0", "n1", "n2"]
        page = client.get("/documents", params={"offset": 2, "limit": 3}).json()
        # Three documents indexed by the fixture come first, in the order written.
        assert page["total"] == 6 and [d["id"] for d in page["documents"]] == ["bio", "n0", "n1"]
        assert "n1" in _ids(client, "star sky", 3)
        deleted = client.delete("/documents/n1")
        assert deleted.status_code == 200 and deleted.json() == {"id": "n1", "chunks": 1}
        # Gone from results the moment DELETE returns: no waiting for the worker.
        assert "n1" not in _ids(client, "star sky", 10)
        assert client.get("/documents/n1").status_code == 404
        assert client.delete("/documents/n1").status_code == 404


@pytest.mark.parametrize(
    ("method", "path", "body", "fragment"),
    [
        ("put", "/documents/x", {"text": "   "}, "text: is blank"),
        ("put", "/documents/x", {"title": "no text"}, "Field required"),
        ("put", "/documents/x", {"text": "a" * (MAX_DOCUMENT_CHARS + 1)}, "at most 1000000 characters"),
        ("put", "/documents/" + "i" * 513, {"text": "ok"}, "must have 1 to 512"),
        ("put", "/documents/a%0Ab", {"text": "ok"}, "control character '\\n'"),
        ("post", "/documents", [{"id": "a\tb", "text": "x"}], "holds the control character"),
        ("post", "/documents", [], "at least 1 item"),
        ("post", "/documents", [{"id": "a", "text": "x"}, {"id": "a", "text": "y"}], "repeated: ['a']"),
        ("post", "/documents", [{"text": "no id"}], "Field required"),
        ("get", "/documents?limit=0", None, "greater than or equal to 1"),
    ],
)
def test_bad_writes_get_a_clear_422(base_url: str, method: str, path: str, body: object, fragment: str) -> None:
    response = httpx.request(method, f"{base_url}{path}", json=body, timeout=30)
    assert response.status_code == 422, response.text
    assert fragment in str(response.json()["detail"])
    assert httpx.get(f"{base_url}/documents", timeout=30).json()["total"] == 3, "nothing stored was lost"


def test_wait_without_a_worker_answers_accepted(base_url: str) -> None:
    response = httpx.put(
        f"{base_url}/documents/late", params={"wait": "true", "timeout": 0.3}, json={"text": "cat"}, timeout=30
    )
    # Stored and queued, not failed: 202 with indexed false, and the document waits for a worker.
    assert response.status_code == 202 and response.json()["indexed"] is False
    assert httpx.get(f"{base_url}/documents/late", timeout=30).json()["status"] == "pending"


@pytest.mark.parametrize("escaped", ["%ED%A0%80", "%FF%FE%FD", "ok%C3", "%C3%28"])
def test_an_id_whose_escapes_are_not_utf8_is_refused_at_every_route(base_url: str, escaped: str) -> None:
    # The server decodes such escapes with replacement characters: two different ids were one document.
    for method in ("put", "get", "delete"):
        body = {"text": "two ids, one document"} if method == "put" else None
        response = httpx.request(method, f"{base_url}/documents/{escaped}", json=body, timeout=30)
        assert response.status_code == 422, (method, response.text)
        assert response.json()["detail"].startswith("id: the path's %-escapes are not UTF-8")
    assert httpx.get(f"{base_url}/documents", timeout=30).json()["total"] == 3, "nothing was stored"


def test_an_id_holding_the_replacement_character_itself_is_an_ordinary_id(base_url: str) -> None:
    put = httpx.put(f"{base_url}/documents/a%EF%BF%BDb", json={"text": "a real U+FFFD"}, timeout=30)
    assert put.status_code in (200, 202) and put.json()["added"] == ["a\ufffdb"], put.text
    assert httpx.get(f"{base_url}/documents/a%EF%BF%BDb", timeout=30).json()["id"] == "a\ufffdb"
    assert httpx.delete(f"{base_url}/documents/a%EF%BF%BDb", timeout=30).status_code == 200
