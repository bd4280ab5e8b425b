"""Migrations run once, as a writing command or the server starts; read-only commands only check the
schema, and one that finds it older says what to run. On SQLite and on a real PostgreSQL 15 server."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from cli_runner import run_cli
from fastapi.testclient import TestClient
from sqlalchemy import text

from api.server.app import create_app
from search.settings import Settings
from search.storage.db import alembic_config, make_engine


@pytest.fixture
def env(tmp_path: Path, tiny_model_dir: Path, database_url: str) -> dict[str, str]:
    return {
        **os.environ,
        "SEMSEARCH_DATA_DIR": str(tmp_path / "data"),
        "SEMSEARCH_DATABASE_URL": database_url,
        "SEMSEARCH_MODEL": str(tiny_model_dir),
        "SEMSEARCH_DTYPE": "float32",
    }


@pytest.fixture
def upgrades(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every Alembic upgrade run from now on (each one takes the database's write lock)."""
    calls: list[str] = []
    real = command.upgrade

    def counted(config: object, revision: str, *args: object, **kwargs: object) -> None:
        calls.append(revision)
        real(config, revision, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(command, "upgrade", counted)
    return calls


def _corpus(tmp_path: Path) -> Path:
    corpus = tmp_path / "docs.jsonl"
    corpus.write_text(json.dumps({"id": "cats", "title": "Cats", "text": "the cat sat on the mat"}) + "\n")
    return corpus


def test_writing_commands_migrate_once_and_read_only_ones_never(
    tmp_path: Path, env: dict[str, str], upgrades: list[str], settings: Settings, database_url: str
) -> None:
    indexed = run_cli(["index", str(_corpus(tmp_path))], env)
    assert indexed.returncode == 0, indexed.stderr
    assert upgrades == ["head"]  # once, though the command opens more than one store
    upgrades.clear()
    found = run_cli(["search", "the cat sat", "--json"], env)
    assert found.returncode == 0 and json.loads(found.stdout)[0]["id"] == "cats", found.stderr
    checked = run_cli(["check"], env)
    assert checked.returncode == 0, checked.stderr
    assert upgrades == []
    # The API's requests, reads and writes alike, run on the schema `serve` migrated as it started.
    app = create_app(settings.model_copy(update={"database_url": database_url, "data_dir": tmp_path / "data"}))
    with TestClient(app) as client:
        assert client.post("/search", json={"query": "cat", "top_k": 1}).json()["results"][0]["id"] == "cats"
        assert client.put("/documents/dogs", json={"text": "dogs ran in the park"}).status_code == 200
    assert upgrades == []
    added = run_cli(["add", str(_corpus(tmp_path))], env)
    assert added.returncode == 0 and upgrades == ["head"], added.stderr


def test_a_read_only_command_on_an_older_schema_says_what_to_run(
    tmp_path: Path, env: dict[str, str], database_url: str
) -> None:
    config = alembic_config(database_url)
    scripts = ScriptDirectory.from_config(config)
    head = scripts.get_current_head()
    assert head is not None
    previous = scripts.get_revision(head).down_revision
    assert isinstance(previous, str)
    command.upgrade(config, previous)  # a database written by the version before this one

    behind = run_cli(["search", "the cat sat"], env)
    assert behind.returncode == 2 and "Traceback" not in behind.stderr
    assert f"has schema revision {previous}, this semsearch needs {head}: run `semsearch migrate`" in behind.stderr
    assert behind.stderr.startswith("semsearch search: the database ")

    migrated = run_cli(["migrate", "--json"], env)
    assert migrated.returncode == 0 and json.loads(migrated.stdout) == {"schema": head}, migrated.stderr
    assert run_cli(["search", "the cat sat"], env).returncode == 0

    engine = make_engine(database_url)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    engine.dispose()
    newer = run_cli(["check"], env)
    assert newer.returncode == 2 and "schema revision 9999, which this semsearch does not know" in newer.stderr
