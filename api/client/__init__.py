"""The semsearch HTTP client: `SemsearchClient` (blocking), `AsyncSemsearchClient`, their results and errors.

It imports nothing of the server; the LangChain and LlamaIndex integrations beside it build on it."""

from api.client.async_client import AsyncSemsearchClient
from api.client.blocking import SemsearchClient
from api.client.types import (
    ApiKey,
    AuthenticationError,
    BatchResults,
    Deleted,
    Document,
    DocumentPage,
    Hit,
    InvalidRequestError,
    NewApiKey,
    NewDocument,
    NotFoundError,
    PermissionDeniedError,
    SearchResults,
    SemsearchError,
    ServerBusyError,
    ServerError,
    Stats,
    WriteResult,
)

__all__ = [
    "ApiKey",
    "AsyncSemsearchClient",
    "AuthenticationError",
    "BatchResults",
    "Deleted",
    "Document",
    "DocumentPage",
    "Hit",
    "InvalidRequestError",
    "NewApiKey",
    "NewDocument",
    "NotFoundError",
    "PermissionDeniedError",
    "SearchResults",
    "SemsearchClient",
    "SemsearchError",
    "ServerBusyError",
    "ServerError",
    "Stats",
    "WriteResult",
]
