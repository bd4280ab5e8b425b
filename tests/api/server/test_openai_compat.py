"""The OpenAI-compatible routes as OpenAI clients read them, over real HTTP: errors under /v1 in OpenAI's
shape (the official client's exceptions carry the server's reason), the model list, and unknown model
names refused with `model_not_found`; the other routes keep `{"detail"}`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from pydantic import SecretStr

from api.server.openai_errors import openai_error
from search.settings import Settings
from tests.api.conftest import serve


@pytest.fixture
def aliased(settings: Settings) -> Iterator[tuple[str, Settings]]:
    """A server behind the key "s3cret" that also answers to two OpenAI model names."""
    live = settings.model_copy(
        update={"api_key": SecretStr("s3cret"), "model_aliases": "text-embedding-3-small, ada ,"}
    )
    for url in serve(live):
        yield url, live


def _client(url: str, key: str = "s3cret") -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=60)


def test_the_official_client_shows_the_servers_reason(aliased: tuple[str, Settings]) -> None:
    url, _ = aliased
    client = _client(url)
    with pytest.raises(openai.UnprocessableEntityError) as wrong_size:
        client.embeddings.create(input="cat", model="ada", dimensions=16)
    assert "'dimensions' is 16" in str(wrong_size.value) and "32-dimensional" in str(wrong_size.value)
    assert (wrong_size.value.type, wrong_size.value.param) == ("invalid_request_error", "dimensions")
    with pytest.raises(openai.UnprocessableEntityError) as tokens:
        client.embeddings.create(input=[[101, 102]], model="ada")
    assert "token-id inputs are not supported" in str(tokens.value) and tokens.value.param == "input"
    with pytest.raises(openai.AuthenticationError) as wrong_key:
        _client(url, "nope").embeddings.create(input="cat", model="ada")
    assert "missing or wrong API key" in str(wrong_key.value) and wrong_key.value.code == "invalid_api_key"


def test_models_are_listed_and_unknown_ones_refused(aliased: tuple[str, Settings]) -> None:
    url, settings = aliased
    client = _client(url)
    names = [m.id for m in client.models.list()]
    assert names == [settings.model, Path(settings.model).name, "text-embedding-3-small", "ada"]
    assert client.models.retrieve("text-embedding-3-small").id == "text-embedding-3-small"
    assert client.models.retrieve(settings.model).owned_by == "semsearch"  # a path, slashes and all
    for name in names:
        assert len(client.embeddings.create(input="cat", model=name).data[0].embedding) == 32
    with pytest.raises(openai.NotFoundError) as unknown:
        client.embeddings.create(input="cat", model="text-embedding-ada-002")
    assert unknown.value.code == "model_not_found" and unknown.value.param == "model"
    assert "'text-embedding-ada-002' is not served here" in str(unknown.value)
    with pytest.raises(openai.NotFoundError) as missing:
        client.models.retrieve("gpt-4")
    assert missing.value.code == "model_not_found"


def test_only_v1_errors_change_shape(aliased: tuple[str, Settings]) -> None:
    url, _ = aliased
    auth = {"Authorization": "Bearer s3cret"}
    refused = httpx.post(f"{url}/v1/embeddings", json={"input": []}, headers=auth, timeout=30)
    assert refused.status_code == 422
    error = refused.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and "1 to 2048 texts" in error["message"]
    no_key = httpx.get(f"{url}/v1/models", timeout=30)
    assert no_key.status_code == 401 and no_key.headers["WWW-Authenticate"] == "Bearer"
    assert no_key.json()["error"]["code"] == "invalid_api_key"
    nowhere = httpx.get(f"{url}/v1/nothing", headers=auth, timeout=30)
    assert nowhere.status_code == 404 and nowhere.json()["error"]["message"] == "Not Found"
    # Elsewhere, as before.
    search = httpx.post(f"{url}/search", json={"top_k": 0}, headers=auth, timeout=30)
    assert search.status_code == 422 and "detail" in search.json()
    stats = httpx.get(f"{url}/stats", timeout=30).json()
    assert list(stats) == ["detail"] and stats["detail"].startswith("missing or wrong API key")


def test_a_body_over_the_limit_is_a_413_in_openai_shape(small_body_url: str) -> None:
    refused = httpx.post(f"{small_body_url}/v1/embeddings", json={"input": ["cat " * 2000]}, timeout=30)
    assert refused.status_code == 413
    assert "SEMSEARCH_MAX_BODY_BYTES" in refused.json()["error"]["message"]


def test_every_error_status_has_openai_fields() -> None:
    busy = openai_error(429, b'{"detail": "the server is overloaded"}')["error"]
    assert busy == {
        "message": "the server is overloaded",
        "type": "rate_limit_error",
        "param": None,
        "code": "rate_limit_exceeded",
    }
    for status in (503, 507):
        assert openai_error(status, b'{"detail": "disk full"}')["error"]["type"] == "server_error"
    assert openai_error(500, b"Internal Server Error")["error"]["message"] == "Internal Server Error"
    assert openai_error(502, b"")["error"]["message"] == "Bad Gateway"
    listed = openai_error(422, b'{"detail": [{"loc": ["body", "input", 0], "msg": "bad"}]}')["error"]
    assert (listed["message"], listed["param"]) == ("input.0: bad", "input.0")
