"""`semsearch` commands run in the test process through `main(argv)`, where a real process is not the point.

A process spends seconds importing torch and transformers before it does anything; tests that start
one per command spent most of their time there. Tests where the process is the point (SIGKILL,
`serve` and its worker processes, a second process refused a lock) still start real ones. Test
modules import this as `cli_runner`: tests/conftest.py puts tests/ on sys.path (pytest's prepend mode).
"""

from __future__ import annotations

import io
import logging
import os
import subprocess
from collections.abc import Mapping
from contextlib import redirect_stderr, redirect_stdout

import pytest

from indexer.cli.main import main


def run_cli(args: list[str], env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    """`semsearch ARGS` under the environment `env`: its exit status, stdout and stderr (log records
    included) as the process would give them."""
    out, err = io.StringIO(), io.StringIO()
    # main()'s logging.basicConfig does nothing under pytest (its capture handler is already on the root
    # logger), so what a command logs is written to its stderr here, at basicConfig's level and format.
    handler = logging.StreamHandler(err)
    handler.setLevel(logging.WARNING)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    root = logging.getLogger()
    with pytest.MonkeyPatch.context() as patch, redirect_stdout(out), redirect_stderr(err):
        for key in set(os.environ) - set(env):
            patch.delenv(key)
        for key, value in env.items():
            if os.environ.get(key) != value:
                patch.setenv(key, value)
        root.addHandler(handler)
        try:
            code = main(args)
        except SystemExit as exc:  # argparse's usage errors: status 2, the message already on stderr
            code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
            if isinstance(exc.code, str):
                print(exc.code, file=err)
        finally:
            root.removeHandler(handler)
    return subprocess.CompletedProcess(["semsearch", *args], code, out.getvalue(), err.getvalue())
