"""Every error the API answers, as JSON that any encoder takes, with the status codes declared for clients.

FastAPI's own 422 handler echoes the rejected value, and a rejected NaN, Infinity or lone UTF-16
surrogate cannot be written as JSON: the 422 became a 500. Here each error body goes through
`json_safe` first, and a long rejected value is shown as a preview (api/server/bodies.py). An
overloaded server is a 429 with Retry-After, a stopping one a 503 with Retry-After; a text the
encoder refuses alone, or a search asking for more hits than a request may, is a 422. A database
that is unavailable or busy, on any route, is a 503 with Retry-After that says so
(search.storage.outage tells them from the faults that stay 500s), logged once per outage by the
store, not once per request.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException

from api.server.bodies import RefusedBody, validation_detail
from api.server.flow.admission import AdmissionClosedError, AdmissionRefusedError
from api.server.flow.batcher import BatcherOverloadedError, BatcherStoppedError, TextEncodingError
from api.server.flow.budget import SearchBudgetError
from api.server.schemas import ErrorBody
from search.storage.outage import RETRY_AFTER, CommitUnknownError, classify
from search.validation import json_safe

# Every error any protected route can give, declared so that clients (and the schema fuzz test) know
# them: 400 an unreadable body, 401 a missing or wrong key, 403 a key whose role is too low, 404 a key
# that does not reach the collection (or no such thing), 413 a body over the size limit, 422 a bad request
# (a plain-text detail naming the problem, or the list of pydantic's validation errors), 429 an
# overloaded server and 503 a stopping one or an unavailable database (both with Retry-After).
_CODES = (400, 401, 403, 404, 413, 422, 429, 503)
ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorBody} for code in _CODES}


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    # A long body was validated in a thread (api/server/bodies.py): its errors are already written.
    detail = exc.body.detail if isinstance(exc.body, RefusedBody) else validation_detail(exc.errors())
    return JSONResponse(status_code=422, content={"detail": detail})


async def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    return JSONResponse({"detail": json_safe(exc.detail)}, status_code=exc.status_code, headers=exc.headers)


async def _overloaded(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AdmissionRefusedError | BatcherOverloadedError)
    request.app.state.metrics.overloaded.inc()
    # 429, not 503: the server works, it has as much as it may take; clients retry both after Retry-After.
    return JSONResponse({"detail": str(exc)}, status_code=429, headers={"Retry-After": str(exc.retry_after)})


async def _stopped(_request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=503, headers={"Retry-After": "5"})


async def _refused_text(_request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": json_safe(str(exc))}, status_code=422)


async def _database(_request: Request, exc: Exception) -> JSONResponse:
    failure = classify(exc)
    if failure is None:
        raise exc  # a fault of the program or the schema: the 500 it is, with its traceback
    if isinstance(exc, CommitUnknownError):
        detail = str(exc)
    else:
        detail = f"{failure.describe()}, so this request was not carried out; retry it in a few seconds"
    return JSONResponse({"detail": detail}, status_code=503, headers={"Retry-After": str(RETRY_AFTER[failure.kind])})


async def _over_budget(_request: Request, exc: Exception) -> JSONResponse:
    # 422, as for a top_k past its maximum: the request is well formed, and asks for more than one may.
    return JSONResponse({"detail": str(exc)}, status_code=422)


def install(app: FastAPI) -> None:
    """Register the handlers on `app`."""
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(AdmissionRefusedError, _overloaded)
    app.add_exception_handler(BatcherOverloadedError, _overloaded)
    app.add_exception_handler(AdmissionClosedError, _stopped)
    app.add_exception_handler(BatcherStoppedError, _stopped)
    app.add_exception_handler(TextEncodingError, _refused_text)
    app.add_exception_handler(SQLAlchemyError, _database)
    app.add_exception_handler(CommitUnknownError, _database)
    app.add_exception_handler(SearchBudgetError, _over_budget)
