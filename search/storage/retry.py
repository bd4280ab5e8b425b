"""Retrying a write transaction that lost a race with a concurrent one.

Two requests writing the same document id both read "absent" and both insert (a unique-key
violation for the second), or both tombstone the same replaced chunks; PostgreSQL may also pick one
of two transactions as a deadlock victim, and SQLite may report its database locked. Each is an
IntegrityError or OperationalError from a transaction that rolled back whole, so running the same
call again, after the other has committed, gives the answer a serial order would have given.

An unavailable database or a full disk (search.storage.outage) is no conflict: retrying it only
delays the answer that says so, and calling it a conflict misleads, so it is raised at once.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from sqlalchemy.exc import IntegrityError, OperationalError

from search.storage.outage import classify

log = logging.getLogger(__name__)
P = ParamSpec("P")
T = TypeVar("T")

ATTEMPTS = 8
_BASE_DELAY = 0.005


class WriteConflictError(RuntimeError):
    """A write still conflicted with concurrent writes after every attempt (the API answers 503)."""


def retry_write(call: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """`call(*args, **kwargs)`, run again (up to ATTEMPTS times in all, after a short randomised
    backoff that doubles each time) while it fails on a conflict with a concurrent transaction.
    `call` must be one or more whole transactions that can run again (an upsert, a delete)."""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return call(*args, **kwargs)
        except (IntegrityError, OperationalError) as exc:
            failure = classify(exc)
            if failure is not None and failure.kind in ("unavailable", "disk_full"):
                raise
            if attempt == ATTEMPTS:
                why = "it conflicted with concurrent writes" if failure is None else failure.describe()
                raise WriteConflictError(f"the write failed {ATTEMPTS} times in a row ({why}); retry it") from exc
            log.info("write conflict (attempt %d of %d): %s", attempt, ATTEMPTS, type(exc).__name__)
            # Random jitter, so that two writers that collided do not collide again in step.
            time.sleep(_BASE_DELAY * 2 ** (attempt - 1) * random.uniform(0.5, 1.5))
    raise AssertionError("unreachable")
