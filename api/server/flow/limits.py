"""Request size limits as a pure ASGI middleware: bodies over the limit get 413 before they fill memory."""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyTooLargeError(Exception):
    """Raised into the application when a streamed body passes the limit (it then stops reading)."""


class BodySizeLimit:
    """Refuses request bodies over `max_bytes` with 413 and a JSON `{"detail": ...}`.

    A declared Content-Length over the limit is refused before anything is read. A body sent in
    chunks (or with a Content-Length that understates it) is counted as it streams; the application
    is stopped at the first chunk past the limit and whatever it would have answered is replaced by
    the 413, so no route ever sees a partial body."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The ASGI entry point."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is None:
            await _refuse(send, 400, "the Content-Length header must be a non-negative whole number")
            return
        if declared > self.max_bytes:
            await _refuse(send, 413, self._message())
            return
        await self._guarded(scope, receive, send)

    async def _guarded(self, scope: Scope, receive: Receive, send: Send) -> None:
        received = 0
        too_large = False
        started = False

        async def counting_receive() -> Message:
            nonlocal received, too_large
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    too_large = True
                    raise BodyTooLargeError(self._message())
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if too_large:
                return  # the application's answer to a cut-off body is replaced by the 413 below
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except Exception:
            # Whatever the cut-off body made the application raise (our error, or its own wrapped
            # around it) is the 413 below; any other error is not ours to hide.
            if not too_large:
                raise
        if too_large and not started:
            await _refuse(send, 413, self._message())

    def _message(self) -> str:
        return (
            f"the request body is larger than the limit of {self.max_bytes} bytes "
            "(SEMSEARCH_MAX_BODY_BYTES): send fewer or shorter texts per request"
        )


def _content_length(scope: Scope) -> int | None:
    """The declared body length (0 when none is declared), or None when the header is malformed."""
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            text = value.decode("latin-1").strip()
            return int(text) if text.isascii() and text.isdigit() else None
    return 0


async def _refuse(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status == 413:
        # The rest of the body is not read: the client must not reuse this connection for another request.
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
