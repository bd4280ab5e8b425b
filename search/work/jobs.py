"""Jobs in SQL: work one process hands to another that holds the indexing slot, and follows.

On SQLite one process indexes at a time (the worker inside `semsearch serve`, say), so an offline
rebuild cannot run beside it; instead `semsearch rebuild` queues a job, the worker runs it between
batches, and the command follows its state until it is done or failed. Readers keep answering from
the serving generation throughout, and the switch needs no restart."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update

from search.storage.models import Job, JobStatus
from search.storage.store import Store


@dataclass(frozen=True)
class JobState:
    """A job as its submitter sees it."""

    id: int
    kind: str
    state: str
    result: dict[str, Any]


def submit(store: Store, kind: str, params: dict[str, Any]) -> int:
    """Queue a job; returns its id."""
    with store.session() as s:
        job = Job(kind=kind, params=params, state=JobStatus.QUEUED, result={})
        s.add(job)
        s.flush()
        return job.id


def claim(store: Store, kinds: tuple[str, ...]) -> tuple[int, str, dict[str, Any]] | None:
    """Take the oldest queued job of `kinds` (it becomes running); None when there is none."""
    with store.session() as s:
        job = s.scalars(
            select(Job).where(Job.state == JobStatus.QUEUED, Job.kind.in_(kinds)).order_by(Job.id).limit(1)
        ).first()
        if job is None:
            return None
        taken = s.scalar(
            update(Job)
            .where(Job.id == job.id, Job.state == JobStatus.QUEUED)
            .values(state=JobStatus.RUNNING)
            .returning(Job.id)
        )
        return None if taken is None else (job.id, job.kind, dict(job.params))


def finish(store: Store, job_id: int, ok: bool, result: dict[str, Any]) -> None:
    """Record how a job ended."""
    with store.session() as s:
        s.execute(
            update(Job).where(Job.id == job_id).values(state=JobStatus.DONE if ok else JobStatus.FAILED, result=result)
        )


def state(store: Store, job_id: int) -> JobState:
    """A job's current state."""
    with store.session() as s:
        job = s.get(Job, job_id)
        if job is None:
            raise KeyError(f"no job {job_id}")
        return JobState(job.id, job.kind, job.state, dict(job.result))


def follow(
    store: Store, job_id: int, timeout: float, poll: float = 0.5, on_wait: Callable[[JobState], None] | None = None
) -> JobState:
    """Wait until a job is done or failed (or `timeout` seconds pass: then its state as it is)."""
    deadline = time.monotonic() + timeout
    while True:
        current = state(store, job_id)
        if current.state in (JobStatus.DONE, JobStatus.FAILED) or time.monotonic() > deadline:
            return current
        if on_wait is not None:
            on_wait(current)
        time.sleep(poll)
