"""Schemathesis fuzzes every operation of the OpenAPI schema against a real uvicorn server.

Each operation gets a few generated requests, valid and deliberately invalid (the default modes),
sent over real HTTP to a server behind an API key (as `semsearch serve` with SEMSEARCH_API_KEY
runs), with its indexing worker beside it: none may get a 5xx, and every answer must have a declared status code, the
declared content type and a body that matches the declared schema. Derandomised, so a failure
reproduces on every run.

The schema is taken from the application at import time (pytest parametrizes one test per
operation at collection, before any server runs); `test_the_server_serves_the_fuzzed_schema`
checks that the running server serves that very schema. (Schemathesis's fixture-based lazy
loading does not work with pytest 9, which has no `Function._nodeid` any more.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from api.server.app import create_app
from search.settings import Settings

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
# Building the app loads nothing (the model, index and store load when a server starts).
OPENAPI = create_app(Settings(data_dir=Path("unused"))).openapi()
schema = schemathesis.openapi.from_dict(OPENAPI)


AUTH = {"Authorization": "Bearer s3cret"}


def test_the_server_serves_the_fuzzed_schema(keyed_worker_url: str) -> None:
    assert httpx.get(f"{keyed_worker_url}/openapi.json", timeout=30).json() == OPENAPI


@schema.parametrize()
@settings(max_examples=12, deadline=5000, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
def test_every_operation_survives_fuzzing(case: Any, keyed_worker_url: str) -> None:
    # With the indexing worker running, as `semsearch serve` runs by default: writes get indexed.
    case.call_and_validate(base_url=keyed_worker_url, checks=CHECKS, timeout=90, headers=AUTH)


@schema.parametrize()
@settings(max_examples=3, deadline=5000, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
def test_every_operation_without_the_key_is_refused_cleanly(case: Any, keyed_worker_url: str) -> None:
    # No key: each protected operation answers 401 (a declared status, with a declared body).
    case.call_and_validate(base_url=keyed_worker_url, checks=CHECKS, timeout=90)
