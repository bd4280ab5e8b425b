"""`semsearch search --offset/--sort/--facet`: the same pages, order and counts as the API's."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from cli_runner import run_cli


@pytest.fixture
def env(tmp_path: Path, tiny_model_dir: Path) -> dict[str, str]:
    env = {
        **os.environ,
        "SEMSEARCH_DATA_DIR": str(tmp_path / "data"),
        "SEMSEARCH_MODEL": str(tiny_model_dir),
        "SEMSEARCH_DTYPE": "float32",
    }
    corpus = tmp_path / "docs.jsonl"
    words = ["cat", "dog", "gene", "moon", "star"]
    docs = [
        {"id": f"d{i}", "text": " ".join(words[(i * k) % 5] for k in range(1, 8)), "metadata": {"year": 2000 + i % 4}}
        for i in range(12)
    ]
    docs.append({"id": "undated", "text": "cat dog gene", "metadata": {"team": "hr"}})
    corpus.write_text("\n".join(json.dumps(d) for d in docs))
    assert run_cli(["index", str(corpus)], env).returncode == 0
    return env


def _ids(env: dict[str, str], *args: str) -> list[str]:
    done = run_cli(["search", "cat gene", "--json", *args], env)
    assert done.returncode == 0, done.stderr
    return [hit["id"] for hit in json.loads(done.stdout)]


def test_offset_sort_and_facets(env: dict[str, str]) -> None:
    whole = _ids(env, "-k", "8")
    assert _ids(env, "-k", "4", "--offset", "4") == whole[4:]
    by_year = _ids(env, "-k", "13", "--sort=-year")
    assert by_year[-1] == "undated" and by_year[:3] == [i for i in by_year if i in ("d3", "d7", "d11")]
    assert _ids(env, "-k", "5", "--offset", "3", "--sort=-year") == by_year[3:8]
    counted = json.loads(run_cli(["search", "cat", "--json", "--facet", "year", "--facet", "team"], env).stdout)
    assert counted["facets"]["year"] == [{"value": 2000 + y, "count": 3} for y in range(4)]
    assert counted["facets"]["team"] == [{"value": "hr", "count": 1}] and counted["results"]
    text = run_cli(["search", "cat", "-k", "2", "--offset", "2", "--facet", "year"], env).stdout
    assert text.lstrip().startswith("3.") and "year: 2000 (3), 2001 (3), 2002 (3), 2003 (3)" in text


def test_bad_paging_is_refused_by_name(env: dict[str, str]) -> None:
    done = run_cli(["search", "cat", "--offset", "995", "--sort", "year"], env)
    assert done.returncode != 0 and "offset 995 + top_k 10 = 1005 is past the limit of 1000" in done.stderr
    done = run_cli(["search", "cat", "--sort", '"'], env)
    assert done.returncode != 0 and "sort field" in done.stderr
