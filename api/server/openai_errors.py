"""Errors of the OpenAI-compatible routes (`/v1/*`) in OpenAI's shape.

OpenAI's clients read an error's reason from `{"error": {"message", "type", "param", "code"}}`; from
the `{"detail": ...}` every other route answers, the official `openai` client showed only
"Error code: 422". This middleware rewrites the error answers under /v1 alone, whatever produced
them (a handler of api/server/errors.py, a route, the body-size limit), so each error keeps one
author and the other routes keep `{"detail"}`. A route that knows the OpenAI `code` or `param` of
its error gives them in its detail: `{"message": ..., "code": ..., "param": ...}`."""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any

from pydantic import BaseModel
from starlette.types import ASGIApp, Message, Receive, Scope, Send

PREFIX = "/v1"
_CODES = {401: "invalid_api_key", 404: "not_found", 413: "request_too_large", 429: "rate_limit_exceeded"}


class OpenAIError(BaseModel):
    """What went wrong: `message` for a person, `param` the request field at fault, `code` a fixed name."""

    message: str
    type: str
    param: str | None
    code: str | None


class OpenAIErrorBody(BaseModel):
    """Every error of the OpenAI-compatible routes."""

    error: OpenAIError


# The errors those routes declare (as api/server/errors.py's ERRORS for the others), 404 an unknown model.
OPENAI_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": OpenAIErrorBody} for code in (400, 401, 404, 413, 422, 429, 503)
}


def is_openai_path(path: str) -> bool:
    """Whether `path` is one of the OpenAI-compatible routes."""
    return path == PREFIX or path.startswith(PREFIX + "/")


def openai_error(status: int, body: bytes) -> dict[str, Any]:
    """The OpenAI error body for an answer of `status` whose body was `body` (`{"detail": ...}`, or
    anything else: its text is the message)."""
    try:
        parsed: Any = json.loads(body)
    except ValueError:
        parsed = body.decode("utf-8", "replace").strip()
    detail = parsed.get("detail", parsed) if isinstance(parsed, dict) else parsed
    param: str | None = None
    code: str | None = _CODES.get(status)
    if isinstance(detail, dict) and "message" in detail:
        param, code = detail.get("param", param), detail.get("code", code)
        message = str(detail["message"])
    elif isinstance(detail, list):  # pydantic's validation errors: each "where: what"
        message, param = _validation_message(detail)
    else:
        message = detail if isinstance(detail, str) and detail else _reason(status)
    kind = "server_error" if status >= 500 else "rate_limit_error" if status == 429 else "invalid_request_error"
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def _validation_message(errors: list[Any]) -> tuple[str, str | None]:
    parts, params = [], []
    for item in errors:
        if not isinstance(item, dict):
            parts.append(str(item))
            continue
        where = [str(p) for p in item.get("loc", [])]
        where = where[1:] if where[:1] == ["body"] else where
        params.append(".".join(where))
        parts.append(f"{'.'.join(where)}: {item.get('msg', '')}" if where else str(item.get("msg", "")))
    return "; ".join(parts), next((p for p in params if p), None)


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return f"HTTP {status}"


class OpenAIErrors:
    """ASGI middleware: error answers (4xx, 5xx) under /v1 in OpenAI's shape; everything else as it is."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_openai_path(scope["path"]):
            await self.app(scope, receive, send)
            return
        start: Message | None = None
        body = bytearray()

        async def rewriting(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start" and message["status"] >= 400:
                start = message  # held until the body is complete
                return
            if start is None or message["type"] != "http.response.body":
                await send(message)
                return
            body.extend(message.get("body", b""))
            if message.get("more_body", False):
                return
            new = json.dumps(openai_error(start["status"], bytes(body))).encode()
            headers = [
                (k, v) for k, v in start.get("headers", []) if k.lower() not in (b"content-length", b"content-type")
            ]
            headers += [(b"content-type", b"application/json"), (b"content-length", str(len(new)).encode())]
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": new})

        await self.app(scope, receive, rewriting)
