"""The CLI's modes, in-process: search --mode, eval --mode, check and rebuild covering the keyword index."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from indexer.cli.main import main


@pytest.fixture
def flags(tmp_path: Path, tiny_model_dir: Path) -> list[str]:
    return ["--data-dir", str(tmp_path / "data"), "--model", str(tiny_model_dir), "--dtype", "float32", "--json"]


def _json(capsys: pytest.CaptureFixture[str]) -> object:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_search_check_and_rebuild_in_every_mode(
    tmp_path: Path, flags: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    corpus = tmp_path / "docs.jsonl"
    texts = {"part": "the part number ZQX-4471 fits", "cat": "the cat sat on the mat", "zh": "我爱北京大学"}
    corpus.write_text("".join(json.dumps({"id": k, "text": v}) + "\n" for k, v in texts.items()))
    # In this process too: the SQLite writer lock goes with the command (FileLock.__del__), so `rebuild` below gets it.
    assert main(["index", str(corpus), *flags]) == 0
    capsys.readouterr()
    for mode in ("keyword", "hybrid"):
        assert main(["search", "ZQX-4471", "--mode", mode, *flags]) == 0
        hits = _json(capsys)
        assert isinstance(hits, list) and hits[0]["id"] == "part" and hits[0]["matched_terms"] == ["ZQX", "4471"]
        assert hits[0]["keyword"]["rank"] == 1
    assert main(["search", "北京", "--mode", "keyword", *flags]) == 0
    assert [h["id"] for h in _json(capsys)] == ["zh"]  # type: ignore[union-attr]
    assert main(["search", "cat", "--mode", "dense", *flags]) == 0
    assert all(h["keyword"] is None for h in _json(capsys))  # type: ignore[union-attr]
    with pytest.raises(SystemExit):
        main(["search", "cat", "--mode", "nonsense", *flags])
    assert "invalid choice: 'nonsense'" in capsys.readouterr().err

    assert main(["delete", "cat", *flags]) == 0
    capsys.readouterr()
    assert main(["search", "cat mat", "--mode", "keyword", *flags]) == 0
    assert _json(capsys) == []
    assert main(["check", *flags]) == 0
    report = _json(capsys)
    assert isinstance(report, dict)
    assert (report["keyword"]["ok"], report["keyword"]["indexed"], report["keyword"]["behind"]) == (True, 2, 0)
    assert main(["rebuild", *flags]) == 0
    rebuilt = _json(capsys)
    assert isinstance(rebuilt, dict) and rebuilt["keyword_chunks"] == 2


def test_eval_in_keyword_mode(tmp_path: Path, flags: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    beir = tmp_path / "beir"
    (beir / "qrels").mkdir(parents=True)
    texts = ["the cat sat on the mat", "a dog ran in the park", "gene protein cell", "virus vaccine dose"]
    (beir / "corpus.jsonl").write_text(
        "".join(json.dumps({"_id": f"d{i}", "text": t}) + "\n" for i, t in enumerate(texts))
    )
    (beir / "queries.jsonl").write_text(
        "".join(json.dumps({"_id": f"q{i}", "text": t}) + "\n" for i, t in enumerate(texts))
    )
    (beir / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"q{i}\td{i}\t1\n" for i in range(4))
    )
    # Each query is its own document's words: BM25 ranks that document first (the tiny model's
    # random vectors could not be relied on for that).
    assert main(["eval", str(beir), "--mode", "keyword", *flags]) == 0
    metrics = _json(capsys)
    assert isinstance(metrics, dict) and (metrics["mode"], metrics["ndcg@10"], metrics["queries"]) == (
        "keyword",
        1.0,
        4,
    )


def test_a_derived_index_that_did_not_catch_up_is_named_and_mended_next_time(
    tmp_path: Path, flags: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    corpus = tmp_path / "docs.jsonl"
    texts = {"cat": "the cat sat on the mat", "dog": "a dog ran in the park"}
    corpus.write_text("".join(json.dumps({"id": k, "text": v}) + "\n" for k, v in texts.items()))
    keyword_dir = tmp_path / "data" / "keyword"
    keyword_dir.parent.mkdir(parents=True)
    keyword_dir.write_text("not a folder")  # the keyword writer cannot make its folder
    assert main(["index", str(corpus), *flags]) == 1  # the documents are in, their keyword index is not
    err = capsys.readouterr().err
    assert "semsearch index: the keyword index did not catch up with SQL: FileExistsError" in err
    keyword_dir.unlink()
    assert main(["delete", "dog", *flags]) == 0  # its catch-up builds the keyword index from SQL
    capsys.readouterr()
    assert main(["search", "mat", "--mode", "keyword", *flags]) == 0
    assert [h["id"] for h in _json(capsys)] == ["cat"]  # type: ignore[union-attr]
