"""Shared helpers of the benchmarks: SciFact texts, timing, resident memory, table printing."""

from __future__ import annotations

import json
import os
import platform
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx

REPO = Path(__file__).resolve().parents[1]
SCIFACT = REPO.parent / "shared" / "data" / "scifact"
T = TypeVar("T")


def scifact_docs(n: int | None = None) -> list[dict[str, Any]]:
    """The first `n` SciFact documents (all when n is None)."""
    docs = []
    with (SCIFACT / "corpus.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            docs.append(json.loads(line))
            if n is not None and len(docs) >= n:
                break
    return docs


def scifact_queries() -> list[str]:
    """Every SciFact query text."""
    with (SCIFACT / "queries.jsonl").open(encoding="utf-8") as fh:
        return [json.loads(line)["text"] for line in fh]


def timed(fn: Callable[[], T]) -> tuple[T, float]:
    """Run `fn` once; return its result and the seconds it took."""
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def rss_mb() -> float:
    """Current resident set size in MiB (Linux)."""
    with Path("/proc/self/statm").open() as fh:
        pages = int(fh.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def print_table(title: str, header: list[str], rows: list[list[Any]]) -> None:
    """A plain aligned table."""
    cells = [header, *[[f"{c:.3f}" if isinstance(c, float) else str(c) for c in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    print(f"\n{title}")
    for i, row in enumerate(cells):
        print("  ".join(c.rjust(w) if j else c.ljust(w) for j, (c, w) in enumerate(zip(row, widths, strict=True))))
        if i == 0:
            print("  ".join("-" * w for w in widths))


def cpu_line() -> str:
    """The CPU model, cores and the flags that decide the encoder's speed (AVX2, AVX-512, BF16, AMX)."""
    model, flags = platform.processor() or "unknown CPU", set()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name") and ":" in line:
            model = line.split(":", 1)[1].strip()
        elif line.startswith("flags") and ":" in line:
            flags = set(line.split(":", 1)[1].split())
    wanted = ["avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"]
    present = ", ".join(f for f in wanted if f in flags) or "none of avx2/avx512"
    return f"host: {model}, {len(list(Path('/sys/devices/system/cpu').glob('cpu[0-9]*')))} cores; flags: {present}"


def free_port() -> int:
    """A TCP port on the loopback interface that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serve_process(
    folder: Path,
    wait_for: str = "/health",
    timeout: float = 600,
    args: Sequence[str] = (),
    files: tuple[int, int] | None = None,
) -> Iterator[tuple[str, int]]:
    """`semsearch serve` over `folder` in its own process (this checkout's sources), with `args` added
    (and its soft and hard limits on open files at `files` when given), until `wait_for` answers 200;
    yields its URL and process id."""
    port = free_port()
    folder.mkdir(parents=True, exist_ok=True)
    # `python -m` puts the working directory first on sys.path: the server runs this checkout's code.
    command = [sys.executable, "-m", "indexer.cli.main", "serve", "--port", str(port), "--data-dir", str(folder), *args]
    limit = None if files is None else lambda: resource.setrlimit(resource.RLIMIT_NOFILE, files)
    url = f"http://127.0.0.1:{port}"
    with running(command, folder, url + wait_for, timeout, preexec_fn=limit) as proc:
        yield url, proc.pid


@contextmanager
def running(
    command: list[str],
    folder: Path,
    ready: str,
    timeout: float,
    env: dict[str, str] | None = None,
    preexec_fn: Callable[[], None] | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """A server process run from this checkout (its output in `folder`/server.log) until GET `ready`
    answers 200; terminated (killed, if it will not stop) when the block ends."""
    log = (folder / "server.log").open("wb")
    proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, preexec_fn=preexec_fn)
    try:
        deadline = time.monotonic() + timeout
        while not _answers(ready):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start; see {folder / 'server.log'}")
            time.sleep(0.05)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def settle(pid: int, timeout: float = 120, busy: float = 0.05) -> float:
    """Wait until process `pid` is idle (under `busy` of a core over a second: a server that answers
    /health may still be at work its start set going, such as its indexing worker catching a derived
    index up), at most `timeout` seconds; the seconds waited."""
    started = time.monotonic()
    before = _cpu_seconds(pid)
    while time.monotonic() - started < timeout:
        time.sleep(1.0)
        now = _cpu_seconds(pid)
        if now - before < busy:
            break
        before = now
    return time.monotonic() - started


def _cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds of process `pid` so far (Linux; 0 where /proc cannot tell)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=5).status_code == 200
    except httpx.HTTPError:
        return False
