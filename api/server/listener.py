"""The event loop of `semsearch serve`: accepting backs off, quietly, when the process runs out of files.

When accept() fails for want of a file descriptor (EMFILE and kin), asyncio's selector loop (CPython
3.11 to 3.13, gh-151615) removes the listener, schedules a retry a second later and then carries on
accepting: up to the backlog (2,048 under uvicorn) times in the same tick, each failure logged with a
traceback and each scheduling one more retry. The server logged "Too many open files" thousands of
times a second and had no time left to answer anyone. Here the listening socket, once accept() fails
so, says "nothing to accept" until asyncio's retry, so the loop stops at the first failure and tries
again a second later; and the failure is logged as one line a minute, not a traceback each time.

The connection cap (api/server/connections.py) keeps client connections below the file limit, so this
is the last line: it holds when something else takes the files.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import time
from typing import Any

from api.server.capacity import ACCEPTS, Notice

RESOURCE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
# Shorter than asyncio's own retry delay (1 s, constants.ACCEPT_RETRY_DELAY), so its retry really accepts.
PAUSE_SECONDS = 0.5
EXHAUSTED = Notice("could not accept %d connection(s): out of file descriptors (%s); retrying each second")


class BackoffSocket(socket.socket):
    """A listening socket whose accept(), after failing for want of a resource, reports nothing to accept
    for `PAUSE_SECONDS` instead of failing again; nor while `ACCEPT_BURST` accepted connections wait for
    their protocol (connections.py's `AcceptGate`)."""

    exhausted_at = -PAUSE_SECONDS

    def accept(self) -> tuple[socket.socket, Any]:
        if time.monotonic() - self.exhausted_at < PAUSE_SECONDS:
            raise BlockingIOError(errno.EAGAIN, "accepting paused: out of file descriptors")
        if not ACCEPTS.open():  # the connections accepted last are not yet counted against the cap
            raise BlockingIOError(errno.EAGAIN, "accepting paused: connections wait to be let in")
        try:
            accepted = super().accept()
        except OSError as exc:
            if exc.errno in RESOURCE_ERRNOS:
                self.exhausted_at = time.monotonic()
            raise
        ACCEPTS.accepted()
        return accepted


def backoff_socket(sock: socket.socket) -> BackoffSocket:
    """`sock`'s descriptor in a `BackoffSocket` (`sock` lets go of it)."""
    if isinstance(sock, BackoffSocket):
        return sock
    return BackoffSocket(sock.family, sock.type, sock.proto, fileno=sock.detach())


class ListeningLoop(asyncio.SelectorEventLoop):
    """asyncio's selector loop serving every listening socket it is given as a `BackoffSocket`."""

    async def create_server(
        self, protocol_factory: Any, host: Any = None, port: Any = None, **kwargs: Any
    ) -> asyncio.Server:
        if kwargs.get("sock") is not None:
            kwargs["sock"] = backoff_socket(kwargs["sock"])
        return await super().create_server(protocol_factory, host, port, **kwargs)


def _exception_handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    exc = context.get("exception")
    if "socket" in context and isinstance(exc, OSError) and exc.errno in RESOURCE_ERRNOS:
        EXHAUSTED.add(exc.strerror)
    else:
        loop.default_exception_handler(context)


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A `ListeningLoop` that logs accept() failures for want of files once a minute (uvicorn's `loop=`)."""
    loop = ListeningLoop()
    loop.set_exception_handler(_exception_handler)
    return loop
