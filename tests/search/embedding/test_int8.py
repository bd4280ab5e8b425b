"""SEMSEARCH_DTYPE=int8: NNCF's quantization of the OpenVINO model, its cache, and the combinations refused."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from encoder_texts import TEXTS
from pydantic import ValidationError

from search.embedding.encoder import Encoder
from search.settings import Settings

pytest.importorskip("openvino")
pytest.importorskip("nncf")

# The tiny model's int8 vectors measure 0.99997 to its float32 ones, all-MiniLM-L6-v2's on 600 SciFact
# documents at least 0.990 (README, bench/int8.py). The bound sits between: looser than the 0.999 of
# float32 and bf16 (test_openvino_backend.py), as int8 keeps 8 bits of each activation where bf16 keeps
# 8 of the mantissa plus a free exponent; it allows the tiny model over 100x the loss it measures, no more.
MIN_COSINE = 0.995


class _Counted:
    """search.embedding.openvino_quantize.quantize, counting its calls."""

    def __init__(self) -> None:
        from search.embedding import openvino_quantize

        self.calls = 0
        self._quantize = openvino_quantize.quantize

    def __call__(self, *args: object) -> object:
        self.calls += 1
        return self._quantize(*args)  # type: ignore[arg-type]


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> _Counted:
    from search.embedding import openvino_quantize

    counter = _Counted()
    monkeypatch.setattr(openvino_quantize, "quantize", counter)
    return counter


def _int8(model_dir: Path, cache: Path, **kwargs: object) -> Encoder:
    options: dict[str, object] = {"device": "cpu", **kwargs}
    return Encoder(model=str(model_dir), dtype="int8", cache_dir=cache, **options)  # type: ignore[arg-type]


def _fake_quantize_ops(entry: Path) -> int:
    import openvino as ov

    return sum(op.get_type_name() == "FakeQuantize" for op in ov.Core().read_model(entry / "model.xml").get_ops())


def test_int8_encoder_is_quantized_close_to_float32_and_cached(
    tiny_model_dir: Path, tmp_path: Path, counted: _Counted
) -> None:
    first = _int8(tiny_model_dir, tmp_path)
    assert first.backend == "openvino" and first.dtype == "int8" and counted.calls == 1
    (entry,) = tmp_path.glob("*-int8-*")
    assert _fake_quantize_ops(entry) > 0  # a quantized graph, not the float one under another name
    vectors = first.encode(TEXTS)
    assert vectors.dtype == np.float32 and np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    exact = Encoder(model=str(tiny_model_dir), dtype="float32", device="cpu", backend="openvino", cache_dir=tmp_path)
    assert (vectors * exact.encode(TEXTS)).sum(axis=1).min() >= MIN_COSINE
    # A second process finds the quantized model: no second calibration, the very same vectors.
    again = _int8(tiny_model_dir, tmp_path)
    assert counted.calls == 1 and np.array_equal(again.encode(TEXTS), vectors)


def test_int8_cache_key_follows_what_calibration_depends_on(
    tiny_model_dir: Path, tmp_path: Path, counted: _Counted, monkeypatch: pytest.MonkeyPatch
) -> None:
    _int8(tiny_model_dir, tmp_path)
    _int8(tiny_model_dir, tmp_path, max_length=16)  # calibration texts truncated differently
    _int8(tiny_model_dir, tmp_path, pooling="cls")
    assert counted.calls == 3 and len(list(tmp_path.glob("*-int8-*"))) == 3
    from search.embedding import openvino_runner

    real_version = openvino_runner._version
    monkeypatch.setattr(openvino_runner, "_version", lambda p: "9.9.9" if p == "nncf" else real_version(p))
    _int8(tiny_model_dir, tmp_path)  # another NNCF release calibrates anew
    assert counted.calls == 4 and len(list(tmp_path.glob("*-int8-*"))) == 4


def test_int8_cache_write_that_fails_leaves_no_entry(
    tiny_model_dir: Path, tmp_path: Path, counted: _Counted, monkeypatch: pytest.MonkeyPatch
) -> None:
    import openvino as ov

    _ = Encoder(model=str(tiny_model_dir), dtype="float32", device="cpu", backend="openvino", cache_dir=tmp_path)

    def dies_half_way(model: object, path: Path, **_kwargs: object) -> None:
        Path(path).write_text("<net")  # a half-written IR, then the disk fills
        raise OSError("simulated: no space left on device")

    monkeypatch.setattr(ov, "save_model", dies_half_way)
    assert _int8(tiny_model_dir, tmp_path).encode(TEXTS).shape == (len(TEXTS), 32)  # still works, uncached
    assert not list(tmp_path.glob("*-int8-*")) and not list(tmp_path.glob(".partial-*"))
    monkeypatch.undo()
    from search.embedding import openvino_quantize

    monkeypatch.setattr(openvino_quantize, "quantize", counted)
    _int8(tiny_model_dir, tmp_path)
    assert counted.calls == 2 and len(list(tmp_path.glob("*-int8-*"))) == 1


def test_int8_without_nncf_names_the_extra(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "nncf", None)  # as if not installed: importing it raises ImportError
    with pytest.raises(ValueError, match=r"semsearch\[int8\]"):
        _int8(tiny_model_dir, tmp_path)


def test_int8_is_refused_off_openvino_and_off_the_cpu(tiny_model_dir: Path, tmp_path: Path) -> None:
    for settings in ({"backend": "torch"}, {"device": "cuda"}, {"device": "cuda:1", "backend": "auto"}):
        with pytest.raises(ValidationError, match="dtype int8 runs on the openvino backend on a CPU"):
            Settings(dtype="int8", **settings)  # type: ignore[arg-type]
    assert Settings(dtype="int8").dtype == "int8"
    with pytest.raises(ValueError, match="int8 runs on the openvino backend, not on torch"):
        _int8(tiny_model_dir, tmp_path, backend="torch")
    with pytest.raises(ValueError, match="int8 runs on a CPU"):
        _int8(tiny_model_dir, tmp_path, device="cuda")
    assert not list(tmp_path.iterdir())  # refused before anything was converted


def test_auto_never_means_int8() -> None:
    from search.embedding.batching import Device, resolve_dtype

    assert resolve_dtype("auto", Device("cpu")) in ("float32", "bfloat16")
    assert resolve_dtype("int8", Device("cpu")) == "int8"


def test_the_cli_takes_int8_and_refuses_it_on_torch(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from indexer.cli.main import main

    monkeypatch.setenv("TMPDIR", str(tmp_path))  # the default OpenVINO cache: a private folder here
    corpus = tmp_path / "docs.jsonl"
    corpus.write_text(json.dumps({"id": "cat", "text": "the cat sat on the mat"}) + "\n")
    flags = ["--data-dir", str(tmp_path / "data"), "--model", str(tiny_model_dir), "--json"]
    assert main(["index", str(corpus), "--dtype", "int8", *flags]) == 0
    assert main(["search", "cat", "--mode", "dense", "--dtype", "int8", *flags]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])[0]["id"] == "cat"
    monkeypatch.setenv("SEMSEARCH_BACKEND", "torch")
    assert main(["search", "cat", "--dtype", "int8", *flags]) == 2
    assert "dtype int8 runs on the openvino backend on a CPU" in capsys.readouterr().err
    assert main(["search", "cat", "--dtype", "int9", *flags]) == 2
    assert "'int8'" in capsys.readouterr().err  # the one list of dtypes, named by Settings
