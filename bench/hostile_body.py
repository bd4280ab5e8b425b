"""/health's latency while the server refuses a 15 MiB metadata body (issue 21).

Starts `semsearch serve --no-worker` over an empty data directory in its own process (it inherits
the SEMSEARCH_* environment), then:

0. sends one small POST /documents, refused, so that the rounds measure the body and not the route's
   first use (FastAPI builds an included router's handlers on its first request, on the event loop);
1. polls /health every `--interval-ms` for `--idle` seconds with nothing else running (the baseline);
2. `--rounds` times, POSTs /documents one document whose metadata is a list of short strings, the
   body `--mib` MiB (under the default 16 MiB limit), while the same poller runs, from a second
   connection, until the 422 is back.

Prints, per phase: the refusal's status and time, how many polls were answered, and /health's p50,
p99 and max latency. The target: max under 100 ms while the body is refused, on a quiet machine (on
a shared one, run it when nothing else does; the poller shares this process's GIL with the sender,
which mostly waits on its socket).

    .venv/bin/python -m bench.hostile_body [--mib 15] [--rounds 3] [--interval-ms 10] [--json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

from bench.common import cpu_line, print_table, serve_process

ITEM = '"ab", '  # six bytes a list item, as in the 2.5 million strings


class HealthPoller(threading.Thread):
    """Asks /health every `interval` seconds on a keep-alive connection of its own until stopped."""

    def __init__(self, url: str, interval: float) -> None:
        super().__init__(daemon=True)
        self.url, self.interval = url, interval
        self.latencies: list[float] = []
        self.failures = 0
        self.stop = threading.Event()

    def run(self) -> None:
        """Poll until `stop` is set."""
        with httpx.Client(base_url=self.url, timeout=60) as client:
            while not self.stop.is_set():
                started = time.perf_counter()
                try:
                    ok = client.get("/health").status_code == 200
                except httpx.HTTPError:
                    ok = False
                self.latencies.append(time.perf_counter() - started)
                self.failures += not ok
                time.sleep(self.interval)


def oversized_body(mib: float) -> bytes:
    """One document whose metadata list makes the body about `mib` MiB."""
    items = int(mib * 2**20) // len(ITEM)
    return json.dumps([{"id": "big", "text": "cat", "metadata": {"tags": ["ab"] * items}}]).encode()


def measure(url: str, interval: float, body: bytes | None, idle: float) -> dict[str, object]:
    """Poll /health while `body` is refused (or, without one, for `idle` seconds)."""
    poller = HealthPoller(url, interval)
    poller.start()
    time.sleep(0.2)
    started = time.perf_counter()
    status, detail = "-", ""
    if body is None:
        time.sleep(idle)
    else:
        headers = {"Content-Type": "application/json"}
        answer = httpx.post(f"{url}/documents", content=body, headers=headers, timeout=300)
        status, detail = str(answer.status_code), answer.text[:160]
    took = time.perf_counter() - started
    time.sleep(0.1)
    poller.stop.set()
    poller.join()
    ms = np.array(poller.latencies) * 1000
    return {
        "status": status,
        "detail": detail,
        "seconds": round(took, 3),
        "polls": len(ms),
        "failed": poller.failures,
        "p50_ms": round(float(np.percentile(ms, 50)), 1),
        "p99_ms": round(float(np.percentile(ms, 99)), 1),
        "max_ms": round(float(ms.max()), 1),
    }


def main() -> None:
    """Serve, measure the idle baseline and each round, print the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mib", type=float, default=15.0, help="size of the refused body")
    parser.add_argument("--rounds", type=int, default=3, help="bodies refused, one after another")
    parser.add_argument("--interval-ms", type=float, default=10.0, help="pause between /health polls")
    parser.add_argument("--idle", type=float, default=3.0, help="seconds of the idle baseline")
    parser.add_argument("--json", action="store_true", help="end with one line of JSON")
    args = parser.parse_args()
    body = oversized_body(args.mib)
    print(cpu_line())
    print(f"body: {len(body) / 2**20:.1f} MiB, {len(body) // len(ITEM):,} metadata strings", flush=True)
    with tempfile.TemporaryDirectory() as folder, serve_process(Path(folder), args=["--no-worker"]) as (url, _):
        interval = args.interval_ms / 1000
        httpx.post(f"{url}/documents", content=b"[]", headers={"Content-Type": "application/json"}, timeout=60)
        results = {"idle": measure(url, interval, None, args.idle)}
        for i in range(args.rounds):
            results[f"refusing {i + 1}"] = measure(url, interval, body, args.idle)
    columns = ["status", "seconds", "polls", "failed", "p50_ms", "p99_ms", "max_ms"]
    print_table(
        f"/health every {args.interval_ms:.0f} ms while POST /documents ({len(body) / 2**20:.1f} MiB) is refused",
        ["phase", *columns],
        [[phase, *(r[c] for c in columns)] for phase, r in results.items()],
    )
    print(f"\nthe refusal: {results['refusing 1']['detail']}")
    worst = max(float(str(r["max_ms"])) for phase, r in results.items() if phase != "idle")
    print(f"/health's max latency while refusing: {worst:.0f} ms (target: under 100 ms on a quiet machine)")
    if args.json:
        print(json.dumps({"health_max_ms": worst, "phases": results}))


if __name__ == "__main__":
    main()
