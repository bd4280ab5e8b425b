"""The semsearch HTTP client: `SemsearchClient` (blocking), `AsyncSemsearchClient`, their results and errors.

It imports nothing of the server; the LangChain and LlamaIndex integrations beside it build on it."""

from api.client.blocking import (
    AsyncSemsearchClient,
    AuthenticationError,
    BatchResults,
    Deleted,
    Document,
    DocumentPage,
    Hit,
    InvalidRequestError,
    NewDocument,
    NotFoundError,
    SearchResults,
    SemsearchClient,
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
