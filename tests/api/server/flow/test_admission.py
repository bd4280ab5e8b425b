"""The one bounded door of search and embedding requests: past SEMSEARCH_SEARCH_MAX_REQUESTS in the
server, any mode is refused at once with 429 and Retry-After; under it every request is served.

No assertion depends on timing: the tests hold the search work at a gate and wait (with a generous
deadline against hangs) until the held requests are in it."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from api.server.app import create_app, serving_settings
from api.server.flow import admission
from api.server.flow.admission import Admission, AdmissionClosedError, AdmissionRefusedError
from search.settings import Settings

LIMIT = 3
# Each kind of request the door guards, as (method, path, body or query).
REQUESTS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "keyword": ("POST", "/search", {"query": "the cat", "top_k": 1, "mode": "keyword"}),
    "dense": ("POST", "/search", {"query": "the cat", "top_k": 1, "mode": "dense"}),
    "hybrid": ("POST", "/search", {"query": "the cat", "top_k": 1, "mode": "hybrid"}),
    "get": ("GET", "/search", {"q": "the cat", "k": 1, "mode": "keyword"}),
    "batch": ("POST", "/search/batch", {"queries": ["the cat", "a dog"], "top_k": 1, "mode": "keyword"}),
    "embeddings": ("POST", "/v1/embeddings", {"input": ["the cat"]}),
}


def send(url: str, kind: str, timeout: float = 120) -> httpx.Response:
    method, path, payload = REQUESTS[kind]
    if method == "GET":
        return httpx.get(f"{url}{path}", params=payload, timeout=timeout)
    return httpx.post(f"{url}{path}", json=payload, timeout=timeout)


class HeldSearches:
    """Holds every call of the app's final search step at a gate, counting those held."""

    def __init__(self, app: FastAPI) -> None:
        hybrid = app.state.hybrid
        self.release = threading.Event()
        self.lock = threading.Lock()
        self.held = 0
        search_prepared = hybrid.search_prepared

        def held(*args: Any) -> Any:
            with self.lock:
                self.held += 1
            assert self.release.wait(60), "the test never released the searches"
            return search_prepared(*args)

        hybrid.search_prepared = held

    def wait_for(self, count: int) -> None:
        deadline = time.monotonic() + 60  # a guard against hanging, not a performance bound
        while self.held < count:
            assert time.monotonic() < deadline, f"only {self.held} of {count} searches reached the search step"
            time.sleep(0.01)


@pytest.fixture
def small_door(
    settings: Settings, indexer: Callable[[Settings], None], start_server: Callable[[FastAPI], str]
) -> tuple[FastAPI, str, HeldSearches]:
    """A server that holds LIMIT requests at most, with as many search threads (so the held ones all
    reach the search step), its searches held until the test releases them."""
    indexer(settings)
    app = create_app(settings.model_copy(update={"search_max_requests": LIMIT, "search_threads": LIMIT}))
    url = start_server(app)
    return app, url, HeldSearches(app)


@pytest.mark.parametrize("held_mode", ["keyword", "dense", "hybrid"])
def test_past_the_bound_every_kind_of_request_gets_429_and_under_it_all_succeed(
    small_door: tuple[FastAPI, str, HeldSearches], held_mode: str
) -> None:
    app, url, held = small_door
    with ThreadPoolExecutor(max_workers=LIMIT + 1) as pool:
        try:
            running = [pool.submit(send, url, held_mode) for _ in range(LIMIT)]
            held.wait_for(LIMIT)
            # A request beyond the bound is answered at once: it neither waits for a place nor holds one.
            beyond = pool.submit(send, url, "keyword")
            refused = {"keyword": beyond.result(timeout=30)}
            refused |= {kind: send(url, kind, timeout=30) for kind in REQUESTS if kind != "keyword"}
        finally:
            held.release.set()
        assert [r.result().status_code for r in running] == [200] * LIMIT
    for kind, response in refused.items():
        assert response.status_code == 429, f"{kind}: {response.status_code} {response.text}"
        assert int(response.headers["Retry-After"]) >= 1
        detail = _reason(response)
        assert detail.startswith("the server is overloaded: 3 search and embedding requests are running or waiting")
        assert "SEMSEARCH_SEARCH_MAX_REQUESTS" in detail
    # The places are free again: every kind is served.
    assert {kind: send(url, kind).status_code for kind in REQUESTS} == dict.fromkeys(REQUESTS, 200)
    assert app.state.admission.admitted == 0
    metrics = httpx.get(f"{url}/metrics", timeout=30).text
    assert f"semsearch_overload_refusals_total {float(len(REQUESTS))}" in metrics


def test_a_stopping_server_answers_503_with_retry_after(small_door: tuple[FastAPI, str, HeldSearches]) -> None:
    app, url, held = small_door
    held.release.set()
    assert send(url, "keyword").status_code == 200
    app.state.admission.close()  # as the server's shutdown does
    for kind in REQUESTS:
        response = send(url, kind)
        assert response.status_code == 503 and response.headers["Retry-After"] == "5"
        assert _reason(response) == "the server is shutting down"


def _reason(response: httpx.Response) -> str:
    body = response.json()  # the OpenAI-compatible routes answer in OpenAI's shape
    return str(body["error"]["message"] if "error" in body else body["detail"])


def test_the_door_counts_places_and_frees_them_on_errors_too() -> None:
    door = Admission(2)
    with door.admit(), door.admit():
        assert door.admitted == 2
        with pytest.raises(AdmissionRefusedError) as refused, door.admit():
            pass
        assert refused.value.retry_after == 1  # nothing has left yet to time
    with pytest.raises(ValueError, match="the index is gone"), door.admit():
        raise ValueError("the index is gone")
    assert door.admitted == 0
    door.close()
    with pytest.raises(AdmissionClosedError), door.admit():
        pass


def test_retry_after_follows_the_time_requests_spend_inside(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [100.0]
    monkeypatch.setattr(admission, "time", SimpleNamespace(monotonic=lambda: now[0]))
    door = Admission(1)
    with door.admit():
        now[0] += 4.2  # a request that took 4.2 s
    with door.admit(), pytest.raises(AdmissionRefusedError) as refused, door.admit():
        pass
    assert refused.value.retry_after == 5


def test_the_bound_defaults_to_the_encoder_queue_plus_the_search_threads() -> None:
    assert serving_settings(Settings(search_threads=3, batch_max_pending=100)).search_max_requests == 103
    assert serving_settings(Settings(search_max_requests=7)).search_max_requests == 7
