"""The README's settings table against `search.settings.Settings`.

Every row names one `SEMSEARCH_*` variable that is a settings field, its documented default is the
field's default in code, and every field has a row: changing a default (or adding a setting) without
the README fails here.

A default cell starts with the value, the rest being explanation: a literal in backticks (`auto`,
`true`, `2.0`), a bare number with an optional binary unit (16 MiB), or "unset"/"none" (no backticks)
for a field whose default is None.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from pathlib import Path

import pytest

from search.settings import Settings

README = Path(__file__).resolve().parents[1] / "README.md"
UNITS = {"": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3}
UNSET = object()  # a default cell saying the field has no value (None)


def _table() -> list[tuple[str, str]]:
    """(variable cell, default cell) of each row of the table under `## Settings`."""
    text = README.read_text(encoding="utf-8")
    start = text.index("\n## Settings\n")
    end = text.find("\n## ", start + 1)
    section = text[start : end if end != -1 else len(text)]
    rows = []
    for line in section.splitlines():
        if not line.startswith("|"):
            continue
        cells = [cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
        if cells[0] == "variable" or set(cells[0]) <= set("-: "):
            continue  # the header and its rule
        rows.append((cells[0], cells[1]))
    assert rows, "no settings table under ## Settings in README.md"
    return rows


def _env_names() -> dict[str, str]:
    """Each field's environment variable (as pydantic-settings reads it) -> the field's name."""
    prefix = Settings.model_config.get("env_prefix", "")
    names = {}
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias if isinstance(field.validation_alias, str) else None
        names[(alias or f"{prefix}{name}").upper()] = name
    return names


def _documented(cell: str) -> object:
    """The value a default cell gives: a string, or UNSET. Explanation after it is ignored."""
    if match := re.match(r"`([^`]*)`", cell):
        return match.group(1).strip()
    if re.match(r"(unset|none)\b", cell, flags=re.IGNORECASE):
        return UNSET
    if match := re.match(r"[\d.,_]+\s*(?:[KMG]iB)?", cell):
        return match.group(0).strip()
    raise ValueError(f"cannot read a default from {cell!r}")


def _number(text: str) -> Decimal | None:
    """`text` as a number: thousands separators dropped, a binary unit (KiB, MiB, GiB) multiplied out."""
    match = re.fullmatch(r"([\d.,_]+)\s*([KMG]iB)?", text.strip())
    if match is None:
        return None
    try:
        return Decimal(match.group(1).replace(",", "").replace("_", "")) * UNITS[match.group(2) or ""]
    except InvalidOperation:
        return None


def _same(documented: object, default: object) -> bool:
    """Whether a documented default (string or UNSET) says what the code's default is, by the code's type."""
    if default is None or documented is UNSET:
        return default is None and documented is UNSET
    assert isinstance(documented, str)
    if isinstance(default, bool):
        return documented.lower() == str(default).lower()
    if isinstance(default, int | float):
        number = _number(documented)
        return number is not None and number == Decimal(str(default))
    if isinstance(default, Path):
        return Path(documented) == default
    return documented == str(default)


def _code_default(name: str) -> object:
    return Settings.model_fields[name].get_default(call_default_factory=True)


def test_every_documented_default_is_the_code_default() -> None:
    env = _env_names()
    problems, seen = [], set()
    for variable_cell, default_cell in _table():
        match = re.fullmatch(r"`(SEMSEARCH_[A-Z0-9_]+)`", variable_cell)
        if match is None:
            problems.append(f"{variable_cell}: expected one `SEMSEARCH_*` variable per row")
            continue
        variable = match.group(1)
        if variable in seen:
            problems.append(f"{variable}: documented twice")
        seen.add(variable)
        if variable not in env:
            problems.append(f"{variable}: no such field in search.settings.Settings")
            continue
        default = _code_default(env[variable])
        try:
            documented = _documented(default_cell)
        except ValueError as exc:
            problems.append(f"{variable}: {exc}")
            continue
        if not _same(documented, default):
            problems.append(f"{variable}: README says {default_cell!r}, the code's default is {default!r}")
    assert not problems, "README settings table out of step with search/settings.py:\n" + "\n".join(problems)


def test_every_setting_is_documented() -> None:
    documented = {cell.strip("`") for cell, _ in _table()}
    missing = sorted(variable for variable in _env_names() if variable not in documented)
    assert not missing, f"settings missing from the README's table: {', '.join(missing)}"


@pytest.mark.parametrize(
    ("cell", "default", "same"),
    [
        ("`bounded`", "bounded", True),
        ("`rrf`", "bounded", False),
        ("`true`", True, True),
        ("`false`", True, False),
        ("`60`", 60.0, True),
        ("`1.0`", 1.0, True),
        ("`2.0`", 2.5, False),
        ("`4096`", 4096, True),
        ("`4,096` texts", 4096, True),
        ("16 MiB", 16 * 1024 * 1024, True),
        ("16 MiB", 8 * 1024 * 1024, False),
        ("`semsearch-data`", Path("semsearch-data"), True),
        ("`./semsearch-data/`", Path("semsearch-data"), True),
        ("`data`", Path("semsearch-data"), False),
        ("unset (one per core)", None, True),
        ("none", None, True),
        ("`none`", None, False),  # the string "none" (as a keyword language), not an unset field
        ("unset", 256, False),
        ("`256`", None, False),
    ],
)
def test_defaults_are_told_apart(cell: str, default: object, same: bool) -> None:
    assert _same(_documented(cell), default) is same
