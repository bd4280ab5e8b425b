"""Slow and idle clients against the real `semsearch serve` (issue 21, case 5).

Connections that never finished their request head were never closed, and about a file limit's worth of
them stopped the server for everyone while it logged "Too many open files" thousands of times a second.
Here, against the command in its own process with a short header timeout: silent connections, half-sent
and trickled heads and idle keep-alive connections are closed after the timeout; with the open-file limit
lowered to 256, more idle half-open connections than it allows (kept open as they are closed, as an
attacker would) leave a connected client's searches, and new clients, answered, with no log storm; with
every connection busy a newcomer gets 503 with Retry-After; and out of files, accepting backs off quietly.
"""

from __future__ import annotations

import os
import re
import resource
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest

from api.server.capacity import default_max_connections
from indexer.ingest.chunking import Chunker
from indexer.write.pipeline import Indexer
from search.components import make_encoder, open_store
from search.dense.catalog import IndexCatalog
from search.settings import Settings, settings_env
from search.storage.records import DocumentIn

REPO = Path(__file__).resolve().parents[3]
TIMEOUT = 1.0  # SEMSEARCH_HEADER_TIMEOUT_SECONDS of the servers here
FILES = 256  # their open-file limit: a connection cap of 128 by default
HALF_HEAD = b"GET /health HTTP/1.1\r\nHost: attacker\r\nX-Slow: "


@dataclass
class Served:
    url: str
    port: int
    proc: subprocess.Popen[bytes]
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _up(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _limit_files() -> None:  # runs in the server's process before it starts
    resource.setrlimit(resource.RLIMIT_NOFILE, (FILES, FILES))


@contextmanager
def _serve(folder: Path, model: Path, tracebacks: int = 0, **extra: str) -> Iterator[Served]:
    """`semsearch serve` (with its worker) over two documents, its open-file limit lowered to `FILES`;
    its log holds at most `tracebacks` tracebacks at the end."""
    settings = Settings(data_dir=folder / "data", model=str(model), dtype="float32", device="cpu", backend="torch")
    encoder, store = make_encoder(settings), open_store(settings)
    docs = [DocumentIn("pets", "the cat sat on the mat", "Pets"), DocumentIn("space", "the sun and the moon")]
    Indexer(encoder, store, IndexCatalog(store, settings.index_dir), Chunker(encoder)).run(docs)
    store.close()
    port = _port()
    env = {**os.environ, **settings_env(settings), "SEMSEARCH_HEADER_TIMEOUT_SECONDS": str(TIMEOUT), **extra}
    log = folder / "serve.log"
    command = [sys.executable, "-m", "indexer.cli.main", "serve", "--port", str(port)]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, preexec_fn=_limit_files
        )
    served = Served(f"http://127.0.0.1:{port}", port, proc, log)
    try:
        deadline = time.monotonic() + 120
        while not _up(served.url):
            assert proc.poll() is None, served.log_text()
            assert time.monotonic() < deadline, "semsearch serve did not start"
            time.sleep(0.2)
        yield served
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert served.log_text().count("Traceback") <= tracebacks, served.log_text()[-3000:]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Iterator[Served]:
    with _serve(tmp_path_factory.mktemp("slow-clients"), tiny_model_dir) as server:
        yield server


def _connect(served: Served, data: bytes = b"") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", served.port), timeout=10)
    if data:
        sock.sendall(data)
    return sock


def _until_closed(sock: socket.socket, limit: float = 10.0) -> tuple[float, bytes]:
    """Seconds until the server closes `sock` (at most `limit`: then it fails), and what it sent."""
    started, received = time.monotonic(), b""
    sock.settimeout(limit)
    with sock:
        while chunk := sock.recv(4096):
            received += chunk
    return time.monotonic() - started, received


def test_a_silent_connection_is_closed_after_the_header_timeout(served: Served) -> None:
    seconds, received = _until_closed(_connect(served))
    assert received == b""
    assert TIMEOUT * 0.8 <= seconds < TIMEOUT + 2, seconds


def test_a_half_sent_head_gets_408_and_is_closed(served: Served) -> None:
    seconds, received = _until_closed(_connect(served, HALF_HEAD))
    assert received.startswith(b"HTTP/1.1 408 "), received
    assert TIMEOUT * 0.8 <= seconds < TIMEOUT + 2, seconds


def test_trickling_a_head_does_not_extend_the_deadline(served: Served) -> None:
    sock = _connect(served, HALF_HEAD)
    started = time.monotonic()
    with suppress(OSError):  # the server closes the connection while the head still trickles in
        for _ in range(50):  # 10 s of a byte every 0.2 s, if nothing stops it
            sock.sendall(b"x")
            time.sleep(0.2)
    seconds, _ = _until_closed(sock)
    assert time.monotonic() - started < TIMEOUT + 2, time.monotonic() - started
    assert seconds < TIMEOUT + 2


def _request(path: str = "/health") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: test\r\n\r\n".encode()


def _response(sock: socket.socket) -> bytes:
    """One whole response (with a Content-Length) read from `sock`."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        assert chunk, f"closed mid-response: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    match = re.search(rb"content-length: (\d+)", head, flags=re.IGNORECASE)
    assert match is not None, head
    while len(body) < int(match.group(1)):
        body += sock.recv(4096)
    return head


def test_an_idle_keep_alive_connection_is_closed_after_the_header_timeout(served: Served) -> None:
    sock = _connect(served, _request())
    assert _response(sock).startswith(b"HTTP/1.1 200 ")
    seconds, received = _until_closed(sock)
    assert received == b""
    assert seconds < TIMEOUT + 2, seconds


def _body_head(length: int) -> bytes:
    """The head of a POST /search whose JSON body has `length` bytes."""
    head = f"POST /search HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: {length}"
    return head.encode() + b"\r\n\r\n"


def test_a_stalled_request_body_gets_408_and_is_closed(served: Served) -> None:
    seconds, received = _until_closed(_connect(served, _body_head(100) + b'{"query": '))
    assert received.startswith(b"HTTP/1.1 408 "), received
    assert TIMEOUT * 0.8 <= seconds < 2 * TIMEOUT + 2, seconds


def test_a_trickled_request_body_is_closed(served: Served) -> None:
    sock = _connect(served, _body_head(100_000))
    started = time.monotonic()
    with suppress(OSError):  # the server closes the connection while the body still trickles in
        for _ in range(50):  # 10 s of 10 bytes every 0.2 s (50 bytes a second), if nothing stops it
            sock.sendall(b" " * 10)
            time.sleep(0.2)
    _until_closed(sock)
    assert time.monotonic() - started < 2 * TIMEOUT + 2, time.monotonic() - started


def test_a_steady_upload_slower_than_the_timeout_is_answered(served: Served) -> None:
    body = b'{"query": "the cat", "top_k": 1}'.ljust(24 * 1024)  # JSON, then whitespace
    with _connect(served, _body_head(len(body))) as sock:
        for start in range(0, len(body), 4096):  # 8 KiB a second: 3 s in all, each 1 s brings 8 KiB
            sock.sendall(body[start : start + 4096])
            time.sleep(0.5)
        assert _response(sock).startswith(b"HTTP/1.1 200 ")


def test_a_client_asking_steadily_keeps_its_connection(served: Served) -> None:
    with _connect(served) as sock:
        for _ in range(5):  # 3 s on one connection, each request within the timeout of the last answer
            sock.sendall(_request())
            assert _response(sock).startswith(b"HTTP/1.1 200 ")
            time.sleep(TIMEOUT * 0.6)


class Slowloris:
    """`count` connections, each having sent part of a request head and nothing since, from a thread; one
    the server closes is opened again at once, as an attacker would."""

    def __init__(self, served: Served, count: int) -> None:
        self.served, self.count = served, count
        self.socks: list[socket.socket] = []
        self.opened = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Slowloris:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join(timeout=30)
        for sock in self.socks:
            sock.close()

    def _open(self) -> None:
        with suppress(OSError):  # the server's backlog full: try again on the next round
            sock = socket.create_connection(("127.0.0.1", self.served.port), timeout=1)
            sock.sendall(HALF_HEAD)
            self.socks.append(sock)
            self.opened += 1

    def _run(self) -> None:
        while not self.stop.is_set():
            for _ in range(self.count - len(self.socks)):
                self._open()
            readable, _, _ = select.select(self.socks, [], [], 0.05)
            for sock in readable:  # a 408, or closed: the server let go of it
                self.socks.remove(sock)
                sock.close()


def _search_for(client: httpx.Client, seconds: float) -> tuple[list[float], list[str], set[int]]:
    """A connected client's searches for `seconds`: latencies of the answered ones, what went wrong,
    and the local ports of the connections they went on."""
    latencies, problems, ports = [], [], set()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        sent = time.perf_counter()
        try:
            response = client.post("/search", json={"query": "the cat", "top_k": 2})
        except httpx.HTTPError as exc:
            problems.append(repr(exc))
            continue
        ports.add(response.extensions["network_stream"].get_extra_info("client_addr")[1])
        if response.status_code == 200 and response.json()["results"]:
            latencies.append(time.perf_counter() - sent)
        else:
            problems.append(f"{response.status_code} {response.text[:200]}")
    return latencies, problems, ports


def _accept_errors(log: str) -> list[str]:
    """The log's lines about accept() failing for want of files (asyncio's own, or the server's notice)."""
    return [line for line in log.splitlines() if "out of system resource" in line or "could not accept" in line]


def test_more_idle_connections_than_files_leave_connected_clients_answered(served: Served) -> None:
    with httpx.Client(base_url=served.url, timeout=10) as client:
        assert client.post("/search", json={"query": "the cat"}).status_code == 200
        with Slowloris(served, 2 * FILES) as attack:
            # The attack in place (the server's connections at their cap), within the header timeout: the
            # client's keep-alive connection, idle meanwhile, must be the one its searches go on.
            time.sleep(TIMEOUT / 2)
            latencies, problems, ports = _search_for(client, 6.0)
            # A new client gets in too: an idle connection makes room for it.
            fresh = [httpx.get(f"{served.url}/health", timeout=10).status_code for _ in range(5)]
            opened = attack.opened
        p99 = float(np.percentile(latencies, 99)) if latencies else float("inf")
        print(
            f"\n{len(latencies)} searches under {2 * FILES} idle connections ({opened} opened): p99 {p99 * 1000:.0f} ms"
        )
        assert not problems, problems[:5]
        assert len(ports) == 1, ports  # one keep-alive connection, never closed under the attack
        assert p99 < 2.0, p99  # generous for a shared 2-core host; the bench holds the 1 s target
        assert fresh == [200] * 5
        assert opened > 2 * FILES  # the server closed idle ones (and the attack opened more)
    time.sleep(TIMEOUT + 0.5)
    assert _up(served.url)
    log = served.log_text()
    assert not _accept_errors(log), log[-2000:]
    warnings = [line for line in log.splitlines() if line.startswith("WARNING")]
    assert len(warnings) <= 6, warnings  # a line a minute per kind: closed heads, evictions


@contextmanager
def _stalled_bodies(served: Served, count: int) -> Iterator[list[socket.socket]]:
    """`count` requests whose head came whole and whose body stops short: being answered, they hold on
    (for a header timeout)."""
    socks = [_connect(served, _body_head(100) + b"{") for _ in range(count)]
    try:
        yield socks
    finally:
        for sock in socks:
            sock.close()


def test_with_every_connection_busy_a_newcomer_gets_503_with_retry_after(tmp_path: Path, tiny_model_dir: Path) -> None:
    # A longer timeout: the stalled bodies hold their connections while the newcomer knocks.
    with _serve(
        tmp_path, tiny_model_dir, SEMSEARCH_MAX_CONNECTIONS="4", SEMSEARCH_HEADER_TIMEOUT_SECONDS="5"
    ) as server:
        with _stalled_bodies(server, 4):
            time.sleep(0.5)
            refused = httpx.get(f"{server.url}/health", timeout=10)
            assert refused.status_code == 503, refused.text
            assert refused.headers["retry-after"] == "1"
            assert "SEMSEARCH_MAX_CONNECTIONS" in refused.json()["detail"]
        deadline = time.monotonic() + 10
        while (status := httpx.get(f"{server.url}/health", timeout=10).status_code) != 200:
            assert time.monotonic() < deadline, status
            time.sleep(0.1)
        assert "refused 1 connection(s) with 503" in server.log_text()


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_out_of_files_accepting_backs_off_quietly(tmp_path: Path, tiny_model_dir: Path) -> None:
    # A cap above the file limit (a misconfiguration, warned about at start): the files run out. The
    # worker's catch-ups fail meanwhile (a traceback each, a second apart) and mend afterwards.
    with _serve(tmp_path, tiny_model_dir, tracebacks=20, SEMSEARCH_MAX_CONNECTIONS="10000") as server:
        assert "leaves under" in server.log_text()
        with Slowloris(server, 2 * FILES):
            time.sleep(1.0)
            cpu = _cpu_seconds(server.proc.pid)
            time.sleep(3.0)
            busy = _cpu_seconds(server.proc.pid) - cpu
        print(f"\nout of files for 3 s: {busy:.2f} s of CPU")
        assert busy < 1.5, busy  # not spinning on accept()
        deadline = time.monotonic() + 10
        while not _up(server.url):
            assert time.monotonic() < deadline, "the server did not recover once the connections went"
            time.sleep(0.2)
        log = server.log_text()
    lines = _accept_errors(log)
    assert 1 <= len(lines) <= 2, lines  # one line a minute, not a traceback per failed accept()


@pytest.mark.parametrize(("files", "cap"), [(100, 1), (256, 128), (1024, 768), (4096, 3072), (1 << 20, 65_536)])
def test_the_default_cap_leaves_a_quarter_of_the_files_and_at_least_128(files: int, cap: int) -> None:
    assert default_max_connections(files) == cap


def test_serve_raises_its_soft_file_limit_to_the_hard_one() -> None:
    def limits() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 512))

    code = "from api.server.capacity import raise_file_limit; import resource; raise_file_limit(); "
    code += "print(resource.getrlimit(resource.RLIMIT_NOFILE))"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, preexec_fn=limits, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "(512, 512)"
