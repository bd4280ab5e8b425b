"""Every door applies the same write rules (search.validation): what the CLI refuses from a JSON Lines
file, the HTTP API refuses with a 422 naming the same field, and so does the client (which keeps no
copy of the rules: the server's answer is its error); what one takes, the others take."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from api.client import InvalidRequestError, SemsearchClient
from api.server.app import create_app
from indexer.ingest.sources import Rejected, read_sources
from search.settings import Settings
from search.storage.records import DocumentIn
from search.validation import MAX_DOCUMENT_CHARS, MAX_ID_CHARS, MAX_METADATA_DEPTH, MAX_TITLE_CHARS

# The client sends with a timeout, which Starlette's TestClient warns it ignores.
pytestmark = pytest.mark.filterwarnings("ignore:You should not use the 'timeout' argument")

# The three bad records of issue 20, with the field each must be refused for.
NAN_METADATA = ({"id": "nan", "text": "fine", "metadata": {"score": float("nan")}}, "metadata")
NUL_TEXT = ({"id": "nul", "text": "a\x00b"}, "text")
LONG_ID = ({"id": "i" * 600, "text": "fine"}, "id")
JSON = {"content-type": "application/json"}


def _nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


# Records as a JSON Lines file or a request body holds them, and the field a door must name (None: valid).
TABLE: list[tuple[dict[str, Any], str | None]] = [
    NAN_METADATA,
    NUL_TEXT,
    LONG_ID,
    ({"id": "inf", "text": "t", "metadata": {"x": [1, float("-inf")]}}, "metadata"),
    ({"id": "big", "text": "t", "metadata": {"x": 2**64}}, "metadata"),
    ({"id": "key", "text": "t", "metadata": {"a\x00": 1}}, "metadata"),
    ({"id": "longkey", "text": "t", "metadata": {"k" * 300: 1}}, "metadata"),
    ({"id": "deep", "text": "t", "metadata": _nested(MAX_METADATA_DEPTH + 1)}, "metadata"),
    ({"id": "huge", "text": "t", "metadata": {"k": "x" * 70_000}}, "metadata"),
    ({"id": "list", "text": "t", "metadata": [1]}, "metadata"),
    ({"id": "nultitle", "title": "a\x00", "text": "t"}, "title"),
    ({"id": "surrogate", "title": "a\ud800", "text": "t"}, "title"),
    ({"id": "longtitle", "title": "t" * (MAX_TITLE_CHARS + 1), "text": "t"}, "title"),
    ({"id": "numtitle", "title": 5, "text": "t"}, "title"),
    ({"id": "blank", "text": " \n\t "}, "text"),
    ({"id": "empty", "text": ""}, "text"),
    ({"id": "notext"}, "text"),
    ({"id": "numtext", "text": 42}, "text"),
    ({"id": "surrogatetext", "text": "a\udc00"}, "text"),
    ({"id": "longtext", "text": "a" * (MAX_DOCUMENT_CHARS + 1)}, "text"),
    ({"id": "", "text": "t"}, "id"),
    ({"id": "   ", "text": "t"}, "id"),
    ({"id": "a\nb", "text": "t"}, "id"),
    ({"id": "a\x00b", "text": "t"}, "id"),
    ({"id": "i" * (MAX_ID_CHARS + 1), "text": "t"}, "id"),
    ({"text": "no id"}, "id"),
    # Valid at the limits: both doors take them.
    ({"id": "i" * MAX_ID_CHARS, "text": "t"}, None),
    ({"id": " spaced id ", "title": "t" * MAX_TITLE_CHARS, "text": "a" * MAX_DOCUMENT_CHARS}, None),
    ({"id": "ok", "text": "ü ☀ 😀", "metadata": {"n": -(2**63), "deep": _nested(MAX_METADATA_DEPTH - 1)}}, None),
]
# Where the doors read the same JSON differently, on purpose (so the table above leaves these out):
# JSON Lines corpora carry BEIR's integer `_id`s and null titles or metadata, which the CLI reads as a
# string id and as absent; the API's typed schema takes the id as a string and no nulls.


def _field(path: str) -> str:
    """The document field a rule's path is in: "metadata.x[1]" -> "metadata"."""
    return path.split(".")[0].split("[")[0]


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Iterator[TestClient]:
    """The API app over an empty data directory, over HTTP semantics in this process."""
    data = tmp_path_factory.mktemp("doors")
    settings = Settings(data_dir=data, model=str(tiny_model_dir), dtype="float32", device="cpu", backend="torch")
    with TestClient(create_app(settings)) as client:
        yield client


def _cli_verdict(tmp_path: Path, record: dict[str, Any]) -> str | None:
    """The field the CLI's reader refuses `record` for (a JSON Lines file of it alone), or None."""
    path = tmp_path / "one.jsonl"
    path.write_text(json.dumps(record) + "\n", encoding="ascii")
    [read] = read_sources([path])
    if isinstance(read, DocumentIn):
        return None
    assert isinstance(read, Rejected) and read.field is not None, read
    assert str(read).startswith(f"{path}:1: {read.field}: ")
    return _field(read.field)


def _post(api: TestClient, record: dict[str, Any]) -> httpx.Response:
    # The body as JSON text holds NaN and lone surrogates (escaped), as a JSON Lines file does.
    return api.post("/documents", content="[" + json.dumps(record) + "]", headers=JSON)


def _api_verdict(api: TestClient, record: dict[str, Any]) -> str | None:
    """The field POST /documents refuses `record` for (its 422's location), or None when it is stored."""
    response = _post(api, record)
    if response.status_code == 200:
        return None
    assert response.status_code == 422, response.text
    [error] = response.json()["detail"]
    assert error["loc"][:2] == ["body", 0], error
    return str(error["loc"][2])


def _client_verdict(api: TestClient, record: dict[str, Any]) -> str | None:
    """The field the client's `put_documents` is refused for, or None when the write went through."""
    client = SemsearchClient("http://testserver", http_client=api, retries=0)
    try:
        client.put_documents([record])
    except ValidationError as exc:  # not even a document to send (a number for a text, no id): the typed model says
        return str(exc.errors()[0]["loc"][0])
    except InvalidRequestError as exc:
        assert exc.status_code == 422, exc
        detail = exc.body["detail"]
        if isinstance(detail, str):  # one document is a PUT, whose id is checked in the path
            return detail.split(":")[0]
        [error] = detail
        assert error["loc"][0] == "body", error
        return str(error["loc"][-1])
    return None


@pytest.mark.parametrize(("record", "field"), TABLE, ids=[f"{i}-{f}" for i, (_, f) in enumerate(TABLE)])
def test_the_api_refuses_exactly_what_the_cli_refuses(
    api: TestClient, tmp_path: Path, record: dict[str, Any], field: str | None
) -> None:
    assert _cli_verdict(tmp_path, record) == field
    assert _api_verdict(api, record) == field
    assert _client_verdict(api, record) == field


@pytest.mark.parametrize(("record", "field"), [NAN_METADATA, NUL_TEXT, LONG_ID], ids=["nan", "nul", "long-id"])
def test_the_issues_three_records_get_a_422_naming_the_field(
    api: TestClient, record: dict[str, Any], field: str
) -> None:
    posted = _post(api, record)
    assert posted.status_code == 422, posted.text
    [error] = posted.json()["detail"]
    assert error["loc"] == ["body", 0, field]
    assert f"{field}" in error["msg"], error
    body = json.dumps({k: v for k, v in record.items() if k != "id"})
    put = api.put(f"/documents/{record['id']}", content=body, headers=JSON)
    assert put.status_code == 422, put.text
    detail = put.json()["detail"]
    if field == "id":  # the id is in the path, checked by the route (by the same rule)
        assert detail.startswith("id: has 600 characters; it must have 1 to 512"), detail
    else:
        assert [error["loc"] for error in detail] == [["body", field]]
    assert api.get(f"/documents/{record['id']}").status_code == 404


def test_the_client_reports_the_servers_reason_for_values_json_cannot_carry(api: TestClient) -> None:
    # NaN and lone surrogates have no strict JSON form: the client sends them as Python's json writes
    # them, so the server's rule refuses them by name (they once failed in httpx, naming nothing).
    client = SemsearchClient("http://testserver", http_client=api, retries=0)
    with pytest.raises(InvalidRequestError, match=r"metadata\.score: nan is not a finite number"):
        client.put_document("nan", "fine", metadata={"score": float("nan")})
    with pytest.raises(InvalidRequestError, match=r"body\.1\.title: Value error, title: holds a lone UTF-16 surrogate"):
        client.put_documents([{"id": "a", "text": "fine"}, {"id": "b", "title": "x\ud800", "text": "fine"}])
    with pytest.raises(InvalidRequestError, match=r"body\.query: .*unicode"):
        client.search("the cat\udc00")
    assert api.get("/documents/a").status_code == 404  # nothing of the refused request was stored
