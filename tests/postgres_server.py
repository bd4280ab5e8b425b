"""A PostgreSQL 15 server of our own in a temporary directory: the session's (tests/conftest.py) and
any test's private one, which it may stop and start again without touching the others. Test modules
import this as `postgres_server`: tests/conftest.py puts tests/ on sys.path (pytest's prepend mode)."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Any

PG_BIN = Path("/usr/lib/postgresql/15/bin")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _as_postgres() -> dict[str, Any]:
    """PostgreSQL refuses to run as root: drop to the `postgres` user when we are root."""
    if os.geteuid() != 0:
        return {}
    entry = pwd.getpwnam("postgres")
    return {"user": entry.pw_uid, "group": entry.pw_gid, "env": {"PATH": "/usr/bin:/bin", "LC_ALL": "C"}}


class PostgresServer:
    """initdb in a fresh temporary directory (trust authentication, fsync off), on a free port."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="semsearch-pg-"))
        self.data, self.sock = self.root / "data", self.root / "sock"
        self.sock.mkdir()
        self._creds = _as_postgres()
        if self._creds:
            shutil.chown(self.root, "postgres", "postgres")
            shutil.chown(self.sock, "postgres", "postgres")
        self.port = free_port()
        self._run(PG_BIN / "initdb", "-D", self.data, "-U", "postgres", "--auth=trust", "-E", "UTF8")

    @property
    def url(self) -> str:
        """The server's base URL (append /<database>)."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        options = f"-p {self.port} -k {self.sock} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(PG_BIN / "pg_ctl", "-D", self.data, "-o", options, "-l", self.root / "log", "-w", "start")

    def stop(self, mode: str = "fast", check: bool = True) -> None:
        """`pg_ctl stop -m <mode>`: smart, fast (sessions ended, a clean shutdown) or immediate (a crash)."""
        self._run(PG_BIN / "pg_ctl", "-D", self.data, "-m", mode, "stop", check=check)

    def remove(self) -> None:
        """Stop it (as a crash: nothing is kept) and delete its directory."""
        self.stop("immediate", check=False)
        shutil.rmtree(self.root, ignore_errors=True)

    def _run(self, *command: object, check: bool = True) -> None:
        subprocess.run([str(c) for c in command], check=check, capture_output=True, **self._creds)
