"""The one JSON parser of every door: a nesting bound measured before anything recursive runs, and
long texts parsed in pieces to the value `json.loads` gives."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from search import json_input
from search.json_input import MAX_JSON_DEPTH, MAX_JSON_ITEMS, loads, loads_in_pieces
from search.validation import FieldError


def _nested(depth: int, opener: str = "[", closer: str = "]") -> str:
    return opener * depth + closer * depth


@pytest.mark.parametrize("parse", [loads, loads_in_pieces])
def test_deeper_than_the_bound_is_refused_naming_the_depth(parse: Any) -> None:
    assert parse(_nested(MAX_JSON_DEPTH)) == json.loads(_nested(MAX_JSON_DEPTH))
    with pytest.raises(FieldError) as refused:
        parse('{"a": ' * 1000 + "1" + "}" * 1000, "filter")
    assert str(refused.value) == (
        f"filter: JSON nested deeper than {MAX_JSON_DEPTH} levels of arrays and objects (1000 levels)"
    )
    with pytest.raises(FieldError, match=r"\(65 levels\)"):
        parse(_nested(MAX_JSON_DEPTH + 1).encode())


def test_brackets_in_strings_do_not_count() -> None:
    text = json.dumps(["[" * 500, '\\"{' * 300, "\\" * 7 + "[[[["])
    assert loads(text) == json.loads(text)
    # An escaped quote does not end a string; an escaped backslash before a quote does.
    assert loads('["\\"[[[[", "\\\\", []]') == ['"[[[[', "\\", []]


def test_a_body_in_utf16_is_read_as_json_reads_it() -> None:
    text = json.dumps({"k": ["é", "[", {"x": 1}]})
    for encoding in ("utf-16", "utf-32", "utf-8-sig"):
        assert loads(text.encode(encoding)) == json.loads(text)


def test_not_json_is_a_json_decode_error() -> None:
    for text in ("{kind", "[1,]", '["a" "b"]', "[" * 10):
        with pytest.raises(ValueError):
            loads(text)


_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(alphabet=st.sampled_from(list('ab,:[]{}"\\ é\n')), max_size=8),
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(alphabet="k,:[\"\\'", max_size=3), inner),
    max_leaves=40,
)
_SPACE = st.sampled_from(["", " ", "\n", " \t\r\n "])


@st.composite
def _texts(draw: st.DrawFn) -> str:
    """JSON with whitespace drawn between the tokens."""

    def write(value: Any) -> str:
        gap = draw(_SPACE)
        if isinstance(value, list):
            return "[" + gap + ("," + draw(_SPACE)).join(write(v) for v in value) + draw(_SPACE) + "]"
        if isinstance(value, dict):
            members = (draw(_SPACE) + json.dumps(k) + draw(_SPACE) + ":" + write(v) for k, v in value.items())
            return "{" + ",".join(members) + gap + "}"
        return gap + json.dumps(value) + draw(_SPACE)

    return write(draw(_VALUES))


def _in_pieces(text: str, piece: int) -> Any:
    """loads_in_pieces with pieces and scan chunks of a few bytes, so that short texts meet every
    cut and every carry from one chunk to the next."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(json_input, "SCAN_BYTES", 5)
        return loads_in_pieces(text.encode(), piece_bytes=piece)


@settings(max_examples=300, deadline=None)
@given(text=_texts(), piece=st.sampled_from([1, 3, 16]))
def test_pieces_give_what_json_loads_gives(text: str, piece: int) -> None:
    assert _in_pieces(text, piece) == json.loads(text)


@settings(max_examples=300, deadline=None)
@given(text=_texts(), data=st.data(), piece=st.sampled_from([1, 3, 16]))
def test_pieces_refuse_what_json_loads_refuses(text: str, data: st.DataObject, piece: int) -> None:
    # One character inserted or deleted, or the text cut short: the pieces must not read more into
    # it than json.loads does (a trailing comma, an unbalanced bracket, text after the value).
    at = data.draw(st.integers(0, len(text)))
    edit = data.draw(st.sampled_from(["insert", "delete", "cut"]))
    if edit == "insert":
        text = text[:at] + data.draw(st.sampled_from(list(',:[]{}"\\ 1a'))) + text[at:]
    else:
        text = text[:at] + text[at + 1 :] if edit == "delete" else text[:at]
    try:
        expected: Any = json.loads(text)
    except ValueError:
        with pytest.raises(ValueError):
            _in_pieces(text, piece)
        return
    assert _in_pieces(text, piece) == expected


def test_a_long_body_is_never_parsed_in_one_call(monkeypatch: pytest.MonkeyPatch) -> None:
    # json.loads holds the GIL for the whole call: a thread parsing a 15 MiB body in one stopped
    # the event loop for 0.4 s. In pieces, no call reads much more than two pieces.
    docs = [{"id": f"d{i}", "text": "t" * 60_000, "metadata": {"n": list(range(5_000))}} for i in range(200)]
    body = json.dumps(docs).encode()
    assert len(body) > 12 * 2**20
    read: list[int] = []
    real = json.loads

    def measured(text: bytes) -> Any:
        read.append(len(text))
        return real(text)

    monkeypatch.setattr(json_input.json, "loads", measured)
    assert loads_in_pieces(body) == docs
    assert max(read) <= 2 * json_input.PIECE_BYTES + 2


def test_an_array_or_object_past_the_item_bound_is_refused_before_it_is_built(monkeypatch: pytest.MonkeyPatch) -> None:
    # Issue 21's 2.5 million metadata strings: refused from the scan, naming where they are, and
    # parsed no further than the members before them.
    read: list[int] = []
    real = json.loads

    def measured(text: bytes) -> Any:
        read.append(len(text))
        return real(text)

    tags = json.dumps([{"id": "x", "metadata": {"tags": ["ab"] * (MAX_JSON_ITEMS + 1)}}])
    keys = json.dumps({"filter": {f"f{i}": 1 for i in range(MAX_JSON_ITEMS + 1)}})
    monkeypatch.setattr(json_input.json, "loads", measured)
    with pytest.raises(FieldError) as refused:
        loads_in_pieces(tags)
    assert str(refused.value) == f"body[0].metadata.tags: an array of 65537 items; at most {MAX_JSON_ITEMS} are allowed"
    with pytest.raises(FieldError, match=r"^body\.filter: an object of 65537 items; at most 65536 are allowed$"):
        loads_in_pieces(keys)
    assert sum(read) < 100  # '{"id": "x"}' and the keys "metadata", "tags", "filter"
    at_the_bound = json.dumps({"tags": ["ab"] * MAX_JSON_ITEMS})
    assert loads_in_pieces(at_the_bound) == json.loads(at_the_bound)
