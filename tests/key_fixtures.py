"""API keys made straight in a test's database, as `semsearch keys create` makes them."""

from __future__ import annotations

from typing import Any

from search.access import KeySpec
from search.components import open_store
from search.settings import Settings
from search.storage import keys


def make_key(settings: Settings, **spec: Any) -> tuple[str, str]:
    """(id, key) of a new key in the settings' database."""
    store = open_store(settings)
    try:
        with store.session(write=True) as s:
            info, key = keys.create_key(s, KeySpec.model_validate(spec))
    finally:
        store.close()
    return info.id, key
