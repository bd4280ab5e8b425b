"""`POST /documents/upload`: a file sent as a form, read by the same readers as `semsearch index`
(indexer/ingest/readers/), then written like a PUT (api/server/document_routes.py).

The request's size is bounded by the server's body limit (413, api/server/flow/limits.py). A file
of a type no reader takes is a 415 naming the supported ones; a file of a supported type that
cannot be read (damaged, encrypted, no text) a 422 saying why, as is metadata that is not a JSON
object and anything the write rules (search.validation) refuse."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, Form, HTTPException, Response, UploadFile
from starlette.concurrency import run_in_threadpool

from api.server.bodies import BoundedRoute
from api.server.deps import HybridDep, SettingsDep, StoreDep, WorkerStateDep
from api.server.document_routes import _ACCEPTED, TimeoutQuery, WaitQuery, _with_reason, _write
from api.server.documents import WriteResult
from api.server.schemas import ErrorBody
from indexer.ingest.files import document_from_bytes, file_facts, unknown_type
from indexer.ingest.readers import ReadError, reader_for
from search.json_input import loads
from search.storage.records import DocumentIn
from search.validation import FieldError

router = APIRouter(prefix="/documents", tags=["documents"], route_class=BoundedRoute)

_RESPONSES: dict[int | str, dict[str, Any]] = {
    **_ACCEPTED,
    415: {"model": ErrorBody, "description": "No reader takes the file's type (its extension or media type)."},
}


@router.post("/upload", response_model=WriteResult, summary="Upload a file as a document", responses=_RESPONSES)
async def upload_document(
    file: Annotated[UploadFile, File(description="The file: .txt, .md, .html, .pdf or .docx (by name or type).")],
    store: StoreDep,
    searcher: HybridDep,
    response: Response,
    worker_state: WorkerStateDep,
    settings: SettingsDep,
    doc_id: Annotated[str | None, Form(alias="id", description="The document's id (default: the file's name).")] = None,
    metadata: Annotated[
        str | None, Form(description="A JSON object laid over the metadata the file gives (`ext`, `size`, ...).")
    ] = None,
    wait: WaitQuery = False,
    timeout: TimeoutQuery = 30.0,
) -> WriteResult:
    """Read the file with the reader of its type and store it as one document; the worker embeds it."""
    name = file.filename or ""
    reader = reader_for(name, file.content_type)
    if reader is None:
        raise HTTPException(415, f"file: {unknown_type(name or 'upload')} (media type {file.content_type!r})")
    given = _metadata(metadata)
    data = await file.read()
    facts = file_facts(name or "upload", len(data))
    try:
        doc: DocumentIn = await run_in_threadpool(
            document_from_bytes, reader, data, name or "upload", doc_id or name, {**facts, **given}
        )
    except ReadError as exc:
        raise HTTPException(422, f"file: {exc.reason}") from exc
    except FieldError as exc:
        raise HTTPException(422, str(exc)) from exc
    result = await _write(store, searcher, [doc], wait, timeout, response)
    return await _with_reason(result, wait, store, worker_state, settings)


def _metadata(text: str | None) -> dict[str, Any]:
    """The `metadata` form field as a JSON object, else a 422 saying what it is."""
    if text is None or not text.strip():
        return {}
    try:
        value = loads(text, "metadata")
    except FieldError as exc:
        raise HTTPException(422, str(exc)) from exc
    except ValueError as exc:
        raise HTTPException(422, f"metadata: not valid JSON ({exc})") from exc
    if not isinstance(value, dict):
        raise HTTPException(422, f"metadata: must be a JSON object, got {type(value).__name__}")
    return value
