"""/collections: create, list, read and delete collections (search/collections/catalog.py keeps their
rows and files). Creating and deleting need an admin key that reaches the collection; listing shows
only the collections the request's key reaches (another's existence is not revealed)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Request, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from api.server.auth import AccessDep, require
from api.server.bodies import BoundedRoute
from api.server.served import Served
from search.access import COLLECTION_NAME, DEFAULT_COLLECTION, Role
from search.collections import catalog
from search.collections.spec import CollectionSettings, effective
from search.components import open_store
from search.settings import Settings
from search.validation import FieldError

router = APIRouter(prefix="/collections", tags=["collections"], route_class=BoundedRoute)
CollectionName = Annotated[
    str, Path(pattern=f"^{COLLECTION_NAME.pattern}$", description="1 to 63 of a-z, 0-9, _ and -.")
]


class CollectionOut(BaseModel):
    """A collection: the settings it set itself, those it runs with, and its size."""

    name: str
    settings: dict[str, Any] = Field(description="Its own settings; the others follow the server's SEMSEARCH_*.")
    effective: dict[str, Any] = Field(description="Every setting it runs with.")
    documents: int
    chunks: int
    status: str = "ready"


class CollectionList(BaseModel):
    """The collections the request's key reaches, by name."""

    collections: list[CollectionOut]


class CollectionDeleted(BaseModel):
    """A collection deleted with its documents, vectors and index files."""

    deleted: str


def _served(request: Request) -> Served:
    served: Served = request.app.state.served
    return served


ServedDep = Annotated[Served, Depends(_served)]
_SHOWN = (*CollectionSettings.model_fields,)


def _describe(server: Settings, name: str, own: dict[str, Any]) -> CollectionOut:
    """A collection's listing (opens its store for its counts, in the caller's thread)."""
    runs = effective(server, name, own)
    store = open_store(runs)
    try:
        counts = store.counts()
    finally:
        store.close()
    shown = runs.model_dump(include=set(_SHOWN))
    return CollectionOut(
        name=name, settings=own, effective=shown, documents=counts["documents"], chunks=counts["chunks"]
    )


@router.get("", response_model=CollectionList, summary="List collections", dependencies=[require(Role.READ, "any")])
async def list_collections(served: ServedDep, access: AccessDep) -> CollectionList:
    """Every collection the key reaches, with its settings and counts."""
    listed = await run_in_threadpool(catalog.listed, served.deployment)
    shown = [info for info in listed if access is not None and access.reaches(info.name)]
    out = [await run_in_threadpool(_describe, served.server, info.name, info.settings) for info in shown]
    return CollectionList(collections=out)


@router.get(
    "/{collection}", response_model=CollectionOut, summary="Read a collection", dependencies=[require(Role.READ)]
)
async def read_collection(collection: CollectionName, served: ServedDep) -> CollectionOut:
    """The collection's settings and counts; 404 when there is none (or the key does not reach it)."""
    info = await run_in_threadpool(catalog.found, served.deployment, collection)
    if info is None:
        raise HTTPException(404, f"there is no collection {collection!r}")
    return await run_in_threadpool(_describe, served.server, info.name, info.settings)


@router.put(
    "/{collection}",
    response_model=CollectionOut,
    status_code=201,
    summary="Create a collection",
    responses={200: {"model": CollectionOut, "description": "It exists already, with these settings."}},
    dependencies=[require(Role.ADMIN)],
)
async def put_collection(
    collection: CollectionName, served: ServedDep, response: Response, body: CollectionSettings | None = None
) -> CollectionOut:
    """Create the collection with `body`'s settings (the server's for the rest): 201; again with the
    same settings: 200; with other settings: 409."""
    own = body or CollectionSettings()
    try:
        _, created = await run_in_threadpool(catalog.create, served.server, served.deployment, collection, own)
    except FieldError as exc:
        raise HTTPException(422, str(exc)) from exc
    except catalog.CollectionConflictError as exc:
        raise HTTPException(409, str(exc)) from exc
    if not created:
        response.status_code = 200
    await served.read_names()
    info = await run_in_threadpool(catalog.found, served.deployment, collection)
    if info is None:  # deleted again meanwhile
        raise HTTPException(404, f"there is no collection {collection!r}")
    return await run_in_threadpool(_describe, served.server, collection, info.settings)


@router.delete(
    "/{collection}", response_model=CollectionDeleted, summary="Delete a collection", dependencies=[require(Role.ADMIN)]
)
async def delete_collection(collection: CollectionName, served: ServedDep) -> CollectionDeleted:
    """Delete the collection, its documents, vectors and index files; the others keep serving."""
    if collection == DEFAULT_COLLECTION:
        raise HTTPException(409, "the collection 'default' holds the deployment itself and cannot be deleted")
    served.forget(collection)  # this server stops serving it before its files go
    deleted = await run_in_threadpool(catalog.delete, served.server, served.deployment, collection)
    if not deleted:
        raise HTTPException(404, f"there is no collection {collection!r}")
    return CollectionDeleted(deleted=collection)
