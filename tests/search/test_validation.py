"""The rules at the door (search.validation) and racing writers retried (search.storage.retry), on both databases."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from sqlalchemy import func, select

from search.storage.models import Chunk, Document
from search.storage.records import DocumentIn
from search.storage.retry import retry_write
from search.storage.store import Store
from search.validation import (
    MAX_DOCUMENT_CHARS,
    MAX_ID_CHARS,
    MAX_METADATA_BYTES,
    MAX_METADATA_DEPTH,
    MAX_TITLE_CHARS,
    TOO_DEEP,
    FieldError,
    check_document,
    check_metadata,
    check_text,
    json_safe,
)
from search.work.queue import enqueue


def _nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


@pytest.mark.parametrize(
    ("meta", "message"),
    [
        ({"x": float("nan")}, "metadata.x: nan is not a finite number"),
        ({"x": [1, {"y": float("-inf")}]}, "metadata.x[1].y: -inf is not a finite number"),
        ({"\ud800": 1}, "the key '\\ud800' holds a lone UTF-16 surrogate"),
        ({"k": "a\udc00"}, "metadata.k: holds a lone UTF-16 surrogate '\\udc00' at position 1"),
        ({"k": "a\x00"}, "metadata.k: holds a NUL character"),
        ({"k": 2**64}, "outside the 64-bit range"),
        ({"k" * 300: 1}, "has 300 characters; at most 256"),
        ({"k": object()}, "object is not a JSON value"),
        (_nested(MAX_METADATA_DEPTH + 1), f"nested deeper than {MAX_METADATA_DEPTH} levels"),
        ({"k": "x" * 70_000}, "bytes as JSON; at most 65536"),
    ],
)
def test_metadata_that_a_later_read_could_not_serve_is_refused(meta: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError) as caught:
        check_metadata(meta)
    assert message in str(caught.value)


class _Untouchable(list[Any]):
    """A list whose items must not be looked at."""

    def __iter__(self) -> Any:
        raise AssertionError("walked the items of a list too long to be allowed")


def test_oversized_metadata_is_refused_before_its_items_are_walked() -> None:
    # Issue 21: 2.5 million short strings were each checked (8.5 s) before the size was.
    with pytest.raises(ValueError, match=r"^metadata: at least 5000010 bytes as JSON; at most 65536 are allowed$"):
        check_metadata({"tags": _Untouchable(["ab"] * 2_500_000)})
    # The bound counts from below: what json.dumps writes exactly up to the limit still passes.
    exact = {"k": "x" * (MAX_METADATA_BYTES - len('{"k": ""}'))}
    assert len(json.dumps(exact)) == MAX_METADATA_BYTES and check_metadata(exact) == exact
    with pytest.raises(ValueError, match="65537 bytes as JSON"):
        check_metadata({"k": "x" * (MAX_METADATA_BYTES + 1 - len('{"k": ""}'))})


def test_valid_metadata_and_texts_pass_unchanged() -> None:
    meta = {"kind": "ü ☀ 😀", "n": -(2**63), "x": 1.5, "ok": True, "none": None, "list": [1, "a", [2]]}
    assert check_metadata(meta) == meta and check_metadata(_nested(MAX_METADATA_DEPTH)) == _nested(32)
    assert check_text("a\x00b", "query", stored=False) == "a\x00b"  # a query is never stored
    with pytest.raises(ValueError, match="text: holds a NUL"):
        check_text("a\x00b", "text")


GOOD: dict[str, Any] = {"doc_id": "d", "title": "", "text": "t", "metadata": {}}


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"doc_id": "i" * (MAX_ID_CHARS + 1)}, "id", f"has {MAX_ID_CHARS + 1} characters; it must have 1 to 512"),
        ({"doc_id": ""}, "id", "has 0 characters"),
        ({"doc_id": " \t"}, "id", "is blank"),
        ({"doc_id": "a\nb"}, "id", "holds the control character '\\n'"),
        ({"doc_id": 7}, "id", "must be a string, got int"),
        ({"doc_id": None}, "id", "is required"),
        ({"title": "t" * (MAX_TITLE_CHARS + 1)}, "title", f"at most {MAX_TITLE_CHARS} characters"),
        ({"title": "a\x00"}, "title", "holds a NUL character"),
        ({"title": None}, "title", "is required"),
        ({"text": "  \n"}, "text", "is blank: there is nothing to embed"),
        ({"text": "a" * (MAX_DOCUMENT_CHARS + 1)}, "text", f"at most {MAX_DOCUMENT_CHARS} characters"),
        ({"text": "a\ud800"}, "text", "lone UTF-16 surrogate"),
        ({"text": 42}, "text", "must be a string, got int"),
        ({"metadata": {"x": {"y": float("inf")}}}, "metadata.x.y", "inf is not a finite number"),
        ({"metadata": None}, "metadata", "must be a JSON object, got NoneType"),
    ],
)
def test_check_document_names_the_field_that_breaks_a_rule(change: dict[str, Any], field: str, message: str) -> None:
    with pytest.raises(FieldError) as caught:
        check_document(**{**GOOD, **change})
    assert caught.value.field == field and message in caught.value.reason
    assert str(caught.value) == f"{field}: {caught.value.reason}"
    assert isinstance(caught.value, ValueError)  # pydantic reports it as a validation error: a 422


def test_check_document_takes_a_document_at_every_limit() -> None:
    check_document(
        doc_id=" " + "i" * (MAX_ID_CHARS - 1),
        title="t" * MAX_TITLE_CHARS,
        text="a" * MAX_DOCUMENT_CHARS,
        metadata={"n": 2**63 - 1, "deep": _nested(MAX_METADATA_DEPTH - 1)},
    )


def test_json_safe_makes_any_stored_value_encodable() -> None:
    old = {"x": float("nan"), "y": [float("inf")], "\ud800": "a\udfffb", "deep": _nested(256)}
    safe = json_safe(old)
    json.dumps(safe, allow_nan=False).encode("utf-8")  # what Starlette's JSONResponse does
    assert safe["x"] == "NaN" and safe["y"] == ["Infinity"] and safe["\ufffd"] == "a\ufffdb"
    level = safe["deep"]
    for _ in range(MAX_METADATA_DEPTH - 2):
        level = level["a"]
    assert level == {"a": TOO_DEEP}
    clean = {"a": [1, {"b": "c"}]}
    assert json_safe(clean) is clean  # nothing to change: no copy


def test_racing_writers_of_one_id_are_retried_to_a_consistent_end(database_url: str) -> None:
    store = Store(database_url)
    barrier = threading.Barrier(12)

    def writer(n: int) -> None:
        barrier.wait()  # all at once, for the widest race
        for round_ in range(6):
            if (n + round_) % 3 == 0:
                retry_write(store.delete_documents, ["race"])
            else:
                doc = DocumentIn("race", f"text {n} {round_}", metadata={"n": n})
                retry_write(enqueue, store, [doc])

    with ThreadPoolExecutor(max_workers=12) as pool:
        list(pool.map(writer, range(12)))  # any error (an IntegrityError) would be raised here
    retry_write(enqueue, store, [DocumentIn("race", "the last word")])
    with store.session() as s:
        assert s.scalar(select(func.count()).select_from(Document)) == 1
        assert s.scalar(select(func.count()).select_from(Chunk)) == 0  # queued: not chunked yet
    doc = store.get_document("race")
    assert doc is not None and doc.text == "the last word" and doc.status == "pending"
    store.close()
