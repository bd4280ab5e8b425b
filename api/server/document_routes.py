"""The documents resource: writes go to the store at once and the indexing worker embeds them;
`?wait=true` answers only once they are searchable. The bodies and their checks are in
api/server/documents.py."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Annotated, Any
from urllib.parse import unquote_to_bytes

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from pydantic import Field
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool
from starlette.convertors import PathConvertor, register_url_convertor

from api.server.bodies import BoundedRoute
from api.server.deps import HybridDep, SettingsDep, StoreDep, WorkerStateDep
from api.server.documents import (
    MAX_WRITE_BATCH,
    Deleted,
    DocumentBody,
    DocumentOut,
    DocumentPage,
    DocumentWrite,
    WriteResult,
)
from api.server.schemas import ErrorBody
from api.server.status import read_queue, stale_index_problems
from search.query.hybrid import HybridSearcher
from search.settings import Settings
from search.storage import changes
from search.storage.models import DocumentStatus
from search.storage.outage import classify
from search.storage.records import DocumentIn
from search.storage.retry import WriteConflictError, retry_write
from search.storage.store import Store
from search.validation import (
    check_id,
    json_safe,
)
from search.work.queue import enqueue
from search.work.state import WorkerState

WaitQuery = Annotated[bool, Query(description="Answer only once the documents are searchable.")]
TimeoutQuery = Annotated[float, Query(gt=0, le=60, description="Seconds `wait` may take (then a 202).")]


class _AnyPath(PathConvertor):
    """A path parameter that matches every character, line breaks too, so that any id reaches the route
    and a bad one gets a 422 that says why rather than a 404."""

    regex = "(?s:.*)"


register_url_convertor("anypath", _AnyPath())
# Reading and writing need different roles (api/server/app.py includes each with its own).
reads = APIRouter(prefix="/documents", tags=["documents"], route_class=BoundedRoute)
writes = APIRouter(prefix="/documents", tags=["documents"], route_class=BoundedRoute)


def _path_id(request: Request, doc_id: str) -> str:
    """The id in the path, refused with a 422 when its %-escapes are not UTF-8.

    The server decodes them with replacement characters, so `%ED%A0%80` and `%FF%FE%FD` would both
    name the document "\ufffd\ufffd\ufffd" and the second write replace the first one's document. The
    id is the only variable part of these paths, so any undecodable escape in the raw path is its."""
    raw = request.scope.get("raw_path")
    if isinstance(raw, bytes):
        decoded = unquote_to_bytes(raw)
        try:
            decoded.decode("utf-8")
        except UnicodeDecodeError as exc:
            byte = decoded[exc.start : exc.start + 1].hex().upper()
            raise HTTPException(
                422, f"id: the path's %-escapes are not UTF-8 (the byte %{byte} cannot start or continue a character)"
            ) from exc
    return doc_id


PathId = Annotated[str, Depends(_path_id)]


def _out(doc: Any) -> DocumentOut:
    # Metadata stored before writes were validated (NaN, lone surrogates, deep nesting) is shown in
    # a form JSON can carry, so that one old document never fails a read or a page holding it.
    meta = json_safe(doc.meta)
    return DocumentOut(id=doc.external_id, title=doc.title, text=doc.text, metadata=meta, status=doc.status)


def _conflict(exc: WriteConflictError) -> HTTPException:
    return HTTPException(503, str(exc), headers={"Retry-After": "1"})


async def _write(
    store: Store, searcher: HybridSearcher, docs: list[DocumentIn], wait: bool, timeout: float, response: Response
) -> WriteResult:
    try:
        # Racing writers of one id: the loser's transaction rolled back whole and runs again.
        result, same = await run_in_threadpool(retry_write, enqueue, store, docs)
    except WriteConflictError as exc:
        raise _conflict(exc) from exc
    written = result.added + result.updated
    reason = None
    try:
        indexed = not written or (wait and await _wait_indexed(store, searcher, written, timeout))
    except SQLAlchemyError as exc:
        # Committed before the database went away: what is known is answered, not the outage's 503.
        indexed, reason = False, _committed_but(exc)
    if wait and not indexed:
        # Stored, and queued for the worker, but not searchable yet: accepted, not failed.
        response.status_code = 202
    return WriteResult(added=result.added, updated=result.updated, unchanged=same, indexed=indexed, reason=reason)


def _committed_but(exc: SQLAlchemyError) -> str:
    """Why a committed write's `wait=true` could not see it searchable, when the database failed."""
    failure = classify(exc)
    if failure is None:
        raise exc  # a fault of the program or the schema, not of the database: the 500 it is
    return (
        f"the documents are stored and queued for indexing, but {failure.describe()} while waiting for them "
        "to be searchable: they will be once it is back and the worker has embedded them"
    )


def _why_not_indexed(store: Store, state: WorkerState | None, settings: Settings) -> str | None:
    """Why a `wait=true` timed out, when something is known to be wrong: a failing worker in this
    process or a derived index it failed to catch up, or a queue whose oldest document has waited
    past the degraded threshold."""
    snapshot = None if state is None else state.snapshot()
    if snapshot is not None and snapshot.failing:
        return (
            f"the indexing worker is failing ({snapshot.consecutive_failures} errors in a row, next try in "
            f"{snapshot.backoff_seconds:.0f} s); last error: {snapshot.last_error}"
        )
    if snapshot is not None and snapshot.stale_indexes:
        return "; ".join(stale_index_problems(snapshot.stale_indexes))
    age = read_queue(store).oldest_unindexed_seconds
    if age is not None and age > settings.degraded_pending_seconds:
        return f"the oldest unindexed document has waited {age:.0f} s: is an indexing worker running?"
    return None


async def _wait_indexed(store: Store, searcher: HybridSearcher, ids: list[str], timeout: float) -> bool:
    """Poll the documents' status until the worker embedded them, then this server's own keyword
    index until it applied the log as far as it reached then (a worker in this data directory applies
    it after the vectors commit; a replica's follower, woken now, on its thread); then load the dense
    side here too. False when `timeout` passed first."""
    deadline = time.monotonic() + timeout
    target: int | None = None
    while True:
        if target is None:
            statuses = await run_in_threadpool(store.statuses, ids)
            if all(
                statuses.get(i, DocumentStatus.INDEXED) == DocumentStatus.INDEXED for i in ids
            ):  # one deleted meanwhile counts as done
                target = await run_in_threadpool(_log_head, store)
                searcher.keyword.catch_up_now()
        if target is not None and (await run_in_threadpool(searcher.keyword.applied, True) or 0) >= target:
            await run_in_threadpool(searcher.refresh, True)
            return True
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)


def _log_head(store: Store) -> int:
    with store.session() as s:
        return changes.head(s)


_ACCEPTED: dict[int | str, dict[str, Any]] = {
    202: {
        "model": WriteResult,
        "description": "Stored and queued, but `wait=true` timed out before the documents were searchable "
        "(`indexed` is false). Is an indexing worker running?",
    }
}


async def _with_reason(
    result: WriteResult, wait: bool, store: Store, state: WorkerState | None, settings: Settings
) -> WriteResult:
    if not wait or result.indexed or result.reason is not None:
        return result
    try:
        reason = await run_in_threadpool(_why_not_indexed, store, state, settings)
    except SQLAlchemyError as exc:
        reason = _committed_but(exc)
    return result.model_copy(update={"reason": reason})


@writes.put(
    "/{doc_id:anypath}", response_model=WriteResult, summary="Create or replace a document", responses=_ACCEPTED
)
async def put_document(
    doc_id: PathId,
    body: DocumentBody,
    store: StoreDep,
    searcher: HybridDep,
    response: Response,
    worker_state: WorkerStateDep,
    settings: SettingsDep,
    wait: WaitQuery = False,
    timeout: TimeoutQuery = 30.0,
) -> WriteResult:
    """Store the document under `doc_id`; the worker embeds it. Its previous chunks leave the results now."""
    try:
        check_id(doc_id)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from exc
    doc = DocumentIn(doc_id, body.text, body.title, body.metadata)
    result = await _write(store, searcher, [doc], wait, timeout, response)
    return await _with_reason(result, wait, store, worker_state, settings)


@writes.post("", response_model=WriteResult, summary="Create or replace several documents", responses=_ACCEPTED)
async def post_documents(
    body: Annotated[list[DocumentWrite], Field(min_length=1, max_length=MAX_WRITE_BATCH)],
    store: StoreDep,
    searcher: HybridDep,
    response: Response,
    worker_state: WorkerStateDep,
    settings: SettingsDep,
    wait: WaitQuery = False,
    timeout: TimeoutQuery = 30.0,
) -> WriteResult:
    """Store a list of documents (at most 1000); the worker embeds them."""
    duplicates = [doc_id for doc_id, n in Counter(d.id for d in body).items() if n > 1]
    if duplicates:
        raise HTTPException(422, f"document ids must be unique within a request; repeated: {duplicates[:10]}")
    docs = [DocumentIn(d.id, d.text, d.title, d.metadata) for d in body]
    result = await _write(store, searcher, docs, wait, timeout, response)
    return await _with_reason(result, wait, store, worker_state, settings)


@reads.get("", response_model=DocumentPage, summary="List documents")
def list_documents(
    store: StoreDep,
    offset: Annotated[int, Query(ge=0, le=2**62)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> DocumentPage:
    """Documents in the order they were first written, `limit` at a time."""
    total, docs = store.list_documents(offset, limit)
    return DocumentPage(documents=[_out(d) for d in docs], total=total, offset=offset, limit=limit)


@reads.get(
    "/{doc_id:anypath}", response_model=DocumentOut, summary="One document", responses={404: {"model": ErrorBody}}
)
def get_document(doc_id: PathId, store: StoreDep) -> DocumentOut:
    """A document by its id, with its indexing status."""
    doc = store.get_document(doc_id)
    if doc is None:
        raise HTTPException(404, f"no document with id {doc_id!r}")
    return _out(doc)


@writes.delete(
    "/{doc_id:anypath}", response_model=Deleted, summary="Delete a document", responses={404: {"model": ErrorBody}}
)
def delete_document(doc_id: PathId, store: StoreDep) -> Deleted:
    """Delete a document; the worker then takes its vectors out of the index file."""
    try:
        found, chunk_ids = retry_write(store.delete_documents, [doc_id])
    except WriteConflictError as exc:
        raise _conflict(exc) from exc
    if not found:
        raise HTTPException(404, f"no document with id {doc_id!r}")
    return Deleted(id=doc_id, chunks=len(chunk_ids))
