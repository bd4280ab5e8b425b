"""A keep-alive connection whose client's next request has come, but is not read yet, is not closed: not at
its head deadline, not at uvicorn's keep-alive timeout, not to make room for a newcomer at the cap.

Under load the event loop reads a socket only at its next turn, so a deadline or a newcomer can come between
a request's arrival and its read; closing the socket then resets it, request and all (a connected client
searching back to back under a Slowloris attack got ECONNRESET about one run in four). Here the race is
certain: in one turn of the loop the client's request is written and then what the timer (or a newcomer's
`connection_made`) would run, runs. Also the order in which connections at the cap are closed.
"""

from __future__ import annotations

import asyncio
import re
import select
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from uvicorn.server import ServerState

from api.server.capacity import ConnectionLimits
from api.server.connections import GuardedH11Protocol
from api.server.serving import GuardedConfig

REQUEST = b"GET / HTTP/1.1\r\nHost: test\r\n\r\n"


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


@dataclass
class Server:
    port: int
    config: GuardedConfig
    state: ServerState = field(default_factory=ServerState)
    protocols: list[GuardedH11Protocol] = field(default_factory=list)

    def protocol(self) -> GuardedH11Protocol:
        """A protocol made outside the server, as for a connection just accepted (a newcomer)."""
        return GuardedH11Protocol(self.config, self.state, {})


@asynccontextmanager
async def _serving(max_connections: int = 8) -> AsyncIterator[Server]:
    # A long header timeout: here the deadlines come when the test says.
    config = GuardedConfig(_app, ConnectionLimits(header_timeout=60.0, max_connections=max_connections))
    config.lifespan, config.log_level = "off", "warning"
    config.load()
    server = Server(0, config)

    def made() -> GuardedH11Protocol:
        server.protocols.append(server.protocol())
        return server.protocols[-1]

    listener = await asyncio.get_running_loop().create_server(made, "127.0.0.1", 0)
    server.port = listener.sockets[0].getsockname()[1]
    try:
        yield server
    finally:
        listener.close()
        for protocol in server.protocols:
            protocol.transport.close()


async def _response(reader: asyncio.StreamReader) -> bytes:
    """One response's status line, once it came whole."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    match = re.search(rb"content-length: (\d+)", head, flags=re.IGNORECASE)
    assert match is not None, head
    await asyncio.wait_for(reader.readexactly(int(match.group(1))), 5)
    return head.split(b"\r\n", 1)[0]


async def _answered_connection(server: Server) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A client's connection that had one answer and now waits, idle, for its next request."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(REQUEST)
    assert await _response(reader) == b"HTTP/1.1 200 OK"
    return reader, writer


def _send_now(writer: asyncio.StreamWriter) -> None:
    """The next request, in the server's socket when this returns (loopback), not read by its loop yet."""
    writer.write(REQUEST)
    assert writer.transport.get_write_buffer_size() == 0


async def test_a_request_come_as_the_head_deadline_passes_is_answered() -> None:
    async with _serving() as server:
        reader, writer = await _answered_connection(server)
        (connection,) = server.protocols
        assert connection.head_timer is not None  # idle: its deadline runs
        connection.head_timer.cancel()
        _send_now(writer)
        connection._head_timed_out()  # the deadline, in the same turn of the loop
        assert await _response(reader) == b"HTTP/1.1 200 OK"
        writer.close()


async def test_a_request_come_as_the_keep_alive_timeout_passes_is_answered() -> None:
    async with _serving() as server:
        reader, writer = await _answered_connection(server)
        (connection,) = server.protocols
        assert connection.timeout_keep_alive_task is not None
        connection.timeout_keep_alive_task.cancel()
        _send_now(writer)
        connection.timeout_keep_alive_handler()  # uvicorn's keep-alive timeout, in the same turn
        assert await _response(reader) == b"HTTP/1.1 200 OK"
        writer.close()


async def test_a_newcomer_at_the_cap_does_not_close_a_connection_whose_request_came() -> None:
    async with _serving(max_connections=1) as server:
        reader, writer = await _answered_connection(server)
        _send_now(writer)
        assert not server.protocol()._evict_one()  # what a newcomer's connection_made does at the cap
        assert await _response(reader) == b"HTTP/1.1 200 OK"
        writer.close()


async def test_at_the_cap_a_fresh_connection_goes_before_an_idle_one_and_an_idle_one_before_a_refusal() -> None:
    async with _serving(max_connections=2) as server:
        reader, writer = await _answered_connection(server)
        fresh_reader, fresh_writer = await asyncio.open_connection("127.0.0.1", server.port)
        while len(server.protocols) < 2 or server.protocols[1].head_timer is None:
            await asyncio.sleep(0.01)
        assert server.protocol()._evict_one()
        assert await asyncio.wait_for(fresh_reader.read(), 5) == b""  # the fresh one is closed
        assert not server.protocols[0].transport.is_closing()
        assert server.protocol()._evict_one()  # then the idle one, with nothing of its client unread
        assert await asyncio.wait_for(reader.read(), 5) == b""
        for stream in (writer, fresh_writer):
            stream.close()


def _told_closed(writer: asyncio.StreamWriter) -> bool:
    """Whether the server's end of the connection reached the client, the loop not having turned since."""
    poller = select.poll()
    poller.register(writer.get_extra_info("socket").fileno(), select.POLLIN)
    return bool(poller.poll(0))


async def test_an_idle_connection_closed_at_its_deadline_is_told_at_once() -> None:
    # The socket goes at the loop's next turn, which under load comes late; a client that reuses the
    # connection meanwhile would send its request into it, and have it reset.
    async with _serving() as server:
        reader, writer = await _answered_connection(server)
        (connection,) = server.protocols
        assert connection.head_timer is not None
        connection.head_timer.cancel()
        connection._head_timed_out()
        assert _told_closed(writer)
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()


async def test_an_idle_connection_closed_for_a_newcomer_is_told_at_once() -> None:
    async with _serving(max_connections=1) as server:
        reader, writer = await _answered_connection(server)
        assert server.protocol()._evict_one()
        assert _told_closed(writer)
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()


async def test_an_idle_connection_closed_at_the_keep_alive_timeout_is_told_at_once() -> None:
    async with _serving() as server:
        reader, writer = await _answered_connection(server)
        (connection,) = server.protocols
        assert connection.timeout_keep_alive_task is not None
        connection.timeout_keep_alive_task.cancel()
        connection.timeout_keep_alive_handler()
        assert _told_closed(writer)
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()
