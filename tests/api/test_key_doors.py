"""Every door applies the same key rules (search.access.KeySpec): what `semsearch keys create` refuses,
`POST /keys` refuses with a 422 saying the same, and so does the client; what one takes, the others take."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cli_runner import run_cli
from fastapi.testclient import TestClient
from pydantic import SecretStr

from api.client import InvalidRequestError, SemsearchClient
from api.server.app import create_app
from search.settings import Settings

# The client sends with a timeout, which Starlette's TestClient warns it ignores.
pytestmark = pytest.mark.filterwarnings("ignore:You should not use the 'timeout' argument")
ADMIN = "doors-admin"
CASES: list[tuple[dict[str, Any], str | None]] = [
    ({"role": "read"}, None),
    ({"role": "admin", "collections": ["default", "a_b-9"], "expires": "12h", "name": "ok"}, None),
    ({"role": "owner"}, "Input should be 'read', 'write' or 'admin'"),
    ({"role": "read", "collections": ["UPPER"]}, "collections[0]: 'UPPER' is not a collection name"),
    ({"role": "read", "collections": ["_x"]}, "is not a collection name"),
    ({"role": "read", "expires": "2001-02-03T04:05:06Z"}, "has passed: a key must expire in the future"),
    ({"role": "read", "expires": "tomorrow"}, "is neither an ISO 8601 time nor a duration"),
    ({"role": "read", "name": "tab\there"}, "control character"),
]


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Iterator[TestClient]:
    folder = tmp_path_factory.mktemp("key-doors")
    settings = Settings(
        data_dir=folder, model=str(tiny_model_dir), dtype="float32", device="cpu", api_key=SecretStr(ADMIN)
    )
    with TestClient(create_app(settings), headers={"Authorization": f"Bearer {ADMIN}"}) as client:
        yield client


def _cli(tmp_path: Path, case: dict[str, Any]) -> str | None:
    args = ["keys", "create", "--role", case["role"], "--name", case.get("name", "")]
    args += [f"--collection={name}" for name in case.get("collections", [])]
    args += [f"--expires={case['expires']}"] if "expires" in case else []
    done = run_cli(args, {**os.environ, "SEMSEARCH_DATA_DIR": str(tmp_path / "data")})
    return None if done.returncode == 0 else done.stderr


def _body(case: dict[str, Any]) -> dict[str, Any]:
    body = {key: value for key, value in case.items() if key != "expires"}
    return {**body, "expires_at": case["expires"]} if "expires" in case else body


@pytest.mark.parametrize(("case", "says"), CASES)
def test_every_door_refuses_the_same_keys(
    api: TestClient, tmp_path: Path, case: dict[str, Any], says: str | None
) -> None:
    cli = _cli(tmp_path, case)
    answer = api.post("/keys", json=_body(case))
    client = SemsearchClient("http://testserver", api_key=ADMIN, http_client=api, retries=0)
    try:
        collections, name = case.get("collections"), case.get("name", "")
        client.create_key(case["role"], collections=collections, expires_at=case.get("expires"), name=name)
        refused = None
    except InvalidRequestError as exc:
        refused = str(exc)
    if says is None:
        assert cli is None and answer.status_code == 201 and refused is None, (cli, answer.text, refused)
    else:
        assert cli is not None and says in cli
        assert answer.status_code == 422 and says in answer.text
        assert refused is not None and says in refused
