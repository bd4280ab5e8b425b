"""JSON request bodies, read through search.json_input on every route, and validated off the event
loop when they are long.

FastAPI parses a JSON body with `json.loads` and validates it with pydantic on the event loop. A
body nested 1,000 levels deep was a RecursionError; and a 15 MiB `POST /documents` whose metadata
is a list of 2.5 million strings stopped the whole server (even /health) for some 16 s before its
422, as measured: 0.4 s parsing, 8.5 s in the metadata rule's walk, then 4.9 s encoding and 2.2 s
cleaning the rejected list echoed back whole in the 422's `input`, a 12.5 MB answer.

Here every route is a `BoundedRoute`: its request's `json()` refuses text nested deeper than
search.json_input.MAX_JSON_DEPTH with a 422 that says so, and a body over INLINE_BYTES is parsed
(in pieces; an array or object past MAX_JSON_ITEMS is a 422 naming its path, before it is built)
and validated against the route's body model in a worker thread; the route then gets the validated
model, which pydantic passes through without a second walk. A refused long body answers its
errors, as computed in the thread, after the route's dependencies (the API key first).
"""

from __future__ import annotations

import reprlib
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import HTTPException, Request, Response
from fastapi.dependencies.models import Dependant
from fastapi.encoders import jsonable_encoder
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool
from starlette.types import Receive, Scope

from search.json_input import loads, loads_in_pieces
from search.validation import FieldError, json_safe

# Bodies up to this size are parsed and validated on the event loop: the thread's hop costs more.
INLINE_BYTES = 64 * 1024
# A rejected value is shown in the 422 as it came when this small, else as a short preview.
_SHOWN_NODES = 256
_SHOWN_CHARS = 1024
_PREVIEW = reprlib.Repr()
_PREVIEW.maxlevel, _PREVIEW.maxdict, _PREVIEW.maxlist, _PREVIEW.maxstring, _PREVIEW.maxother = 3, 4, 4, 80, 80


@dataclass(frozen=True)
class RefusedBody:
    """What `json()` gives a route whose long body failed validation in the thread: FastAPI's own
    validation then fails at once (after the dependencies), and errors.py answers `detail`."""

    detail: Any


class BoundedRoute(APIRoute):
    """An API route whose JSON body is read by `_BoundedRequest`."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """FastAPI's handler, given the bounded request."""
        handler = super().get_route_handler()
        # The model FastAPI validates the body against, when the body is that one model (not
        # several parameters embedded in one object): a long body is validated against it early.
        model = self.body_field if self.body_field is not None and not self._embed_body_fields else None
        # Query parameters the route does not declare are refused, as unknown body fields are (a
        # misspelt `?top_k=` silently ignored would answer another question); the page is left alone.
        known = _query_names(self.dependant)
        takes = ", ".join(sorted(known)) or "no query parameters"

        async def bounded(request: Request) -> Response:
            unknown = [name for name in request.query_params if name not in known]
            if unknown and self.include_in_schema:
                raise HTTPException(422, f"unknown query parameter {unknown[0]!r}; {self.path} takes {takes}")
            return await handler(_BoundedRequest(request.scope, request.receive, model))

        return bounded


def _query_names(dependant: Dependant) -> set[str]:
    """The query parameters a route declares, its dependencies' (the API key's among them) included."""
    names: set[str] = set()
    stack = [dependant]
    while stack:
        current = stack.pop()
        names.update(param.alias for param in current.query_params)
        stack.extend(current.dependencies)
    return names


class _BoundedRequest(Request):
    def __init__(self, scope: Scope, receive: Receive, model: Any) -> None:
        super().__init__(scope, receive)
        self._model = model

    async def json(self) -> Any:
        """The body as JSON (FastAPI calls this for JSON bodies only)."""
        body = await self.body()
        if len(body) <= INLINE_BYTES:
            return _parsed(loads, body)
        return await run_in_threadpool(_parse_and_validate, body, self._model)


def _parsed(parse: Callable[[bytes], Any], body: bytes) -> Any:
    """`body` parsed by `parse`; past a bound (too deep, too many items) a 422 saying which. Text
    that is not JSON raises json.JSONDecodeError, which FastAPI answers as its own 422."""
    try:
        return parse(body)
    except FieldError as exc:
        raise HTTPException(422, str(exc)) from exc


def _parse_and_validate(body: bytes, model: Any) -> Any:
    value = _parsed(loads_in_pieces, body)
    if model is None:
        return value
    validated, errors = model.validate(value, {}, loc=("body",))
    return RefusedBody(validation_detail(errors)) if errors else validated


def validation_detail(errors: Sequence[Any]) -> Any:
    """pydantic's errors as a 422 shows them: each rejected `input` echoed only when it is small
    (a preview otherwise), every value in a form JSON can carry."""
    return json_safe(jsonable_encoder([_trimmed(error) for error in errors]))


def _trimmed(error: Any) -> Any:
    if isinstance(error, dict) and error.get("type") == "extra_forbidden" and error.get("loc"):
        # pydantic's "Extra inputs are not permitted" names the field in `loc` only.
        error = {**error, "msg": f"unknown field {error['loc'][-1]!r}: this request has no such field"}
    if not isinstance(error, dict) or "input" not in error or _small(error["input"]):
        return error
    return {**error, "input": _PREVIEW.repr(error["input"])}


def _small(value: Any) -> bool:
    """Whether `value` has at most _SHOWN_NODES values and _SHOWN_CHARS characters (it stops counting there)."""
    stack, nodes, chars = [value], 0, 0
    while stack:
        item = stack.pop()
        nodes += 1
        if isinstance(item, str):
            chars += len(item)
        elif isinstance(item, dict | list | tuple):
            if len(item) > _SHOWN_NODES:
                return False
            stack.extend(item.items() if isinstance(item, dict) else item)
        if nodes > _SHOWN_NODES or chars > _SHOWN_CHARS:
            return False
    return True
