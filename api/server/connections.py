"""Connection limits for `semsearch serve`: a deadline for each request head and a cap on open connections.

uvicorn alone cannot hold off slow or idle clients. Its keep-alive timer starts only after a response
and stops at the first byte of the next request, so a connection that never finishes its request head
(or never sends one) stays open for ever. `limit_concurrency` counts such idle connections too, and
once they fill it every request of every client gets 503: it hands the server to whoever holds the
most idle sockets. Here, on uvicorn's own h11 protocol:

- a connection that is not being answered (fresh, between requests, or answered while its client still
  sends) must complete a request head within `header_timeout` seconds, or it is closed (a 408 first when
  part of a head came). Trickling bytes does not extend the deadline. A connection between requests
  whose client's next request has come but is not read yet (the loop is busy and reads it at its next
  turn) is not closed then: closing a socket with unread input resets it, and the request with it; that
  request gets a deadline of its own. A connection closed so is told at once (its write side shut), not
  at the loop's next turn when the socket goes, so that a client about to reuse it sees it closed.
- a request body must keep coming: at least `MIN_BODY_BYTES` (or its rest) in each `header_timeout`,
  unless the server itself stopped reading it (the app has not taken what came) or the client waits
  for 100 Continue; else the connection is closed (a 408 first if no answer started).
- at most `max_connections` are open, below the process's file limit. A connection beyond it closes the
  one that has waited longest for a first request (else, when every one has had answers, the one idle
  longest after them); when none waits (every one is being answered) the newcomer gets 503 with
  Retry-After and is closed. A connection between requests whose client's next request has come (not
  yet read) is not chosen. A client that sends its request at once is thus never shut out by idle
  sockets, however many an attacker opens, and a client's keep-alive connection is not closed for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import select
import socket
import weakref
from typing import Any

import h11
from uvicorn.config import Config
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.server import ServerState

from api.server.capacity import ACCEPTS, ConnectionLimits, Notice, connection_limits

RETRY_AFTER_SECONDS = 1
# A refused connection stays open this long after its 503 (its request is read and dropped) so that its
# close does not reset the connection before the client has read the answer; at most this many at once.
LINGER_SECONDS = 2.0
MAX_LINGERING = 16
# What a request body must bring in each header timeout: about 100 bytes a second at the default 10 s.
MIN_BODY_BYTES = 1024

TIMED_OUT = Notice(
    "closed %d connection(s) that sent no complete request head within %g s (SEMSEARCH_HEADER_TIMEOUT_SECONDS)"
)
EVICTED = Notice("closed %d idle connection(s) for new ones at the connection limit (%d, SEMSEARCH_MAX_CONNECTIONS)")
SLOW_BODY = Notice(
    "closed %d connection(s) whose request body brought under 1 KiB in %g s (SEMSEARCH_HEADER_TIMEOUT_SECONDS)"
)
REFUSED = Notice("refused %d connection(s) with 503: all %d (SEMSEARCH_MAX_CONNECTIONS) were being answered")


def _response(status: bytes, headers: list[bytes], detail: str = "") -> bytes:
    body = json.dumps({"detail": detail}).encode() if detail else b""
    head = [b"HTTP/1.1 " + status, *headers, b"connection: close", b"content-length: %d" % len(body)]
    if body:
        head.append(b"content-type: application/json")
    return b"\r\n".join(head) + b"\r\n\r\n" + body


TIMEOUT_RESPONSE = _response(b"408 Request Timeout", [])
REFUSED_RESPONSE = _response(
    b"503 Service Unavailable",
    [b"retry-after: %d" % RETRY_AFTER_SECONDS],
    f"the server holds as many connections as it may (SEMSEARCH_MAX_CONNECTIONS); retry in {RETRY_AFTER_SECONDS} s",
)


class _Waiting:
    """A server's connections that wait for their client, oldest first: for a first request (`fresh`) or
    for another (`idle`); and how many of its refused connections are still open."""

    def __init__(self) -> None:
        self.fresh: dict[GuardedH11Protocol, None] = {}
        self.idle: dict[GuardedH11Protocol, None] = {}
        self.lingering = 0

    def add(self, connection: GuardedH11Protocol) -> None:
        (self.idle if connection.answered else self.fresh)[connection] = None

    def discard(self, connection: GuardedH11Protocol) -> None:
        self.fresh.pop(connection, None)
        self.idle.pop(connection, None)

    def oldest(self) -> GuardedH11Protocol | None:
        """The connection that has waited longest for a first request, else the one idle longest whose
        client has not sent its next request already."""
        if self.fresh:
            return next(iter(self.fresh))
        return next((connection for connection in self.idle if not connection.input_unread()), None)


# Header timeout of a protocol used without serving.py's config (`uvicorn --http ...`): the setting's default.
DEFAULT_HEADER_TIMEOUT = 10.0
_WAITING: weakref.WeakKeyDictionary[ServerState, _Waiting] = weakref.WeakKeyDictionary()


def _waiting(state: ServerState) -> _Waiting:
    return _WAITING.setdefault(state, _Waiting())


@functools.cache
def _default_limits() -> ConnectionLimits:
    return connection_limits(DEFAULT_HEADER_TIMEOUT, None)


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a request-head deadline and a cap on open connections (module doc).

    Its limits come from the config's `connection_limits` (api/server/serving.py), else the defaults."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        ACCEPTS.claim()  # uvicorn makes a protocol for each accepted connection, first thing
        super().__init__(config, server_state, app_state, _loop)
        limits = getattr(config, "connection_limits", None)
        self.limits = limits if isinstance(limits, ConnectionLimits) else _default_limits()
        self.waiting = _waiting(server_state)
        self.head_timer: asyncio.TimerHandle | None = None
        self.body_timer: asyncio.TimerHandle | None = None
        self.body_bytes = 0  # of the request body, since the body timer last looked
        self.answered = False  # a response went out on this connection
        self.refused = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if len(self.connections) >= self.limits.max_connections and not self._evict_one():
            self._refuse(transport)
            return
        super().connection_made(transport)
        self._track_client()

    def data_received(self, data: bytes) -> None:
        if self.refused:  # a refused connection's request is read only to be dropped
            return
        if self.conn.their_state is h11.SEND_BODY:
            self.body_bytes += len(data)
        super().data_received(data)

    def handle_events(self) -> None:
        super().handle_events()
        self._track_client()

    def on_response_complete(self) -> None:
        self.answered = True
        super().on_response_complete()
        self._track_client()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_waiting()
        self._stop_body_timer()
        if self.refused:
            self.waiting.lingering -= 1
            return
        super().connection_lost(exc)

    def timeout_keep_alive_handler(self) -> None:
        """uvicorn's keep-alive timeout (which closes an idle connection before the head deadline by default),
        unless the next request came and is not read yet: closing would reset it, and reading it stops the
        timer set here."""
        if not self.input_unread():
            self._tell_closed()
            super().timeout_keep_alive_handler()
        elif not self.transport.is_closing():
            self.timeout_keep_alive_task = self.loop.call_later(
                self.timeout_keep_alive, self.timeout_keep_alive_handler
            )

    def _track_client(self) -> None:
        """Start the head deadline when the connection begins to wait for its client (nothing of it is
        being answered), stop it when a request arrives; watch a request's body while it comes."""
        open_ = not self.transport.is_closing()
        waiting = (self.cycle is None or self.cycle.response_complete) and open_
        if waiting and self.head_timer is None:
            self.head_timer = self.loop.call_later(self.limits.header_timeout, self._head_timed_out)
            self.waiting.add(self)
        elif not waiting:
            self._stop_waiting()
        receiving = not waiting and open_ and self.conn.their_state is h11.SEND_BODY
        if receiving and self.body_timer is None:
            self.body_bytes = 0
            self.body_timer = self.loop.call_later(self.limits.header_timeout, self._body_check)
        elif not receiving:
            self._stop_body_timer()

    def input_unread(self) -> bool:
        """Whether the client sent something (or closed) that the loop has not read yet: under load the loop
        reads a socket only at its next turn, and a deadline or a newcomer may come first."""
        sock = self.transport.get_extra_info("socket")
        if sock is None:
            return False
        poller = select.poll()
        poller.register(sock.fileno(), select.POLLIN)
        return bool(poller.poll(0))

    def _tell_closed(self) -> None:
        """Send the client the end of the connection now (when all written has gone), before the transport
        closes the socket at the loop's next turn: meanwhile a client would still take it for open, send
        its next request into it and have it reset."""
        sock = self.transport.get_extra_info("socket")
        if sock is not None and not self.transport.get_write_buffer_size():
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_WR)

    def _stop_body_timer(self) -> None:
        if self.body_timer is not None:
            self.body_timer.cancel()
            self.body_timer = None

    def _body_check(self) -> None:
        """Close a connection whose request body brought under `MIN_BODY_BYTES` in the last header timeout,
        unless the server stopped reading it or the client waits for 100 Continue."""
        self.body_timer = None
        if self.conn.their_state is not h11.SEND_BODY or self.transport.is_closing():
            return
        cycle = self.cycle
        if self.body_bytes >= MIN_BODY_BYTES or self.flow.read_paused or cycle.waiting_for_100_continue:
            self.body_bytes = 0
            self.body_timer = self.loop.call_later(self.limits.header_timeout, self._body_check)
            return
        if not cycle.response_started:
            self.transport.write(TIMEOUT_RESPONSE)
        SLOW_BODY.add(self.limits.header_timeout)
        self.transport.close()

    def _stop_waiting(self) -> None:
        if self.head_timer is not None:
            self.head_timer.cancel()
            self.head_timer = None
        self.waiting.discard(self)

    def _head_timed_out(self) -> None:
        self.head_timer = None
        self.waiting.discard(self)
        if self.transport.is_closing():
            return
        partial = bool(self.conn.trailing_data[0]) and self.conn.their_state is h11.IDLE
        if self.answered and not partial and self.input_unread():
            # The next request came as the deadline passed: closing would reset it. Once read, it has its own
            # deadline (the one set here), and a part of a head at that one is closed with a 408.
            self._track_client()
            return
        if partial:
            self.transport.write(TIMEOUT_RESPONSE)  # part of a head came: say why it is closed
        if partial or not self.answered:  # not a keep-alive connection left idle after its answers
            TIMED_OUT.add(self.limits.header_timeout)
        self._tell_closed()
        self.transport.close()

    def _evict_one(self) -> bool:
        """Close the connection that has waited longest for a first request, else the one idle longest after
        its answers (whose next request has not come); False when none waits."""
        while (victim := self.waiting.oldest()) is not None:
            victim._stop_waiting()
            if not victim.transport.is_closing():
                victim._tell_closed()
                victim.transport.close()
                EVICTED.add(self.limits.max_connections)
                return True
        return False

    def _refuse(self, transport: asyncio.Transport) -> None:
        """Answer 503 with Retry-After at once, then close (after reading what the client sends for a while,
        so that the close does not reset the connection before the answer is read)."""
        self.refused, self.transport = True, transport
        self.waiting.lingering += 1
        REFUSED.add(self.limits.max_connections)
        transport.write(REFUSED_RESPONSE)
        if self.waiting.lingering > MAX_LINGERING or not transport.can_write_eof():
            transport.close()
            return
        transport.write_eof()
        self.loop.call_later(LINGER_SECONDS, transport.close)
