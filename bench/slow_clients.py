"""Slow clients against the real API server: a connected client's searches while an attacker holds idle
half-open connections (issue 21, case 5).

1. Builds (or reuses) bench.http_load's SciFact index of the first `--docs` documents (2,000 by default).
2. Starts `semsearch serve` over it with its open-file limit at `--files` (1,024 by default: a common
   default limit, which about 1,000 idle connections used to exhaust), hard limit too unless `--hard`
   says more (the server raises its own limit to the hard one), and the default settings.
3. One client, on one keep-alive connection, sends POST /search (hybrid, top_k 10, SciFact queries one
   after another) for `--seconds`: alone; then while another process holds `--connections` connections
   that each sent part of a request head and nothing since, opening a new one for each the server closes
   (at once, as an attacker would; at the lowest CPU priority, as if from another host); then alone
   again. During the attack new clients (a new connection per request) search too.

Prints a table per phase: searches, errors, p50 and p99 latency; the attacker's connections opened, the
server's CPU seconds and open files at most, and its log lines about failed accept() calls and closed
connections. The target: under 1,000 idle half-open connections the connected client's p99 < 1 s, with
no errors.

    .venv/bin/python -m bench.slow_clients [--connections 1000] [--files 1024] [--seconds 20] [--docs 2000]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import selectors
import socket
import threading
import time
from contextlib import suppress
from dataclasses import dataclass, field
from multiprocessing.sharedctypes import Synchronized
from multiprocessing.synchronize import Event
from pathlib import Path

import httpx
import numpy as np

HALF_HEAD = b"POST /search HTTP/1.1\r\nHost: attacker\r\nContent-Type: application/json\r\nX-Slow: "


def attack(port: int, count: int, stop: Event, opened: Synchronized[int], ready: Synchronized[int]) -> None:
    """Hold `count` connections to `port` that sent `HALF_HEAD` and nothing since, opening another for
    each the server closes (it answers or resets), until `stop` is set."""
    # At the lowest priority: on a small host the attacker would otherwise take the server's cores, which
    # one on another host does not.
    os.nice(19)
    held = selectors.DefaultSelector()  # epoll: select() stops at descriptor 1,024
    while not stop.is_set():
        for _ in range(count - len(held.get_map())):
            with suppress(OSError):  # the server's backlog full: again on the next round
                sock = socket.create_connection(("127.0.0.1", port), timeout=1)
                sock.sendall(HALF_HEAD)
                held.register(sock, selectors.EVENT_READ)
                opened.value += 1
        ready.value = len(held.get_map())
        for key, _ in held.select(timeout=0.05):
            held.unregister(key.fileobj)
            key.fileobj.close()  # type: ignore[union-attr]
    for key in list(held.get_map().values()):
        key.fileobj.close()  # type: ignore[union-attr]


@dataclass
class Phase:
    """What one client saw in one phase."""

    name: str
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def row(self) -> list[object]:
        ms = [float(np.percentile(self.latencies, q) * 1000) if self.latencies else float("nan") for q in (50, 99)]
        return [self.name, len(self.latencies), len(self.errors), *ms]


def search(client: httpx.Client | None, url: str, query: str, phase: Phase) -> None:
    """One search, on `client`'s connection or (None) on a new one, counted in `phase`."""
    sent = time.perf_counter()
    try:
        body = {"query": query, "top_k": 10}
        response = client.post("/search", json=body) if client else httpx.post(f"{url}/search", json=body, timeout=30)
    except httpx.HTTPError as exc:
        phase.errors.append(repr(exc))
        return
    if response.status_code == 200 and len(response.json()["results"]) == 10:
        phase.latencies.append(time.perf_counter() - sent)
    else:
        phase.errors.append(f"{response.status_code} {response.text[:200]}")


def searches(client: httpx.Client | None, url: str, queries: list[str], seconds: float, name: str) -> Phase:
    """Searches one after another for `seconds`."""
    phase, i, end = Phase(name), 0, time.monotonic() + seconds
    while time.monotonic() < end:
        search(client, url, queries[i % len(queries)], phase)
        i += 1
    return phase


class ProcessWatch:
    """The server process's CPU seconds, and its open files at most (sampled every 50 ms)."""

    def __init__(self, pid: int) -> None:
        self.pid, self.most_files, self.stop = pid, 0, threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)

    def cpu(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def _sample(self) -> None:
        while not self.stop.wait(0.05):
            with suppress(OSError):
                self.most_files = max(self.most_files, sum(1 for _ in Path(f"/proc/{self.pid}/fd").iterdir()))


def under_attack(url: str, pid: int, queries: list[str], args: argparse.Namespace) -> tuple[list[Phase], str]:
    """The three phases against the server at `url` (process `pid`); their phases and a summary line."""
    port = int(url.rsplit(":", 1)[1])
    spawn = multiprocessing.get_context("spawn")
    stop, opened, ready = spawn.Event(), spawn.Value("q", 0), spawn.Value("q", 0)
    attacker = spawn.Process(target=attack, args=(port, args.connections, stop, opened, ready), daemon=True)
    with httpx.Client(base_url=url, timeout=30) as client:
        searches(client, url, queries, 3.0, "warm-up")
        alone = searches(client, url, queries, args.seconds, "connected client, alone")
        watch = ProcessWatch(pid)
        attacker.start()
        deadline = time.monotonic() + 30
        while ready.value < args.connections and time.monotonic() < deadline:
            time.sleep(0.1)
        held = ready.value
        watch.thread.start()
        cpu = watch.cpu()
        idle = f"{args.connections} idle connections"
        attacked = searches(client, url, queries, args.seconds, f"connected client, {idle}")
        fresh = searches(None, url, queries, args.seconds / 2, f"new clients, {idle}")
        busy = watch.cpu() - cpu
        stop.set()
        attacker.join(timeout=30)
        watch.stop.set()
        time.sleep(1.0)
        after = searches(client, url, queries, args.seconds, "connected client, after")
    seconds = args.seconds * 1.5
    line = (
        f"attacker: {held} connections held at the start, {opened.value} opened in all; server: "
        f"{busy / seconds:.2f} CPU cores over the attack, {watch.most_files} open files at most"
    )
    return [alone, attacked, fresh, after], line


def main() -> None:
    """Index (or reuse), serve with the lowered file limit, run the phases, print the table."""
    from bench.common import print_table, scifact_queries, serve_process
    from bench.http_load import build_index

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", type=int, default=1000, help="idle half-open connections held")
    parser.add_argument("--files", type=int, default=1024, help="the server's open-file limit (RLIMIT_NOFILE)")
    parser.add_argument(
        "--hard", type=int, default=None, help="its hard open-file limit, which it raises its own to (default --files)"
    )
    parser.add_argument("--seconds", type=float, default=20.0, help="measured seconds per phase")
    parser.add_argument("--docs", type=int, default=2000, help="index the first N SciFact documents")
    args = parser.parse_args()
    queries = scifact_queries()
    folder = build_index(args.docs)
    with serve_process(folder, files=(args.files, args.hard or args.files)) as (url, pid):
        phases, line = under_attack(url, pid, queries, args)
    log = (folder / "server.log").read_text(errors="replace").splitlines()
    print_table(
        f"POST /search (hybrid, top_k 10) on {args.docs} SciFact documents, server open-file limit {args.files} "
        f"(hard {args.hard or args.files})",
        ["client", "searches", "errors", "p50 ms", "p99 ms"],
        [phase.row() for phase in phases],
    )
    print(line)
    accept_errors = [ln for ln in log if "out of system resource" in ln or "could not accept" in ln]
    print(f"server log: {len(accept_errors)} lines about failed accept() calls; {len(log)} lines in all")
    for ln in log:
        if ln.startswith(("WARNING", "ERROR")) or "at most" in ln:
            print(f"  {ln[:200]}")
    for phase in phases:
        for error in phase.errors[:3]:
            print(f"  {phase.name}: {error}")


if __name__ == "__main__":
    main()
