"""Collections through the CLI, on SQLite and PostgreSQL: a store written by the release before
collections (schema 0008) becomes the collection `default` as it is migrated, its documents searchable
without a vector embedded again; `--collection` reaches a collection's own documents and settings,
`collections create|list|delete` manage them, `worker` embeds every collection's queue, and
`check --all-collections` checks each."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from alembic import command
from cli_runner import run_cli
from sqlalchemy import text

from search.storage.db import alembic_config
from search.storage.store import Store


@pytest.fixture
def env(tmp_path: Path, database_url: str, tiny_model_dir: Path) -> dict[str, str]:
    return {
        **os.environ,
        "SEMSEARCH_DATA_DIR": str(tmp_path / "data"),
        "SEMSEARCH_DATABASE_URL": database_url,
        "SEMSEARCH_MODEL": str(tiny_model_dir),
        "SEMSEARCH_DTYPE": "float32",
        "SEMSEARCH_DEVICE": "cpu",
    }


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    path = tmp_path / "docs.jsonl"
    rows = [
        {"id": "a", "text": "volcanoes erupt molten lava"},
        {"id": "b", "text": "penguins swim in cold water"},
        {"id": "c", "text": "violins have four strings"},
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def _vectors(database_url: str) -> list[tuple[int, bytes]]:
    store = Store(database_url, upgrade=False)
    try:
        with store.engine.connect() as connection:
            rows = connection.execute(text("SELECT chunk_id, vector FROM chunk_vectors ORDER BY chunk_id"))
            return [(int(chunk), bytes(vector)) for chunk, vector in rows]
    finally:
        store.close()


def _ids(result: str) -> list[str]:
    return [hit["id"] for hit in json.loads(result)]


def test_a_store_of_the_release_before_becomes_default_without_embedding_again(
    env: dict[str, str], corpus: Path, database_url: str
) -> None:
    assert run_cli(["index", str(corpus)], env).returncode == 0
    before = run_cli(["search", "lava", "-k", "3", "--json"], env)
    vectors = _vectors(database_url)
    command.downgrade(alembic_config(database_url), "0008")  # the schema the release before wrote

    behind = run_cli(["search", "lava", "--json"], env)
    assert behind.returncode == 2 and "semsearch migrate" in behind.stderr
    assert run_cli(["migrate"], env).returncode == 0
    after = run_cli(["search", "lava", "-k", "3", "--json"], env)
    assert after.returncode == 0 and _ids(after.stdout) == _ids(before.stdout)
    assert _vectors(database_url) == vectors  # not one vector made again
    listed = json.loads(run_cli(["collections", "list", "--json"], env).stdout)
    assert [(c["name"], c["documents"]) for c in listed] == [("default", 3)]


def test_collections_through_the_cli(env: dict[str, str], corpus: Path, tmp_path: Path) -> None:
    made = run_cli(["collections", "create", "tenant-b", "--pooling", "cls", "--chunk-size", "64", "--json"], env)
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["settings"] == {"pooling": "cls", "chunk_size": 64}
    again = run_cli(["collections", "create", "tenant-b", "--pooling", "mean"], env)
    assert again.returncode == 2 and "pooling is 'cls', not 'mean'" in again.stderr
    assert run_cli(["collections", "create", "Bad Name"], env).returncode == 2

    other = tmp_path / "other.jsonl"
    other.write_text(json.dumps({"id": "a", "text": "glaciers carve deep valleys"}) + "\n")
    assert run_cli(["add", "--collection", "tenant-b", str(other)], env).returncode == 0
    assert run_cli(["add", str(corpus)], env).returncode == 0
    drained = run_cli(["worker", "--until-empty", "--json"], env)  # every collection's queue
    assert drained.returncode == 0 and json.loads(drained.stdout) == {"embedded": 4}

    own = run_cli(["search", "--collection", "tenant-b", "glaciers", "--json"], env)
    assert [(h["id"], h["text"]) for h in json.loads(own.stdout)] == [("a", "glaciers carve deep valleys")]
    default = run_cli(["search", "glaciers", "-k", "3", "--json"], env)
    assert "glaciers carve deep valleys" not in default.stdout
    missing = run_cli(["search", "--collection", "nope", "x"], env)
    assert missing.returncode == 2 and "collections create nope" in missing.stderr

    checked = run_cli(["check", "--all-collections", "--json"], env)
    report = json.loads(checked.stdout)
    assert checked.returncode == 0 and set(report) == {"default", "tenant-b"}
    assert (report["default"]["chunks"], report["tenant-b"]["chunks"]) == (3, 1)

    assert run_cli(["collections", "delete", "tenant-b"], env).returncode == 0
    assert run_cli(["collections", "delete", "tenant-b"], env).returncode == 1
    assert run_cli(["collections", "delete", "default"], env).returncode == 2
    listed = json.loads(run_cli(["collections", "list", "--json"], env).stdout)
    assert [c["name"] for c in listed] == ["default"]
