"""What the `semsearch` command shows a person: fast help, --filter, UTF-8 JSON, indexed and rejected
counted apart, and no library noise. In-process `main([...])` except where a fresh process is the point."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from indexer.cli.main import main

COMMANDS = ["index", "add", "worker", "rebuild", "delete", "check", "search", "eval", "serve"]
HEAVY = ["torch", "transformers", "faiss", "openvino", "numpy", "sqlalchemy", "fastapi", "uvicorn", "pydantic_settings"]


def test_help_of_every_command_imports_nothing_heavy() -> None:
    # A fresh interpreter is the point: in this one the heavy modules are loaded already.
    script = f"""
import sys
from indexer.cli.main import main
for argv in [["--help"]] + [[c, "--help"] for c in {COMMANDS!r}]:
    try:
        main(argv)
    except SystemExit as exc:
        assert exc.code == 0, (argv, exc.code)
print(sorted(m for m in {HEAVY!r} if m in sys.modules))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"
    assert "usage: semsearch serve" in done.stdout and "--filter JSON" in done.stdout


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tiny_model_dir: Path) -> Path:
    monkeypatch.setenv("SEMSEARCH_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("SEMSEARCH_MODEL", str(tiny_model_dir))
    monkeypatch.setenv("SEMSEARCH_DTYPE", "float32")
    monkeypatch.setenv("SEMSEARCH_BACKEND", "torch")
    corpus = tmp_path / "docs.jsonl"
    records = [
        {"id": "crème", "title": "Café", "text": "the café served crème brûlée", "metadata": {"kind": "food"}},
        {"id": "cats", "text": "the cat sat on the mat", "metadata": {"kind": "animal", "year": 2001}},
        {"id": "stars", "text": "the sun and the moon and a star", "metadata": {"kind": "sky", "year": 2019}},
    ]
    corpus.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return corpus


def test_search_filter_and_utf8_json(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["index", str(env), "--json"]) == 0
    capsys.readouterr()
    assert main(["search", "the café served crème brûlée", "-k", "3", "--json"]) == 0
    out = capsys.readouterr().out
    assert '"title": "Café"' in out and "\\u00e9" not in out  # UTF-8 text, not \u escapes
    assert json.loads(out)[0]["id"] == "crème"

    assert main(["search", "the café served crème brûlée", "--filter", '{"year": {"$gte": 2010}}', "--json"]) == 0
    assert [h["id"] for h in json.loads(capsys.readouterr().out)] == ["stars"]
    assert main(["search", "the cat", "--filter", '{"kind": "none"}']) == 0
    assert "no results (none passes the filter)" in capsys.readouterr().out
    either = '{"$or": [{"kind": {"$eq": "food"}}, {"year": {"$gt": 2010}}], "kind": {"$ne": "animal"}}'
    assert main(["search", "the cat", "-k", "3", "--filter", either, "--json"]) == 0
    assert sorted(h["id"] for h in json.loads(capsys.readouterr().out)) == ["crème", "stars"]


@pytest.mark.parametrize(
    ("flag", "message"),
    [
        ('{"kind": ', "--filter is not valid JSON"),
        ('["kind"]', "--filter must be a JSON object"),
        ('{"year": {"$gt": "x"}}', "filter field 'year': $gt needs a number, got 'x'"),
        ('{"$and": [{"year": {"$near": 1}}]}', "filter field 'year' at $and[0]: unknown operator '$near'"),
        ('{"$not": ' * 9 + '{"a": 1}' + "}" * 9, "$and, $or and $not nest 9 deep here; at most 8 levels"),
        ("[" * 1000 + "]" * 1000, "--filter: JSON nested deeper than 64 levels of arrays and objects (1000 levels)"),
    ],
)
def test_a_bad_filter_is_one_line_naming_it(
    env: Path, capsys: pytest.CaptureFixture[str], flag: str, message: str
) -> None:
    assert main(["search", "the cat", "--filter", flag]) == 2
    err = capsys.readouterr().err
    assert err.startswith("semsearch search: ") and message in err and len(err.splitlines()) == 1


def test_index_at_default_verbosity_prints_its_own_lines_only(env: Path, tmp_path: Path) -> None:
    # A real process with the default (OpenVINO) backend and an empty conversion cache: what a user sees.
    with env.open("a", encoding="utf-8") as fh:
        fh.write("{broken\n")
    cli = Path(sys.executable).with_name("semsearch")
    fresh = {**os.environ, "TMPDIR": str(tmp_path), "SEMSEARCH_BACKEND": "auto"}
    done = subprocess.run([str(cli), "index", str(env)], env=fresh, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    assert done.stdout.startswith(
        "indexed 3 documents (3 added, 0 updated, 0 unchanged), 3 chunks embedded, 1 rejected"
    )
    lines = done.stderr.splitlines()
    assert (
        lines[0] == f"rejected {env}:4: malformed JSON: Expecting property name enclosed in double quotes at column 2"
    )
    # Progress counts documents and rejected records apart; nothing else is said.
    assert [line for line in lines[1:] if not line.startswith("progress: 3 documents, 1 rejected, 3 chunks")] == []


@pytest.mark.parametrize("command", ["index", "add"])
def test_records_the_api_refuses_are_reported_by_line_and_the_rest_written(
    env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    # The three records of issue 20, which the API answers with a 422; the CLI once stored them all.
    corpus = tmp_path / "mixed.jsonl"
    lines = [
        '{"id": "nan", "text": "the cat", "metadata": {"score": NaN}}',
        json.dumps({"id": "nul", "text": "the\x00cat"}),
        json.dumps({"id": "i" * 600, "text": "the cat"}),
        json.dumps({"id": "good", "text": "the cat sat on the mat"}),
    ]
    corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert main([command, str(corpus), "--json"]) == 1
    out, err = capsys.readouterr()
    summary = json.loads(out)
    assert (summary["added"], summary["rejected"]) == (1, 3)
    assert [line for line in err.splitlines() if line.startswith("rejected ")] == [
        f"rejected {corpus}:1: metadata.score: nan is not a finite number (JSON has no NaN or Infinity)",
        f"rejected {corpus}:2: text: holds a NUL character at position 3, which the database cannot store",
        f"rejected {corpus}:3: id: has 600 characters; it must have 1 to 512",
    ]
    if command == "index":
        assert summary["documents"] == 1 and summary["chunks"] == 1
        assert main(["search", "the cat sat on the mat", "-k", "5", "--json"]) == 0
        assert [hit["id"] for hit in json.loads(capsys.readouterr().out)] == ["good"]
