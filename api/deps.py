"""What routes get injected: the searcher (with its store) and the settings, as Annotated aliases, and
the API-key check every protected route depends on."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Request, status

from search.searcher import Searcher
from search.settings import Settings
from search.store import Store


def _searcher(request: Request) -> Searcher:
    searcher: Searcher = request.app.state.searcher
    return searcher


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _store(request: Request) -> Store:
    store: Store = request.app.state.searcher.store
    return store


SearcherDep = Annotated[Searcher, Depends(_searcher)]
SettingsDep = Annotated[Settings, Depends(_settings)]
StoreDep = Annotated[Store, Depends(_store)]


def require_api_key(settings: SettingsDep, authorization: Annotated[str | None, Header()] = None) -> None:
    """With SEMSEARCH_API_KEY set, demand `Authorization: Bearer <key>` (compared in constant time)."""
    if settings.api_key is None:
        return
    expected = f"Bearer {settings.api_key.get_secret_value()}".encode()
    if authorization is None or not secrets.compare_digest(authorization.encode(), expected):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "missing or wrong API key: send the header 'Authorization: Bearer <SEMSEARCH_API_KEY>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
