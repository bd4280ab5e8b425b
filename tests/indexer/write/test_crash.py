"""SIGKILL at random moments, then a rerun, ends in exactly the state of an uninterrupted run."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from cli_runner import run_cli
from dense_path import open_dense
from sqlalchemy import select

from indexer.write.keyword_writer import KeywordWriter
from search.components import open_keyword
from search.settings import Settings
from search.storage.models import Chunk, Document

WORDS = [
    "the",
    "cat",
    "dog",
    "gene",
    "protein",
    "cell",
    "cancer",
    "virus",
    "vaccine",
    "dose",
    "water",
    "fire",
    "earth",
    "wind",
    "star",
    "sky",
]


def _corpus(path: Path, n: int) -> None:
    rng = random.Random(7)
    with path.open("w") as fh:
        for i in range(n):
            sentences = rng.randint(1, 40)  # some documents span several chunks
            text = " ".join(" ".join(rng.choices(WORDS, k=9)) + "." for _ in range(sentences))
            fh.write(json.dumps({"id": f"d{i}", "title": f"doc {i}", "text": text, "metadata": {"n": i}}) + "\n")


def _env(data: Path, tiny_model_dir: Path) -> dict[str, str]:
    return {
        **os.environ,
        "SEMSEARCH_DATA_DIR": str(data),
        "SEMSEARCH_MODEL": str(tiny_model_dir),
        "SEMSEARCH_DTYPE": "float32",
        "SEMSEARCH_CHUNK_SIZE": "48",
        "SEMSEARCH_CHUNK_OVERLAP": "8",
        "SEMSEARCH_CHECKPOINT_SECONDS": "0.3",
    }


def _index_cmd(corpus: Path) -> list[str]:
    return [str(Path(sys.executable).with_name("semsearch")), "index", str(corpus)]


def _state(data: Path, tiny_model_dir: Path) -> tuple[list[tuple], list[tuple], dict[str, list]]:
    settings = Settings(**{"data_dir": data, "model": str(tiny_model_dir), "dtype": "float32"})
    searcher = open_dense(settings)
    with searcher.store.session() as s:
        docs = sorted(s.execute(select(Document.external_id, Document.title, Document.text, Document.meta)).all())
        chunks = sorted(
            s.execute(
                select(Document.external_id, Chunk.ordinal, Chunk.text, Chunk.start, Chunk.end).join(Document)
            ).all()
        )
    assert sorted(searcher.index.ids().tolist()) == sorted(searcher.store.all_chunk_ids())
    results = {}
    for query in ("the cat and the dog", "gene protein cell", "star sky wind"):
        hits = searcher.search(query, k=10)
        results[query] = [(h.id, round(h.score, 5), h.start, h.end) for h in hits]
    # The keyword index (hybrid): exactly the chunk rows, and the same documents matched (BM25 scores
    # may move a little: a replayed entry leaves a deleted copy counted until segments merge).
    keyword = open_keyword(settings)
    assert KeywordWriter(keyword).check(searcher.store).ok
    for query in ("gene protein", "sky"):
        found = keyword.search(keyword.analyzer.query_terms(query), 100_000)
        rows = searcher.store.chunk_hits([c for c, _ in found])
        results[f"keyword: {query}"] = sorted({(rows[c].document_id, 0.0, 0, 0) for c, _ in found})
    searcher.store.close()
    return [tuple(d) for d in docs], [tuple(c) for c in chunks], results


def test_killed_indexer_resumes_to_the_uninterrupted_state(tmp_path: Path, tiny_model_dir: Path) -> None:
    corpus = tmp_path / "corpus.jsonl"
    _corpus(corpus, 2000)
    reference, crashed = tmp_path / "reference", tmp_path / "crashed"
    started = time.monotonic()
    done = subprocess.run(_index_cmd(corpus), env=_env(reference, tiny_model_dir), capture_output=True, timeout=600)
    duration = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    print(f"uninterrupted run: {duration:.1f} s")

    kills = _kill_repeatedly(_index_cmd(corpus), _env(crashed, tiny_model_dir), duration, 4, seed=11)
    assert kills == 4, "the kills should land while the indexer runs"
    final = run_cli(["index", str(corpus)], _env(crashed, tiny_model_dir))  # the rerun: in this process
    assert final.returncode == 0, final.stderr

    _assert_same_state(crashed, reference, tiny_model_dir, 2000)


def _assert_same_state(got: Path, want: Path, tiny_model_dir: Path, documents: int) -> None:
    """Same documents, chunks and rankings; scores equal up to float noise (batches differ in shape)."""
    want_docs, want_chunks, want_results = _state(want, tiny_model_dir)
    got_docs, got_chunks, got_results = _state(got, tiny_model_dir)
    assert len(got_docs) == documents and got_docs == want_docs
    assert got_chunks == want_chunks
    for query, hits in want_results.items():
        assert [h[0] for h in got_results[query]] == [h[0] for h in hits]
        assert np.allclose([h[1] for h in got_results[query]], [h[1] for h in hits], atol=1e-4)


def _kill_repeatedly(cmd: list[str], env: dict[str, str], duration: float, kills_wanted: int, seed: int) -> int:
    """Start `cmd` again and again, SIGKILLing it at a random moment of its work; returns the kills.

    Committed work is never redone, so each rerun has less left: the window halves after every kill
    to keep landing while the process works (start-up, chunking, commits, embedding, index saves)."""
    rng = random.Random(seed)
    kills = 0
    for _ in range(3 * kills_wanted):
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.2, 0.6) * duration * 0.5**kills)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait(timeout=60)
        if kills == kills_wanted:
            break
    return kills


def test_killed_worker_resumes_to_the_uninterrupted_state(tmp_path: Path, tiny_model_dir: Path) -> None:
    corpus = tmp_path / "corpus.jsonl"
    _corpus(corpus, 800)
    reference, crashed = tmp_path / "reference", tmp_path / "crashed"
    worker = [str(Path(sys.executable).with_name("semsearch")), "worker", "--until-empty"]
    for data in (reference, crashed):
        queued = run_cli(["add", str(corpus)], _env(data, tiny_model_dir))  # not what is killed: in this process
        assert queued.returncode == 0, queued.stderr
    started = time.monotonic()
    done = subprocess.run(worker, env=_env(reference, tiny_model_dir), capture_output=True, timeout=600)
    assert done.returncode == 0, done.stderr
    kills = _kill_repeatedly(worker, _env(crashed, tiny_model_dir), time.monotonic() - started, 4, seed=5)
    assert kills == 4, "the kills should land while the worker runs"
    final = run_cli(["worker", "--until-empty"], _env(crashed, tiny_model_dir))
    assert final.returncode == 0, final.stderr
    _assert_same_state(crashed, reference, tiny_model_dir, 800)
