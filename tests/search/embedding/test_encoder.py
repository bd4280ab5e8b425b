"""The encoder: masked mean pooling, order restored, token-budget batches, parity with sentence-transformers."""

from __future__ import annotations

import json
from itertools import islice
from pathlib import Path

import numpy as np
import pytest
import torch
from encoder_texts import TEXTS

from search.embedding.batching import Device, plan_batches, resolve_dtype
from search.embedding.encoder import Encoder, resolve_model


def test_shape_norm_and_order(tiny_encoder: Encoder) -> None:
    vectors = tiny_encoder.encode(TEXTS)
    assert vectors.shape == (len(TEXTS), tiny_encoder.dim) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    one_by_one = np.stack([tiny_encoder.encode([t])[0] for t in TEXTS])
    # Batching pads to the longest text; masked pooling makes that invisible, and order is restored.
    assert np.allclose(vectors, one_by_one, atol=1e-5)
    assert tiny_encoder.encode([]).shape == (0, tiny_encoder.dim)


def test_mean_pooling_matches_a_hand_computation(tiny_encoder: Encoder) -> None:
    text = TEXTS[3]
    batch = tiny_encoder.tokenizer([text], return_tensors="pt")
    with torch.no_grad():
        hidden = tiny_encoder.model(**batch).last_hidden_state[0]
    expected = hidden.mean(dim=0)
    expected = (expected / expected.norm()).numpy()
    assert np.allclose(tiny_encoder.encode([text])[0], expected, atol=1e-5)


def test_cls_and_pooler_pooling(tiny_model_dir: Path, tiny_encoder: Encoder) -> None:
    batch = tiny_encoder.tokenizer([TEXTS[0]], return_tensors="pt")
    with torch.no_grad():
        out = tiny_encoder.model(**batch)
    for pooling, raw in (("cls", out.last_hidden_state[0, 0]), ("pooler", out.pooler_output[0])):
        enc = Encoder(model=str(tiny_model_dir), pooling=pooling, dtype="float32", device="cpu")
        assert np.allclose(enc.encode([TEXTS[0]])[0], (raw / raw.norm()).numpy(), atol=1e-5)
    with pytest.raises(ValueError, match="pooling must be"):
        Encoder(model=str(tiny_model_dir), pooling="max")  # type: ignore[arg-type]


def test_truncation_at_max_length(tiny_model_dir: Path) -> None:
    enc = Encoder(model=str(tiny_model_dir), max_length=8, dtype="float32", device="cpu")
    long = "the cat sat on the mat and the dog ran in the park"
    ids = enc.tokenizer(long, add_special_tokens=False)["input_ids"]
    head = enc.tokenizer.decode(ids[:6])  # 8 = [CLS] + 6 tokens + [SEP]
    assert np.allclose(enc.encode([long]), enc.encode([head]), atol=1e-5)
    wide = Encoder(model=str(tiny_model_dir), max_length=64, dtype="float32", device="cpu")
    assert not np.allclose(enc.encode([long]), wide.encode([long]), atol=1e-3)


def test_token_spans_are_never_truncated_by_a_concurrent_encode(tiny_encoder: Encoder) -> None:
    # The indexer chunks (spans without truncation) in one thread while the model encodes (truncated
    # at max_length) in another; a shared tokenizer once let the second cut the first's documents short.
    import threading

    long_text = " ".join(["the cat sat on the mat."] * 60)
    full = len(tiny_encoder.token_spans([long_text])[0].starts)
    assert full > tiny_encoder.max_length
    stop = threading.Event()

    def encode_forever() -> None:
        # Tokenising for the model (truncated at max_length), as fast as possible.
        while not stop.is_set():
            tiny_encoder.count_tokens([long_text])

    thread = threading.Thread(target=encode_forever)
    thread.start()
    try:
        # Large batches, as the indexer chunks them: the Rust tokenizer reads its settings while it works.
        lengths = {len(s.starts) for _ in range(20) for s in tiny_encoder.token_spans([long_text] * 256)}
    finally:
        stop.set()
        thread.join()
    assert lengths == {full}


def test_token_budget_batches() -> None:
    lengths = np.array([5, 100, 30, 30, 7, 100, 64])
    batches = plan_batches(lengths, token_budget=200)
    assert sorted(np.concatenate(batches).tolist()) == list(range(len(lengths)))
    for batch in batches:
        assert lengths[batch].max() * len(batch) <= 200 or len(batch) == 1
        assert list(lengths[batch]) == sorted(lengths[batch], reverse=True)
    assert [len(b) for b in plan_batches(np.array([500, 3]), token_budget=100)] == [1, 1]


def test_many_batches_keep_input_order(tiny_model_dir: Path, tiny_encoder: Encoder) -> None:
    small = Encoder(model=str(tiny_model_dir), dtype="float32", device="cpu", batch_tokens=40)
    texts = [" ".join(["cat"] * (i % 13 + 1)) + f" {i}" for i in range(60)]
    assert np.allclose(small.encode(texts), tiny_encoder.encode(texts), atol=1e-5)


def test_out_of_memory_splits_the_batch(tiny_model_dir: Path, tiny_encoder: Encoder, monkeypatch) -> None:
    enc = Encoder(model=str(tiny_model_dir), dtype="float32", device="cpu", batch_tokens=4096)
    real_forward = enc._forward
    sizes: list[int] = []

    def forward(input_ids: torch.Tensor, mask: torch.Tensor) -> np.ndarray:
        sizes.append(len(input_ids))
        if len(input_ids) > 8:  # a device that holds 8 rows at most
            raise torch.OutOfMemoryError("simulated")
        return real_forward(input_ids, mask)

    monkeypatch.setattr(enc, "_forward", forward)
    texts = [f"the cat sat on the mat {i}" for i in range(30)]
    assert np.allclose(enc.encode(texts), tiny_encoder.encode(texts), atol=1e-5)
    assert sizes[0] == 30 and max(sizes[1:]) <= 30 and enc.batch_tokens < 4096
    single = Encoder(model=str(tiny_model_dir), dtype="float32", device="cpu")
    monkeypatch.setattr(single, "_forward", lambda *_: (_ for _ in ()).throw(torch.OutOfMemoryError("x")))
    with pytest.raises(torch.OutOfMemoryError):
        single.encode(["one text that cannot fit"])


def test_streaming_windows_equal_one_call(tiny_encoder: Encoder) -> None:
    texts = [f"gene protein cell {i} " * (i % 5 + 1) for i in range(50)]
    streamed = list(tiny_encoder.iter_encode(texts, window=7))
    assert [len(b) for b in streamed] == [7] * 7 + [1]
    assert np.allclose(np.concatenate(streamed), tiny_encoder.encode(texts), atol=1e-5)


def test_dtype_and_model_resolution() -> None:
    assert resolve_dtype("auto", Device("cuda")) == "float16"
    assert resolve_dtype("float32", Device("cpu")) == "float32"
    assert resolve_dtype("auto", Device("cpu")) in ("float32", "bfloat16")
    with pytest.raises(ValueError, match="dtype must be auto or one of float32, float16, bfloat16, int8"):
        resolve_dtype("int4", Device("cpu"))
    bundled = Path(resolve_model("all-MiniLM-L6-v2"))
    assert (bundled / "model.safetensors").is_file()
    assert resolve_model("sentence-transformers/all-MiniLM-L6-v2") == str(bundled)


def _scifact_sample(scifact: Path, n: int) -> list[str]:
    with (scifact / "corpus.jsonl").open() as fh:
        docs = [json.loads(line) for line in islice(fh, n)]
    return [f"{d['title']} {d['text']}" for d in docs]


@pytest.mark.slow
def test_parity_with_sentence_transformers(real_encoder: Encoder, scifact: Path) -> None:
    from sentence_transformers import SentenceTransformer

    texts = _scifact_sample(scifact, 128)  # 101 to 861 tokens: 91 of them truncated at 256
    reference = SentenceTransformer(resolve_model("all-MiniLM-L6-v2"), device="cpu").encode(
        texts, batch_size=64, normalize_embeddings=True
    )
    # Where the defaults resolve to float32 on the CPU (no native bf16), the default encoder is the exact one:
    # building and running a second copy would only repeat the same documents.
    same = real_encoder.dtype == "float32" and real_encoder.device.type == "cpu"
    exact = real_encoder if same else Encoder(dtype="float32", device="cpu")
    assert exact.max_length == 256
    exact_vectors = exact.encode(texts)
    assert (exact_vectors * reference).sum(axis=1).min() >= 0.99999
    default_vectors = exact_vectors if same else real_encoder.encode(texts)
    assert (default_vectors * reference).sum(axis=1).min() >= 0.999
