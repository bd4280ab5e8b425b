"""The OpenVINO backend of the encoder (auto picks it on a CPU where the package is installed): parity with
torch, order and padding, its conversion cache, and the choice of backend."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from encoder_texts import TEXTS

from search.embedding.encoder import Encoder


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.fixture(scope="module")
def ov_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One OpenVINO cache for the conversions of the tests below that do not test the cache itself: the tiny
    model is converted once per graph (with or without the pooler), not once per test (seconds each)."""
    return tmp_path_factory.mktemp("openvino-cache")


@pytest.mark.parametrize("pooling", ["mean", "cls", "pooler"])
@pytest.mark.parametrize("dtype", ["float32", "auto"])
def test_openvino_matches_torch_float32(tiny_model_dir: Path, ov_cache: Path, pooling: str, dtype: str) -> None:
    pytest.importorskip("openvino")
    exact = Encoder(model=str(tiny_model_dir), pooling=pooling, dtype="float32", device="cpu", backend="torch")
    ov = Encoder(
        model=str(tiny_model_dir), pooling=pooling, dtype=dtype, device="cpu", backend="openvino", cache_dir=ov_cache
    )  # type: ignore[arg-type]
    assert ov.backend == "openvino" and exact.backend == "torch"
    vectors = ov.encode(TEXTS)
    assert vectors.shape == (len(TEXTS), exact.dim) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert _cosines(vectors, exact.encode(TEXTS)).min() >= 0.999


def test_openvino_keeps_order_and_padding(tiny_model_dir: Path, ov_cache: Path) -> None:
    pytest.importorskip("openvino")
    exact = Encoder(model=str(tiny_model_dir), dtype="float32", device="cpu", backend="torch")
    # A small budget makes many batches of different widths, each padded to its longest text.
    small = Encoder(
        model=str(tiny_model_dir),
        dtype="float32",
        device="cpu",
        batch_tokens=40,
        backend="openvino",
        cache_dir=ov_cache,
    )
    texts = [" ".join(["cat"] * (i % 13 + 1)) + f" {i}" for i in range(60)]
    batched = small.encode(texts)
    assert np.allclose(batched, exact.encode(texts), atol=1e-5)
    one_by_one = np.stack([small.encode([t])[0] for t in texts[:12]])
    assert np.allclose(batched[:12], one_by_one, atol=1e-5)
    streamed = list(small.iter_encode(texts, window=7))
    assert np.allclose(np.concatenate(streamed), batched, atol=1e-5)
    assert small.encode([]).shape == (0, small.dim)


def test_openvino_cache_is_reused_and_written_whole(tiny_model_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("openvino")
    import threading

    from search.embedding import openvino_runner as encoder_openvino

    first = Encoder(model=str(tiny_model_dir), dtype="float32", device="cpu", backend="openvino", cache_dir=tmp_path)
    entries = list(tmp_path.iterdir())
    assert len(entries) == 1 and (entries[0] / "model.xml").is_file() and (entries[0] / "model.bin").is_file()
    again = Encoder(model=str(tiny_model_dir), dtype="float32", device="cpu", backend="openvino", cache_dir=tmp_path)
    assert np.array_equal(first.encode(TEXTS), again.encode(TEXTS))
    # Several writers of one entry at once (as two processes converting together): all succeed, one whole entry.
    model = encoder_openvino.convert(str(tiny_model_dir), pooler=False)
    target = tmp_path / "shared"
    errors: list[BaseException] = []

    def write() -> None:
        try:
            encoder_openvino.save_atomically(model, target)
        except BaseException as exc:  # pragma: no cover - reported by the assert below
            errors.append(exc)

    threads = [threading.Thread(target=write) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([entries[0].name, "shared"])
    assert sorted(p.name for p in target.iterdir()) == ["model.bin", "model.xml"]


def test_openvino_cache_drops_entries_nobody_uses(tiny_model_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("openvino")
    import os
    import time

    from search.embedding import openvino_runner as encoder_openvino

    old = time.time() - encoder_openvino.STALE_SECONDS - 60
    stale, recent, scratch, fresh_scratch = (tmp_path / n for n in ("m-old", "m-recent", ".partial-x", ".partial-y"))
    for folder in (stale, recent, scratch, fresh_scratch):
        folder.mkdir()
        (folder / "model.xml").write_text("<net/>")
    os.utime(stale, (old, old))
    os.utime(scratch, (time.time() - 2 * 24 * 3600,) * 2)
    Encoder(model=str(tiny_model_dir), dtype="float32", device="cpu", backend="openvino", cache_dir=tmp_path)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert "m-old" not in names and ".partial-x" not in names
    assert {"m-recent", ".partial-y"} <= set(names) and len(names) == 3
    # Loading an entry marks it used: a later prune, however late, keeps what was just loaded.
    (entry,) = [p for p in tmp_path.iterdir() if p.name.startswith(tiny_model_dir.name)]
    os.utime(entry, (old, old))
    Encoder(model=str(tiny_model_dir), dtype="float32", device="cpu", backend="openvino", cache_dir=tmp_path)
    assert entry.stat().st_mtime > old + 3600
    assert entry not in encoder_openvino.prune(tmp_path, keep=tmp_path / "other")


def test_backend_choice(tiny_model_dir: Path, ov_cache: Path, monkeypatch) -> None:
    kwargs = {"model": str(tiny_model_dir), "dtype": "float32", "cache_dir": ov_cache}
    assert Encoder(device="cpu", backend="torch", **kwargs).backend == "torch"
    with pytest.raises(ValueError, match="runs on a CPU"):
        Encoder(device="cuda", backend="openvino", **kwargs)
    pytest.importorskip("openvino")
    from search.embedding import openvino_runner as encoder_openvino

    assert Encoder(device="cpu", backend="auto", **kwargs).backend == "openvino"

    def unconvertible(*_args: object) -> None:
        raise RuntimeError("simulated conversion failure")

    monkeypatch.setattr(encoder_openvino, "OpenVinoRunner", unconvertible)
    fallback = Encoder(device="cpu", backend="auto", **kwargs)
    assert fallback.backend == "torch" and fallback.encode(TEXTS).shape == (len(TEXTS), fallback.dim)
    with pytest.raises(RuntimeError, match="simulated"):
        Encoder(device="cpu", backend="openvino", **kwargs)


def test_the_backend_setting_reaches_the_encoder(settings) -> None:  # type: ignore[no-untyped-def]
    from search.components import make_encoder

    assert make_encoder(settings.model_copy(update={"backend": "torch"})).backend == "torch"
    assert make_encoder(settings.model_copy(update={"backend": "openvino"})).backend == "openvino"


def test_the_runtime_says_what_each_backend_runs(tiny_model_dir: Path, ov_cache: Path) -> None:
    kwargs = {"model": str(tiny_model_dir), "dtype": "float32", "device": "cpu", "threads": 1}
    assert Encoder(backend="torch", **kwargs).runtime == "torch torch.float32"  # type: ignore[arg-type]
    pytest.importorskip("openvino")
    runtime = Encoder(backend="openvino", cache_dir=ov_cache, **kwargs).runtime  # type: ignore[arg-type]
    # What a benchmark prints: the hint, threads and precision OpenVINO compiled with, and its kernels.
    assert "PERFORMANCE_HINT=LATENCY INFERENCE_NUM_THREADS=1 NUM_STREAMS=1" in runtime
    assert "INFERENCE_PRECISION_HINT=<Type: 'float32'>" in runtime and "; kernels " in runtime
