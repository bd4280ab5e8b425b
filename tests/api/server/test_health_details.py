"""/health is public, and a driver's error names the database's host, port and user: without the API
key it shows what failed in words of its own; with the key (or when none is set) the errors themselves."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from postgres_server import free_port
from pydantic import SecretStr
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from api.server.app import create_app
from search.settings import Settings
from search.storage.db import make_engine
from search.work.state import WorkerState

KEY = "health-key"
PORT = free_port()  # nothing listens there


def _refused() -> OperationalError:
    """A real refused connection, as the worker meets it: the driver's text names host, port and user."""
    engine = make_engine(f"postgresql+psycopg://dbuser:dbpass@127.0.0.1:{PORT}/db")
    try:
        with engine.connect() as c:
            c.execute(text("SELECT 1"))
    except OperationalError as exc:
        return exc
    finally:
        engine.dispose()
    raise AssertionError("nothing should listen on the port")


@pytest.fixture
def failing_state() -> WorkerState:
    state = WorkerState(failure_budget=2)
    for _ in range(3):
        state.failed(_refused())
    state.indexes_stale({"keyword": f"OperationalError: {_refused()}"}, {"keyword": "the database is unavailable"})
    return state


def _health(url: str, headers: dict[str, str]) -> tuple[str, dict]:
    response = httpx.get(f"{url}/health", headers=headers, timeout=30)
    assert response.status_code == 200
    return response.text, response.json()


def test_health_shows_the_errors_only_to_a_keyed_request(
    settings: Settings,
    failing_state: WorkerState,
    start_server: Callable,
    indexer: Callable[[Settings], None],
) -> None:
    keyed = settings.model_copy(update={"api_key": SecretStr(KEY)})
    indexer(keyed)
    url = start_server(create_app(keyed, failing_state))
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        raw, health = _health(url, headers)
        assert health["status"] == "degraded"
        for secret in ("127.0.0.1", str(PORT), "dbuser", "dbpass", "Connection refused"):
            assert secret not in raw, raw
        assert health["worker"]["last_error"] == "the database is unavailable (connection refused)"
        assert health["worker"]["stale_indexes"] == {"keyword": "the database is unavailable"}
        assert "last error: the database is unavailable (connection refused)" in health["problems"][0]
    raw, health = _health(url, {"Authorization": f"Bearer {KEY}"})
    assert str(PORT) in health["worker"]["last_error"] and str(PORT) in health["worker"]["stale_indexes"]["keyword"]
    assert "dbpass" not in raw  # SQLAlchemy's own text never holds the password


def test_without_an_api_key_health_shows_the_errors(
    settings: Settings, failing_state: WorkerState, start_server: Callable, indexer: Callable[[Settings], None]
) -> None:
    indexer(settings)
    url = start_server(create_app(settings, failing_state))  # every route is open: nothing to hide
    _, health = _health(url, {})
    assert str(PORT) in health["worker"]["last_error"]
