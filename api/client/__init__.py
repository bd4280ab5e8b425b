"""The semsearch HTTP client: `SemsearchClient` (blocking), `AsyncSemsearchClient`, their results and errors.

It imports nothing of the server; the LangChain and LlamaIndex integrations beside it build on it."""

from api.client.async_client import AsyncSemsearchClient
from api.client.blocking import SemsearchClient
from api.client.types import (
    AuthenticationError,
    BatchResults,
    Deleted,
    Document,
    DocumentPage,
    FacetValue,
    Hit,
    InvalidRequestError,
    NewDocument,
    NotFoundError,
    SearchResults,
    SemsearchError,
    ServerBusyError,
    ServerError,
    Stats,
    WriteResult,
)

__all__ = [
    "AsyncSemsearchClient",
    "AuthenticationError",
    "BatchResults",
    "Deleted",
    "Document",
    "DocumentPage",
    "FacetValue",
    "Hit",
    "InvalidRequestError",
    "NewDocument",
    "NotFoundError",
    "SearchResults",
    "SemsearchClient",
    "SemsearchError",
    "ServerBusyError",
    "ServerError",
    "Stats",
    "WriteResult",
]
