"""SIGKILL a process that writes documents and catches the keyword index up, at random moments
(inside SQL writes, tantivy commits, merges, the state record), then let it finish: the index holds
exactly the chunk rows and finds what an uninterrupted run's index finds, on both databases."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from indexer.write.keyword_writer import KeywordWriter
from search.keyword.index import KeywordIndex
from search.storage.store import Store

# Writes and deletes in a fixed sequence, catching up after each step; rerun, it replays the
# sequence from the start (upserts and deletes of the same ids), ending in the same documents.
_SCRIPT = """
import random, sys
from pathlib import Path
from indexer.write.keyword_writer import KeywordWriter
from search.keyword.index import KeywordIndex
from search.storage.records import ChunkIn, DocumentIn
from search.storage.store import Store

words = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda sigma omega gene cell".split()
store, index = Store(sys.argv[1]), KeywordWriter(KeywordIndex(Path(sys.argv[2])))
rng = random.Random(5)
for step in range(12):
    batch = []
    for _ in range(40):
        text = " ".join(rng.choices(words, k=rng.randint(4, 30)))
        half = len(text) // 2
        chunks = [ChunkIn(0, text[:half], 0, half), ChunkIn(1, text[half:], half, len(text))]
        batch.append((DocumentIn(f"d{rng.randrange(400)}", text, f"title {step}"), chunks))
    store.write_documents(list({d.external_id: (d, c) for d, c in batch}.values()))
    if step % 4 == 3:
        store.delete_documents([f"d{rng.randrange(400)}" for _ in range(15)])
    index.catch_up(store, batch=int(sys.argv[3]))
"""


def _run(url: str, root: Path, kill_after: float | None = None) -> tuple[bool, float]:
    """Run the script; kill it after `kill_after` seconds when given. Returns (killed, seconds)."""
    started = time.monotonic()
    cmd = [sys.executable, "-c", _SCRIPT, url, str(root), "37"]  # small batches: many commits to land in
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE)
    if kill_after is not None:
        try:
            proc.wait(timeout=kill_after)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=60)
            return True, time.monotonic() - started
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err.decode()
    return False, time.monotonic() - started


def _matches(store: Store, index: KeywordIndex, query: str) -> set[str]:
    found = index.search(index.analyzer.query_terms(query), 10_000)
    rows = store.chunk_hits([c for c, _ in found])
    return {rows[c].document_id for c, _ in found if c in rows}


def test_a_killed_catch_up_resumes_to_the_uninterrupted_state(database_url: str, tmp_path: Path) -> None:
    reference = f"sqlite:///{tmp_path / 'reference.db'}"
    _, duration = _run(reference, tmp_path / "reference")
    rng, kills = random.Random(11), 0
    for _ in range(8):
        killed, _ = _run(database_url, tmp_path / "crashed", kill_after=rng.uniform(0.15, 0.9) * duration)
        kills += killed
        if kills == 4:
            break
    assert kills == 4, "the kills should land while the process works"
    _run(database_url, tmp_path / "crashed")

    want_store, got_store = Store(reference), Store(database_url)
    want, got = KeywordIndex(tmp_path / "reference"), KeywordIndex(tmp_path / "crashed")
    state = KeywordWriter(got).check(got_store)
    assert state.ok, state
    assert state.indexed == len(got_store.all_chunk_ids()) == len(want_store.all_chunk_ids())
    for query in ("alpha", "gene cell", "omega sigma", "title 11", "title 3"):
        assert _matches(got_store, got, query) == _matches(want_store, want, query), query
    want_store.close()
    got_store.close()
