"""What routes get injected: the collection of the route's path (api/server/served.py) with its searcher,
store, batcher and settings, as Annotated aliases, and whether a request holds a valid API key
(api/server/auth.py checks the keys)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, HTTPException, Request

from api.server.auth import request_access
from api.server.flow.admission import Admission
from api.server.flow.batcher import MicroBatcher
from api.server.flow.search_threads import SearchThreads
from api.server.index_lag import IndexLags
from api.server.served import Served, ServedCollection
from search.access import DEFAULT_COLLECTION
from search.collections.catalog import UnknownCollectionError
from search.query.hybrid import HybridSearcher
from search.query.searcher import Searcher
from search.settings import Settings
from search.storage.store import Store
from search.work.state import WorkerState


# The dependencies only read app state: as coroutines they run on the event loop, where plain functions
# would each cost a trip through the thread pool on every request (about 4% of the rate under load).
async def _collection(request: Request) -> ServedCollection:
    """The collection of the route's path (`/collections/{collection}/...`), `default` without one."""
    name = request.path_params.get("collection", DEFAULT_COLLECTION)
    served: Served = request.app.state.served
    try:
        return await served.get(name)
    except UnknownCollectionError:
        raise HTTPException(404, f"there is no collection {name!r}") from None


CollectionDep = Annotated[ServedCollection, Depends(_collection)]


async def _searcher(collection: CollectionDep) -> Searcher:
    return collection.hybrid.dense


async def _hybrid(collection: CollectionDep) -> HybridSearcher:
    return collection.hybrid


async def _search_threads(request: Request) -> SearchThreads:
    threads: SearchThreads = request.app.state.search_threads
    return threads


async def _admission(request: Request) -> Admission:
    admission: Admission = request.app.state.admission
    return admission


async def _settings(collection: CollectionDep) -> Settings:
    return collection.settings


async def _store(collection: CollectionDep) -> Store:
    return collection.store


async def _batcher(collection: CollectionDep) -> MicroBatcher:
    return collection.batcher


async def _index_lags(request: Request) -> IndexLags:
    lags: IndexLags = request.app.state.index_lags
    return lags


async def _worker_state(request: Request) -> WorkerState | None:
    state: WorkerState | None = request.app.state.worker_state
    return state


SearcherDep = Annotated[Searcher, Depends(_searcher)]
HybridDep = Annotated[HybridSearcher, Depends(_hybrid)]
SettingsDep = Annotated[Settings, Depends(_settings)]
StoreDep = Annotated[Store, Depends(_store)]
BatcherDep = Annotated[MicroBatcher, Depends(_batcher)]
SearchThreadsDep = Annotated[SearchThreads, Depends(_search_threads)]
# The one door every search and embedding request passes before it does any work.
AdmissionDep = Annotated[Admission, Depends(_admission)]
# The error budget of an indexing worker running in this process (None when it runs elsewhere).
WorkerStateDep = Annotated[WorkerState | None, Depends(_worker_state)]
# How far the derived indexes this server searches have applied the change log.
IndexLagsDep = Annotated[IndexLags, Depends(_index_lags)]


async def _keyed(request: Request, authorization: Annotated[str | None, Header()] = None) -> bool:
    """Whether the request may see what the API keys guard: it sends a valid key that reaches the
    default collection, or the server has no key at all (every route is open then)."""
    try:
        access = await request_access(request, authorization)
    except Exception:  # the database is away (the public /health must answer): show nothing guarded
        return False
    return access is not None and access.reaches(DEFAULT_COLLECTION)


# True for a request that sends a valid key (or when none is set): a public route shows it details.
KeyedDep = Annotated[bool, Depends(_keyed)]
