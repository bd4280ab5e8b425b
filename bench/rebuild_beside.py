"""`semsearch rebuild` in a loop beside bench.http_load's HTTP runs (`--rebuild-beside`).

The rebuilds rewrite the index they run on, so they run on a scratch copy of the cached SciFact index
(the cache under .bench/ is shared by every bench and stays as it was). Before anything is measured, one
rebuild turns the copy into the loop's index type (HNSW32,Flat; the cache holds what `auto` gave, Flat at
this size): the in-process references and the server then search the same index in every round, and the
rebuilds beside the load only replace it with a new generation of the same type.

`semsearch serve` holds the SQLite indexing slot, so each `semsearch rebuild` beside it queues the rebuild
as a job for the server's own indexing worker and follows it until it is done (indexer/cli/maintenance.py):
the rebuild's work (an encoder made for it, the new index built, the switch) runs inside the process that
answers the load, as it would for a user running the command beside a server.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from search.components import open_store
from search.settings import Settings

REPO = Path(__file__).resolve().parents[1]
FACTORY = "HNSW32,Flat"
# A rebuild over the 2,000-document index takes seconds; one that is still going after this long when the
# loop stops is stuck, and is ended rather than waited for.
STOP_TIMEOUT = 300.0


def rebuild_command(folder: Path) -> list[str]:
    """`semsearch rebuild --factory FACTORY` over `folder`, run from this checkout's sources."""
    return [sys.executable, "-m", "indexer.cli.main", "rebuild", "--data-dir", str(folder), "--factory", FACTORY]


@contextmanager
def scratch_copy(folder: Path) -> Iterator[Path]:
    """A copy of the index in `folder` (without its server log), removed when the block ends."""
    parent = Path(tempfile.mkdtemp(prefix="http-load-rebuild-"))
    try:
        copy = parent / folder.name
        shutil.copytree(folder, copy, ignore=shutil.ignore_patterns("server.log"))
        yield copy
    finally:
        shutil.rmtree(parent, ignore_errors=True)


def rebuild_once(folder: Path) -> float:
    """One rebuild over `folder`, nothing else running on it; its seconds. Raises when it fails."""
    started = time.perf_counter()
    done = subprocess.run(rebuild_command(folder), cwd=REPO, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"semsearch rebuild exited {done.returncode}: {done.stderr.strip()[-2000:]}")
    return time.perf_counter() - started


def stored_index_type(folder: Path) -> str:
    """The index type of the serving generation in `folder`, from its database (`auto` until a base is
    written with the type `auto` resolved to)."""
    store = open_store(Settings(data_dir=folder))
    try:
        generation = store.active_generation()
        return "none" if generation is None else generation.index_type or generation.factory
    finally:
        store.close()


def served_index_type(url: str) -> str:
    """The index type the server searches now, from GET /stats."""
    return str(httpx.get(f"{url}/stats", timeout=30).json()["index_type"])


@dataclass
class RebuildLoop:
    """`semsearch rebuild` over `folder`, started again each time it finishes, from `start` until `stop`
    (which lets the rebuild under way finish: stopping one midway would measure a half-done job, and a
    job handed to the server goes on without its follower anyway). Their output goes to `folder`/rebuild.log."""

    folder: Path
    exits: list[int] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    command: list[str] | None = None  # what runs in the loop: rebuild_command(folder) when None
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _started_with: int = 0  # rebuilds run before the latest start

    def start(self) -> None:
        """Begin the loop on a thread."""
        self._started_with = len(self.exits)
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="rebuild-beside", daemon=True)
        self._thread.start()

    def stop(self) -> int:
        """Start no more rebuilds, wait for the one under way; the rebuilds run since the latest start."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        return len(self.exits) - self._started_with

    def _loop(self) -> None:
        with (self.folder / "rebuild.log").open("ab") as log:
            while not self._stop.is_set():
                started = time.perf_counter()
                command = self.command or rebuild_command(self.folder)
                proc = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
                try:
                    code = proc.wait(timeout=STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    proc.terminate()
                    code = proc.wait()
                self.exits.append(code)
                self.seconds.append(time.perf_counter() - started)

    def summary(self) -> str:
        """How many rebuilds ran, how each exited and how long they took."""
        if not self.exits:
            return "no rebuild ran beside the load"
        failed = [code for code in self.exits if code != 0]
        exits = "each exited 0" if not failed else f"{len(failed)} did NOT exit 0 (exit codes {failed})"
        took = sorted(self.seconds)
        line = (
            f"{len(self.exits)} rebuilds (--factory {FACTORY}) ran beside the HTTP runs, {exits}; "
            f"{took[len(took) // 2]:.1f} s each (median; {took[0]:.1f}-{took[-1]:.1f})"
        )
        if failed:  # the scratch folder goes when the bench ends: show what the failures said
            line += "\nthe end of their output:\n" + (self.folder / "rebuild.log").read_text(errors="replace")[-2000:]
        return line
