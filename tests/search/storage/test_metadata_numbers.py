"""Metadata numbers come back from the store as they were written: the same type and the same value,
on SQLite and on PostgreSQL (whose JSONB would make floats of 1e16 or more integers)."""

from __future__ import annotations

import json
from typing import Any

from search.storage.json_text import dumps
from search.storage.records import ChunkIn, DocumentIn
from search.storage.store import Store

HOSTILE: dict[str, Any] = {
    "odd": 2**53 + 1,
    "max": 2**63 - 1,
    "min": -(2**63),
    "frac": 0.5110627055689232,
    "p60": 2.0**60,
    "p63": 2.0**63,
    "huge": 1e300,
    "most": 1.7976931348623157e308,
    "neg": -1e16,
    "under": 9999999999999998.0,
    "tiny": 5e-324,
    "small": 1.5e-5,
    "one": 1.0,
    "nested": {"deep": [2.0**60, -1e300, {"x": 1e22}]},
}


def _typed(value: Any) -> Any:
    """`value` with each number paired with its type, so that 1 and 1.0 differ in a comparison."""
    if isinstance(value, dict):
        return {k: _typed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_typed(v) for v in value]
    return (type(value).__name__, value)


def test_metadata_numbers_read_back_with_their_type_and_value(database_url: str) -> None:
    store = Store(database_url)
    text = "some text"
    # Inserted by the bulk path, and replaced through an UPDATE: each writes the JSON its own way.
    store.write_documents([(DocumentIn("bulk", text, metadata=HOSTILE), [ChunkIn(0, text, 0, len(text))])])
    store.write_documents([(DocumentIn("update", text, metadata={}), [ChunkIn(0, text, 0, len(text))])])
    store.update_metadata({"update": HOSTILE})
    for ext in ("bulk", "update"):
        document = store.get_document(ext)
        assert document is not None
        assert _typed(document.meta) == _typed(HOSTILE), ext
    owners = store.chunk_owners(store.all_chunk_ids(), metadata=True)
    assert [_typed(o.metadata) for o in owners.values()] == [_typed(HOSTILE)] * 2
    store.close()


def test_json_text_is_plain_json_unless_a_float_needs_its_digits() -> None:
    plain = {"a": [1, 2.5, "e+3", None, True], "b": 1e-7}
    assert dumps(plain) == json.dumps(plain)
    big = {"k": 2.0**60, "e+": ["1e+20", 1e20]}
    assert dumps(big) == '{"k": 1152921504606846976.0, "e+": ["1e+20", 100000000000000000000.0]}'
    assert json.loads(dumps(big)) == big
