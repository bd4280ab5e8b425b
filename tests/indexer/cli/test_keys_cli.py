"""`semsearch keys create|list|revoke` on SQLite and PostgreSQL: the key is printed once, the list
never shows a secret, and refused flags are named as the API names its fields."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from cli_runner import run_cli

from search.storage import keys
from search.storage.store import Store


@pytest.fixture
def env(tmp_path: Path, database_url: str) -> dict[str, str]:
    return {**os.environ, "SEMSEARCH_DATA_DIR": str(tmp_path / "data"), "SEMSEARCH_DATABASE_URL": database_url}


def _verify(database_url: str, key: str) -> keys.KeyInfo | None:
    store = Store(database_url, upgrade=False)
    try:
        with store.session() as s:
            return keys.verify(s, key)
    finally:
        store.close()


def test_create_list_and_revoke(env: dict[str, str], database_url: str) -> None:
    made = run_cli(["keys", "create", "--role", "write", "--collection", "default", "--collection", "docs",
                    "--expires", "30d", "--name", "ci", "--json"], env)  # fmt: skip
    assert made.returncode == 0, made.stderr
    new = json.loads(made.stdout)
    assert (new["role"], new["collections"], new["name"]) == ("write", ["default", "docs"], "ci")
    assert new["expires_at"] and new["key"].startswith(f"ss_{new['id']}_")
    found = _verify(database_url, new["key"])
    assert found is not None and found.id == new["id"]

    plain = run_cli(["keys", "create", "--role", "read"], env)
    assert plain.returncode == 0 and plain.stdout.startswith("ss_") and len(plain.stdout.split()) == 1
    assert "shown this once" in plain.stderr and "every collection" in plain.stderr

    for args in (["keys", "list"], ["keys", "list", "--json"]):
        listed = run_cli(args, env)
        assert listed.returncode == 0 and new["id"] in listed.stdout
        for key in (new["key"], plain.stdout.strip()):
            assert key.split("_", 2)[2] not in listed.stdout
    rows = json.loads(run_cli(["keys", "list", "--json"], env).stdout)
    assert [r["role"] for r in rows] == ["write", "read"] and "key" not in rows[0]

    revoked = run_cli(["keys", "revoke", new["id"]], env)
    assert revoked.returncode == 0 and revoked.stdout.strip() == f"revoked {new['id']}"
    assert _verify(database_url, new["key"]) is None
    assert json.loads(run_cli(["keys", "list", "--json"], env).stdout)[0]["revoked_at"]
    missing = run_cli(["keys", "revoke", "ffffffffffff"], env)
    assert missing.returncode == 1 and "no API key with id 'ffffffffffff'" in missing.stderr


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        (["--role", "root"], "--role: Input should be 'read', 'write' or 'admin'"),
        (["--role", "read", "--collection", "No Spaces"], "--collection: Value error, collections[0]: 'No Spaces'"),
        (["--role", "read", "--expires", "2000-01-01"], "--expires: Value error, 2000-01-01T00:00:00+00:00 has passed"),
        (["--role", "read", "--expires", "later"], "--expires: Value error, expires_at: 'later' is neither"),
    ],
)
def test_refused_flags_are_named(env: dict[str, str], flags: list[str], says: str) -> None:
    refused = run_cli(["keys", "create", *flags], env)
    assert refused.returncode == 2 and says in refused.stderr, refused.stderr
    assert refused.stdout == ""
