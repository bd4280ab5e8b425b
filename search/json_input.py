"""JSON from outside (request bodies, query strings, command-line flags, corpus lines), parsed with a
nesting bound: the one parser every door uses.

`json.loads` recurses once per level of nesting, and so do pydantic, FastAPI's error encoder and
`json.dumps` after it: about 1,000 levels are a RecursionError, which escaped as a 500. Here the
nesting depth is measured first by a linear scan of the raw bytes (numpy passes; brackets inside
strings do not count), and text deeper than `MAX_JSON_DEPTH` is refused before anything recursive
touches it.

`loads_in_pieces` parses a long text in pieces of about `PIECE_BYTES`: `json.loads` holds the GIL
for the whole call (0.4 s for a 15 MiB body on the 2-core host), so in a worker thread it still
stopped the event loop; between pieces the loop gets its turn. Pieces are cut at the commas of the
arrays and objects too long to parse at once, so the value is the one `json.loads` gives.
"""

from __future__ import annotations

import itertools
import json
import re
from typing import Any

import numpy as np

from search.validation import MAX_METADATA_DEPTH, FieldError

# A document write nests its metadata two levels down (the list of documents, the document), and
# metadata may hold MAX_METADATA_DEPTH levels: its own rule names the path when it is deeper.
MAX_JSON_DEPTH = 2 * MAX_METADATA_DEPTH
# No request needs more items in one array or object (at most 1,000 documents, 2,048 texts, 4,096
# filter values; 64 KiB of metadata holds at most 32,768). Past it a long text is refused from the
# scan, before anything is built: a list of millions of items also costs every garbage collection
# that walks it (up to 0.1 s each on the 2-core host) for as long as it lives.
MAX_JSON_ITEMS = 65_536
PIECE_BYTES = 64 * 1024
SCAN_BYTES = 1024 * 1024
_OPEN, _CLOSE, _COMMA, _COLON, _QUOTE, _BACKSLASH = b"[{", b"]}", ord(","), ord(":"), ord('"'), ord("\\")
# +1 for an opening bracket, -1 for a closing one; commas and colons (kept for cutting pieces) 0.
_STEP = np.zeros(256, dtype=np.int64)
_STEP[list(_OPEN)], _STEP[list(_CLOSE)] = 1, -1
# Each byte's class, for bytes.translate: the marks (brackets, commas, colons) 1 to 4, a quote 5, a
# backslash 6, anything else 0.
_QUOTE_CLASS, _BACKSLASH_CLASS = 5, 6
_CLASSES = bytes(
    next((n for n, members in enumerate((b"", b"[{", b"]}", b",", b":", b'"', b"\\")) if byte in members), 0)
    for byte in range(256)
)
_SPACE = re.compile(rb"[ \t\n\r]*")  # JSON's whitespace: bytes.strip() takes more


def loads(text: str | bytes, what: str = "body") -> Any:
    """`text` parsed as JSON; FieldError(`what`) when it nests deeper than MAX_JSON_DEPTH, and
    json.JSONDecodeError (a ValueError) when it is not JSON."""
    data = as_utf8(text)
    # Few brackets (every ordinary request) cannot nest deeply: no need to know where they are.
    if data.count(b"[") + data.count(b"{") > MAX_JSON_DEPTH:
        _check_depth(_Marks(data), what)
    return json.loads(data)


def loads_in_pieces(text: str | bytes, what: str = "body", piece_bytes: int = PIECE_BYTES) -> Any:
    """As `loads`, but no single `json.loads` call reads much more than `piece_bytes`, and an array
    or object of more than MAX_JSON_ITEMS items is a FieldError naming its path (`what[0].tags`)
    before it is parsed: for long texts, in a worker thread (the scan is a few numpy passes, each a
    few ms per MiB)."""
    data = as_utf8(text)
    if len(data) <= piece_bytes:
        return loads(data, what)
    marks = _Marks(data)
    _check_depth(marks, what)
    return _Pieces(data, marks, piece_bytes).value(0, len(data), what)


def as_utf8(text: str | bytes) -> bytes:
    """`text` as the UTF-8 bytes `json.loads` reads it as (it takes UTF-16 and UTF-32 too), so that
    byte positions in the scan are positions in what it parses."""
    if isinstance(text, str):
        return text.encode("utf-8", "surrogatepass")
    encoding = json.detect_encoding(text)
    return text if encoding == "utf-8" else text.decode(encoding, "surrogatepass").encode("utf-8", "surrogatepass")


def _check_depth(marks: _Marks, what: str) -> None:
    if marks.depth > MAX_JSON_DEPTH:
        raise FieldError(
            what, f"JSON nested deeper than {MAX_JSON_DEPTH} levels of arrays and objects ({marks.depth} levels)"
        )


class _Marks:
    """The brackets, commas and colons outside strings: where they are, which byte each is, and the
    nesting level each leaves (an opening bracket the level it opens, a closing one its parent's).

    Scanned SCAN_BYTES at a time, carrying whether a string is open, the backslashes just before
    and the level across: some of the passes (bytes.translate, cumsum) hold the GIL, each here for
    a few milliseconds at most. The scan stops once the text is deeper than MAX_JSON_DEPTH."""

    def __init__(self, data: bytes) -> None:
        self.depth = 0
        parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        carry = _Carry()
        for start in range(0, len(data), SCAN_BYTES):
            chunk = data[start : start + SCAN_BYTES]
            positions = carry.marks(chunk)
            kinds = np.frombuffer(chunk, dtype=np.uint8)[positions]
            levels = np.cumsum(_STEP[kinds], dtype=np.int64) + carry.level
            if levels.size:
                carry.level = int(levels[-1])
                self.depth = max(self.depth, int(levels.max()))
            parts.append((positions + start, kinds, levels))
            if self.depth > MAX_JSON_DEPTH:
                break
        self.positions, self.kinds, self.levels = (
            np.concatenate([part[i] for part in parts]) if parts else np.zeros(0, dtype=np.int64) for i in range(3)
        )


class _Carry:
    """What one chunk of the scan leaves to the next."""

    def __init__(self) -> None:
        self.in_string = 0  # 1 when a string is open at the chunk's end
        self.slashes = 0  # the backslashes that end the chunk
        self.level = 0

    def marks(self, chunk: bytes) -> np.ndarray:
        """The positions in `chunk` of the marks outside strings."""
        classes = np.frombuffer(chunk.translate(_CLASSES), dtype=np.uint8)
        slashes = np.flatnonzero(classes == _BACKSLASH_CLASS)
        quotes = np.flatnonzero(classes == _QUOTE_CLASS)
        quotes = quotes[~_escaped(slashes, quotes, self.slashes)]
        if slashes.size and slashes[-1] == len(chunk) - 1:
            run = _run_starts(slashes)[-1]
            self.slashes = len(chunk) - int(run) + (self.slashes if run == 0 else 0)
        else:
            self.slashes = 0
        marks = (classes > 0) & (classes < _QUOTE_CLASS)
        if quotes.size or self.in_string:
            toggles = np.zeros(classes.size, dtype=np.uint8)
            toggles[quotes] = 1
            # 1 from a string's opening quote to the byte before its closing one: marks there are text.
            inside = np.bitwise_xor.accumulate(toggles) ^ self.in_string
            self.in_string = int(inside[-1])
            marks &= inside == 0
        return np.flatnonzero(marks)


def _run_starts(slashes: np.ndarray) -> np.ndarray:
    """For each backslash, where its run of consecutive backslashes begins."""
    starts = np.ones(slashes.size, dtype=bool)
    starts[1:] = np.diff(slashes) != 1
    return np.maximum.accumulate(np.where(starts, slashes, 0))


def _escaped(slashes: np.ndarray, quotes: np.ndarray, before_chunk: int) -> np.ndarray:
    """Which quotes follow an odd run of backslashes (inside a string: an escaped quote); the run
    may begin with the `before_chunk` backslashes that ended the previous chunk."""
    escaped: np.ndarray = (quotes == 0) & (before_chunk % 2 == 1)
    if not slashes.size or not quotes.size:
        return escaped
    run_start = _run_starts(slashes)
    last = np.searchsorted(slashes, quotes) - 1  # the last backslash before each quote
    before = last >= 0
    last = last.clip(0)
    run = quotes - run_start[last] + np.where(run_start[last] == 0, before_chunk, 0)
    escaped |= before & (slashes[last] == quotes - 1) & (run % 2 == 1)
    return escaped


class _Pieces:
    """Parses a long text piece by piece, splitting only the arrays and objects longer than
    `piece_bytes`, each at its own commas (and a long member at its colon)."""

    def __init__(self, data: bytes, marks: _Marks, piece_bytes: int) -> None:
        self.data, self.marks, self.piece_bytes = data, marks, piece_bytes
        # Bracket pairs: sorted (stably) by the level inside them, the brackets of valid JSON
        # alternate opening, closing, each pair of one kind. Levels are small: numpy radix-sorts them.
        brackets = np.flatnonzero(_STEP[marks.kinds] != 0)
        inner = marks.levels[brackets] + (_STEP[marks.kinds[brackets]] < 0)
        order = np.argsort(_small(inner), kind="stable")
        kinds, levels, positions = marks.kinds[brackets][order], inner[order], marks.positions[brackets][order]
        self.balanced = bool(
            kinds.size % 2 == 0
            and np.isin(kinds[0::2], list(_OPEN)).all()
            and (kinds[1::2] == kinds[0::2] + 2).all()  # "[" + 2 is "]", "{" + 2 is "}"
            and (levels[0::2] == levels[1::2]).all()
        )
        pairs = positions.reshape(-1, 2) if self.balanced else np.zeros((0, 2), dtype=np.int64)
        pairs = pairs[np.argsort(pairs[:, 0])]
        self.openings, self.closings = pairs[:, 0], pairs[:, 1]
        # The commas by level, each level's in order: a container's own commas are one slice.
        commas = np.flatnonzero(marks.kinds == _COMMA)
        order = np.argsort(_small(marks.levels[commas]), kind="stable")
        self.comma_levels, self.comma_positions = marks.levels[commas][order], marks.positions[commas][order]

    def value(self, start: int, end: int, path: str) -> Any:
        """The JSON value in data[start:end] (whitespace around it allowed), found at `path`."""
        first = _skip_space(self.data, start, end)
        if end - start <= self.piece_bytes or first >= end or self.data[first] not in _OPEN:
            return self._loads(start, end, b"", b"")
        if not self.balanced:
            raise self._error("Expecting ',' delimiter: the brackets do not balance", first)
        close = int(self.closings[np.searchsorted(self.openings, first)])
        if _skip_space(self.data, close + 1, end) < end:
            raise self._error("Extra data", _skip_space(self.data, close + 1, end))
        cuts = self._commas(first, close)
        if cuts.size - 1 > MAX_JSON_ITEMS:
            kind = "an array" if self.data[first] == ord("[") else "an object"
            raise FieldError(path, f"{kind} of {cuts.size - 1} items; at most {MAX_JSON_ITEMS} are allowed")
        if cuts.size == 2 and _skip_space(self.data, first + 1, close) == close:
            return [] if self.data[first] == ord("[") else {}
        return self._list(cuts, path) if self.data[first] == ord("[") else self._object(cuts, path)

    def _commas(self, opening: int, close: int) -> np.ndarray:
        """The container's own delimiters: its opening bracket, its commas, its closing bracket."""
        level = self.marks.levels[np.searchsorted(self.marks.positions, opening)]
        lo, hi = np.searchsorted(self.comma_levels, [level, level + 1])
        same_level = self.comma_positions[lo:hi]
        first, last = np.searchsorted(same_level, [opening, close])
        return np.concatenate(([opening], same_level[first:last], [close]))

    def _groups(self, cuts: np.ndarray) -> list[tuple[int, int, int]]:
        """Runs of items between cuts that start within one piece, as (first cut, last cut but one,
        last cut): all a run's items but the last lie within one piece; the last may be long."""
        buckets = (cuts - cuts[0]) // self.piece_bytes
        starts = [0, *(np.flatnonzero(np.diff(buckets)) + 1).tolist()]
        if starts[-1] != cuts.size - 1:
            starts.append(cuts.size - 1)
        return [(a, b - 1, b) for a, b in itertools.pairwise(starts)]

    def _list(self, cuts: np.ndarray, path: str) -> list[Any]:
        out: list[Any] = []
        for a, b, c in self._groups(cuts):
            if cuts[c] - cuts[a] <= 2 * self.piece_bytes:
                out.extend(self._loads(int(cuts[a]) + 1, int(cuts[c]), b"[", b"]"))
                continue
            if b > a:
                out.extend(self._loads(int(cuts[a]) + 1, int(cuts[b]), b"[", b"]"))
            out.append(self.value(int(cuts[b]) + 1, int(cuts[c]), f"{path}[{b}]"))
        return out

    def _object(self, cuts: np.ndarray, path: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for a, b, c in self._groups(cuts):
            if cuts[c] - cuts[a] <= 2 * self.piece_bytes:
                out.update(self._loads(int(cuts[a]) + 1, int(cuts[c]), b"{", b"}"))
                continue
            if b > a:
                out.update(self._loads(int(cuts[a]) + 1, int(cuts[b]), b"{", b"}"))
            key, value = self._member(int(cuts[b]) + 1, int(cuts[c]), path)
            out[key] = value  # later keys win, as in json.loads
        return out

    def _member(self, start: int, end: int, path: str) -> tuple[str, Any]:
        """A long `"key": value` member of an object: the key's string holds no marks, so the first
        mark after it is the member's colon."""
        at = int(np.searchsorted(self.marks.positions, start))
        colon = int(self.marks.positions[at]) if at < self.marks.positions.size else end
        if colon >= end or self.marks.kinds[at] != _COLON:
            raise self._error("Expecting ':' delimiter", start)
        key = self._loads(start, colon, b"", b"") if _skip_space(self.data, start, colon) < colon else None
        if not isinstance(key, str):
            raise self._error("Expecting property name enclosed in double quotes", _skip_space(self.data, start, end))
        return key, self.value(colon + 1, end, f"{path}.{key}")

    def _loads(self, start: int, end: int, before: bytes, after: bytes) -> Any:
        # An empty item (`[1,,2]`, `[1,]`) left alone in a piece would read as an empty container.
        if _skip_space(self.data, start, end) == end:
            raise self._error("Expecting value", end)
        try:
            return json.loads(before + self.data[start:end] + after)
        except json.JSONDecodeError as exc:
            offset = len(self.data[:start].decode("utf-8", "replace")) - len(before)
            raise self._error(exc.msg, offset + exc.pos, chars=True) from None

    def _error(self, message: str, position: int, chars: bool = False) -> json.JSONDecodeError:
        """A JSONDecodeError at `position` (a byte offset unless `chars`) of the whole text."""
        text = self.data.decode("utf-8", "replace")
        at = position if chars else len(self.data[:position].decode("utf-8", "replace"))
        return json.JSONDecodeError(message, text, min(at, len(text)))


def _skip_space(data: bytes, start: int, end: int) -> int:
    """The position of the first byte in data[start:end] that is not JSON whitespace (`end` if none)."""
    match = _SPACE.match(data, start, end)
    return match.end() if match else start


def _small(levels: np.ndarray) -> np.ndarray:
    """Nesting levels as 16-bit integers (numpy sorts those by radix, in linear time); the levels of
    unbalanced text, which is refused before they are used, clipped to fit."""
    clipped: np.ndarray = np.clip(levels, -1, MAX_JSON_DEPTH + 1)
    return clipped.astype(np.int16)
