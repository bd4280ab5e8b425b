"""The client's types (api/client/types.py) and limits (api/client/calls.py) cannot drift from the server's:
they are checked against the OpenAPI schema the server itself serves (the client imports nothing of it)."""

from __future__ import annotations

import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from api.client import calls
from api.client.types import (
    ApiKey,
    BatchResults,
    Deleted,
    Document,
    DocumentPage,
    NewApiKey,
    NewDocument,
    SearchResults,
    Stats,
    WriteResult,
)
from api.server.app import create_app
from api.server.schemas import MAX_EMBED_INPUTS
from search.settings import Settings

# Building the app loads nothing (the model, index and store load when a server starts).
OPENAPI = create_app(Settings(data_dir=Path("unused"))).openapi()
SCHEMAS: dict[str, Any] = OPENAPI["components"]["schemas"]


def _json(method: str, path: str) -> dict[str, Any]:
    return OPENAPI["paths"][path][method]["responses"]["200"]["content"]["application/json"]["schema"]


def _body(method: str, path: str) -> dict[str, Any]:
    return OPENAPI["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"]


def _name(ref_holder: dict[str, Any]) -> str:
    return str(ref_holder["$ref"]).rsplit("/", 1)[-1]


# Each client type beside the server schema of the same answer (or, for NewDocument, request), as the
# client's calls read them: every operation the client sends whose answer it parses into a model.
TOP: list[tuple[type[BaseModel], str]] = [
    (SearchResults, _name(_json("post", "/search"))),
    (BatchResults, _name(_json("post", "/search/batch"))),
    (WriteResult, _name(_json("put", "/documents/{doc_id}"))),
    (WriteResult, _name(_json("post", "/documents"))),
    (Document, _name(_json("get", "/documents/{doc_id}"))),
    (DocumentPage, _name(_json("get", "/documents"))),
    (Deleted, _name(_json("delete", "/documents/{doc_id}"))),
    (Stats, _name(_json("get", "/stats"))),
    (NewDocument, _name(_body("post", "/documents")["items"])),
    (NewApiKey, _name(OPENAPI["paths"]["/keys"]["post"]["responses"]["201"]["content"]["application/json"]["schema"])),
    (ApiKey, _name(_json("delete", "/keys/{key_id}"))),
    (ApiKey, _name(SCHEMAS[_name(_json("get", "/keys"))]["properties"]["keys"]["items"])),
]
# Server fields a client type leaves out on purpose, each with the reason ({schema: {field: reason}}).
# None today: a field left out is one a user cannot reach typed.
LEFT_OUT: dict[str, dict[str, str]] = {}


def _refs(schema: Any) -> list[str]:
    """The names of the schemas `schema` refers to, however nested (anyOf, items, ...)."""
    if isinstance(schema, dict):
        own = [_name(schema)] if "$ref" in schema else []
        return own + [name for value in schema.values() for name in _refs(value)]
    if isinstance(schema, list):
        return [name for value in schema for name in _refs(value)]
    return []


def _models(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models an annotation holds, however nested (Optional, list, ...)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [model for arg in typing.get_args(annotation) for model in _models(arg)]


def _pairs(model: type[BaseModel], schema: str) -> Iterator[tuple[type[BaseModel], str]]:
    """`model` and `schema`, then every nested model beside the schema its field refers to."""
    yield model, schema
    properties = SCHEMAS[schema]["properties"]
    for field, info in model.model_fields.items():
        # An enum the server names (a key's Role) is a set of values, which the client holds as a Literal.
        refs = [ref for ref in _refs(properties.get(field, {})) if "enum" not in SCHEMAS[ref]]
        models = _models(info.annotation)
        assert len(refs) == len(models), f"{model.__name__}.{field}: the client has {models}, the server {refs}"
        for nested, ref in zip(models, refs, strict=True):
            yield from _pairs(nested, ref)


PAIRS = list(dict.fromkeys(pair for top in TOP for pair in _pairs(*top)))


@pytest.mark.parametrize(("model", "schema"), PAIRS, ids=[f"{m.__name__}-{s}" for m, s in PAIRS])
def test_each_client_type_has_the_fields_of_the_servers_schema(model: type[BaseModel], schema: str) -> None:
    server = set(SCHEMAS[schema]["properties"]) - set(LEFT_OUT.get(schema, {}))
    assert set(model.model_fields) == server, f"{model.__name__} against the server's {schema}"


def test_every_schema_the_client_reads_is_paired() -> None:
    # Nested answers too: a hit's per-retriever signals, the stats' queue and worker.
    assert {schema for _, schema in PAIRS} >= {"SearchResult", "RetrieverSignal", "QueueHealth", "WorkerHealth"}


def _literal_values(annotation: Any) -> set[Any]:
    if typing.get_origin(annotation) is typing.Literal:
        return set(typing.get_args(annotation))
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return {value for arg in typing.get_args(annotation) for value in _literal_values(arg)}
    return set()


def test_the_document_statuses_are_the_servers() -> None:
    server = set(SCHEMAS[_name(_json("get", "/documents/{doc_id}"))]["properties"]["status"]["enum"])
    assert _literal_values(Document.model_fields["status"].annotation) == server == {"pending", "indexed"}


def test_the_key_roles_are_the_servers() -> None:
    role = SCHEMAS[_name(_json("delete", "/keys/{key_id}"))]["properties"]["role"]
    server = set(SCHEMAS[_name(role)]["enum"])
    assert _literal_values(ApiKey.model_fields["role"].annotation) == server == {"read", "write", "admin"}


def test_the_health_the_client_reads_is_one_the_server_sends() -> None:
    assert "ok" in SCHEMAS[_name(_json("get", "/health"))]["properties"]["status"]["enum"]


def test_the_clients_request_limits_are_the_servers() -> None:
    limit = next(p for p in OPENAPI["paths"]["/documents"]["get"]["parameters"] if p["name"] == "limit")
    server = {
        "documents a write": _body("post", "/documents")["maxItems"],
        "queries a batch": SCHEMAS[_name(_body("post", "/search/batch"))]["properties"]["queries"]["maxItems"],
        "texts an embedding request": MAX_EMBED_INPUTS,  # checked by the route, not declared in the schema
        "documents a page": limit["schema"]["maximum"],
    }
    client = {
        "documents a write": calls.WRITE_BATCH,
        "queries a batch": calls.QUERY_BATCH,
        "texts an embedding request": calls.EMBED_BATCH,
        "documents a page": calls.PAGE_LIMIT,
    }
    assert client == server


def test_the_clients_hits_a_request_are_the_servers_default() -> None:
    # The budget is a setting: the client slices for its default (a lower one answers 422, naming it).
    assert Settings.model_fields["search_max_hits"].default == calls.QUERY_HITS


def test_the_clients_mmr_candidates_are_the_servers_default() -> None:
    mmr = SCHEMAS["MMRRequest"]["properties"]
    assert mmr["fetch_k"]["default"] == calls.MMR_FETCH_K
    # A batch is sliced by its candidates when they outnumber the page: 20 queries x fetch_k 1000.
    assert [len(s) for s in calls.query_slices(["q"] * 20, 5, {"fetch_k": 1000})] == [10, 10]
    assert [len(s) for s in calls.query_slices(["q"] * 600, 10, {"lambda": 0.3})] == [256, 256, 88]
