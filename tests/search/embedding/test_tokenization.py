"""Word pieces from the tokenizer file: the same ids and offsets as transformers' fast tokenizer, and a
serving process that never imports torch or transformers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from search.embedding.encoder import Encoder, resolve_model
from search.embedding.tokenization import WordPieces

REPO = Path(__file__).resolve().parents[3]
TEXTS = [
    "the cat sat on the mat",
    "",
    "Ünïcödé accents, CAPITALS and punctuation!?",
    "中文分词 mixed with English words",
    "numbers 3.14159 and e-mail@example.org\tand\nnew lines",
    "a very long text " * 200,
    "   leading and trailing spaces   ",
]


@pytest.mark.parametrize("which", ["tiny", "real"])
def test_ids_and_offsets_equal_transformers(which: str, tiny_model_dir: Path) -> None:
    from transformers import AutoTokenizer

    path = str(tiny_model_dir) if which == "tiny" else resolve_model("all-MiniLM-L6-v2")
    pieces = WordPieces(path)
    assert pieces.backend == "tokenizers"
    reference = AutoTokenizer.from_pretrained(path)
    for max_length in (16, 128):
        pieces.truncate_at(max_length)
        expected = reference(TEXTS, truncation=True, max_length=max_length)["input_ids"]
        assert pieces.ids(TEXTS) == expected
        assert max(len(x) for x in expected) == max_length  # the long text was cut there
    spans = reference(TEXTS, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    assert [o.tolist() for o in pieces.offsets(TEXTS)] == [[list(p) for p in s] for s in spans]
    assert (pieces.pad_id, pieces.special_tokens) == (reference.pad_token_id, reference.num_special_tokens_to_add())


def test_a_folder_without_a_tokenizer_file_falls_back_to_transformers(tiny_model_dir: Path, tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    slow = tmp_path / "slow"
    slow.mkdir()
    for name in ("vocab.txt", "tokenizer_config.json", "special_tokens_map.json"):
        if (tiny_model_dir / name).exists():
            (slow / name).write_bytes((tiny_model_dir / name).read_bytes())
    pieces = WordPieces(str(slow))
    assert pieces.backend == "transformers"
    pieces.truncate_at(16)
    reference = AutoTokenizer.from_pretrained(str(slow))
    assert pieces.ids(TEXTS) == reference(TEXTS, truncation=True, max_length=16)["input_ids"]
    spans = reference(TEXTS, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    assert [o.tolist() for o in pieces.offsets(TEXTS)] == [[list(p) for p in s] for s in spans]


def test_serving_imports_neither_torch_nor_transformers(tiny_model_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("openvino")
    # The encoder's default OpenVINO cache, under the temp dir the fresh process is given below.
    cache = tmp_path / f"semsearch-openvino-{os.getuid()}"
    cache.mkdir(mode=0o700)
    expected = Encoder(model=str(tiny_model_dir), dtype="float32", device="cpu", cache_dir=cache).encode(TEXTS)
    # A fresh process starting as `semsearch serve` does (its worker, then the app's start-up, then a
    # search over HTTP), with the model in the OpenVINO cache now.
    script = f"""
import json, sys
from pathlib import Path
from fastapi.testclient import TestClient
import indexer.cli.main
from api.server.app import create_app
from indexer.write.worker import open_worker
from search.embedding.encoder import Encoder
from search.settings import Settings
settings = Settings(data_dir=Path({str(tmp_path / "data")!r}), model={str(tiny_model_dir)!r}, dtype="float32",
                    device="cpu")
open_worker(settings)
with TestClient(create_app(settings)) as client:
    answered = client.get("/search", params={{"q": "a first query", "k": 1}}).status_code
encoder = Encoder(model={str(tiny_model_dir)!r}, dtype="float32", device="cpu", cache_dir=Path({str(cache)!r}))
vectors = encoder.encode({TEXTS!r})
print(json.dumps({{"backend": encoder.backend, "loaded": [m for m in ("torch", "transformers") if m in sys.modules],
                  "answered": answered, "vectors": vectors.tolist()}}))
"""
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["backend"] == "openvino" and result["answered"] == 200 and result["loaded"] == []
    import numpy as np

    assert np.allclose(np.asarray(result["vectors"], dtype=np.float32), expected, atol=1e-6)
