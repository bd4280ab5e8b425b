"""The one settings object: built once from `SEMSEARCH_*` variables (and CLI flags) and passed down."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from search.access import DEFAULT_COLLECTION, check_collection_name
from search.collections import placement
from search.embedding.space import Pooling

Backend = Literal["auto", "torch", "openvino"]
# What the model computes in; `auto` resolves per device (search/embedding/batching.py). int8: the matrix
# multiplications quantized by NNCF (the `int8` extra), on the OpenVINO backend on a CPU only.
Dtype = Literal["float32", "float16", "bfloat16", "int8"]
DEFAULT_MODEL = "all-MiniLM-L6-v2"
# The keyword analyzer's language (its Snowball stemmer and stopwords); "none" only lowercases and folds.
KeywordLanguage = Literal[
    "none",
    "arabic",
    "danish",
    "dutch",
    "english",
    "finnish",
    "french",
    "german",
    "greek",
    "hungarian",
    "italian",
    "norwegian",
    "portuguese",
    "romanian",
    "russian",
    "spanish",
    "swedish",
    "tamil",
    "turkish",
]
Fusion = Literal["bounded", "convex", "rrf"]


class Settings(BaseSettings):
    """Everything semsearch can be told. Environment variables carry the prefix `SEMSEARCH_`."""

    model_config = SettingsConfigDict(env_prefix="SEMSEARCH_", extra="ignore", protected_namespaces=())

    data_dir: Path = Field(default=Path("semsearch-data"), description="Index files and the SQLite database.")
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL; default a SQLite file in data_dir. PostgreSQL: postgresql+psycopg://...",
    )
    collection: str = Field(
        default=DEFAULT_COLLECTION,
        description="The collection a CLI command acts on (its --collection); serve and worker serve all of them.",
    )
    model: str = Field(default=DEFAULT_MODEL, description="Model name, local folder or (where reachable) hub name.")
    model_aliases: str | None = Field(
        default=None,
        description="Comma-separated names /v1/embeddings also answers to (e.g. text-embedding-3-small), besides "
        "the model's own name and its last path part; any other requested model is a 404.",
    )
    pooling: Pooling = "mean"
    max_length: int | None = Field(default=None, ge=8, description="Token limit; default the model's own.")
    device: str = Field(default="auto", description="auto, cpu, cuda, cuda:N.")
    dtype: Literal["auto"] | Dtype = "auto"
    backend: Backend = Field(
        default="auto",
        description="Encoder runtime: auto is OpenVINO on a CPU where it is installed and takes the model, else torch.",
    )
    index_factory: str = Field(
        default="auto",
        description="A FAISS index-factory string, or auto: exact while small, IVF growing with the corpus beyond.",
    )
    batch_tokens: int | None = Field(
        default=None, ge=256, description="Token budget of one encoder batch; default 8192 on CPU, sized to GPU memory."
    )
    torch_threads: int | None = Field(
        default=None, ge=1, description="CPU threads of one forward pass; default torch's own (one per core)."
    )
    search_threads: int | None = Field(
        default=None,
        ge=1,
        description="Searches the API runs at once (index lookups, SQL joins, fusion); default one per core.",
    )
    search_max_requests: int | None = Field(
        default=None,
        ge=1,
        description="Search and embedding requests the API holds at once, running or waiting; past it, 429 with "
        "Retry-After. Default batch_max_pending + search_threads: as many as may wait for the encoder (a text "
        "each at least) and one running per search thread.",
    )
    # The idea and the default of Elasticsearch's index.max_result_window: no request makes the server
    # build more hits than this, whatever its shape (api/server/flow/budget.py).
    search_max_hits: int = Field(
        default=10_000,
        ge=1000,  # one search at the largest top_k (1000) always fits
        description="Most hits one search request may ask for (its queries x top_k); past it, 422.",
    )
    chunking: bool = True
    chunk_size: int = Field(default=256, ge=16, description="Tokens per chunk.")
    chunk_overlap: int = Field(default=32, ge=0, description="Tokens shared by neighbouring chunks.")
    checkpoint_seconds: float = Field(
        default=60.0, gt=0, description="How often a long indexing run saves the index (bounds re-work after a crash)."
    )
    publish_seconds: float = Field(
        default=1.0,
        gt=0,
        description="How often the worker publishes: catches every derived index up with SQL (a FAISS base-file "
        "merge when one is due, the keyword index). Readers see committed vectors without it.",
    )
    reload_seconds: float = Field(
        default=1.0, gt=0, description="How often a server looks for a newly published index."
    )
    batch_wait_ms: float = Field(
        default=2.0,
        ge=0,
        description="How long the API holds a query to embed it together with others arriving meanwhile.",
    )
    batch_max_rows: int = Field(
        default=256, ge=1, description="Most texts the API sends through the model in one shared batch."
    )
    batch_max_pending: int = Field(
        default=4096,
        ge=1,
        description="Most texts the API lets wait for the encoder; past it, requests get 429 with Retry-After.",
    )
    worker_failure_budget: int = Field(
        default=5, ge=1, description="Consecutive failures after which the indexing worker counts as failing."
    )
    worker_max_backoff_seconds: float = Field(
        default=60.0, gt=0, description="Longest wait of the indexing worker between retries (it doubles per failure)."
    )
    degraded_pending_seconds: float = Field(
        default=300.0,
        gt=0,
        description="/health says degraded once a written document has waited this long to become searchable.",
    )
    degraded_index_lag_seconds: float = Field(
        default=60.0,
        gt=0,
        description="/health says degraded once a derived index a server searches (its own keyword index, the "
        "dense view) has been behind the change log this long.",
    )
    api_key: SecretStr | None = None
    snapshot_dir: Path | None = Field(
        default=None,
        description="Where POST /snapshots writes snapshots (a folder each); unset, the route answers 404.",
    )
    # Hybrid retrieval (search/query/hybrid.py): a BM25 keyword index beside the vectors, fused per document.
    keyword_language: KeywordLanguage = Field(
        default="english", description="Keyword analyzer language: stemming and stopwords (none: neither)."
    )
    # bounded at equal weights: a score of the document's own (a threshold means the same for every
    # query), at SciFact's nDCG of min-max convex fusion within 0.003 (README); rrf fused it worse.
    fusion: Fusion = Field(
        default="bounded",
        description="bounded: weighted sum of the document's own cosine and BM25 over the query's bound; "
        "convex: weighted sum of min-max normalised scores; rrf: reciprocal rank fusion.",
    )
    fusion_weight: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="bounded and convex fusion: the dense score's weight (the keyword score gets 1 - it).",
    )
    rrf_k: int = Field(default=60, ge=1, description="rrf fusion: a document ranked r scores 1 / (rrf_k + r).")
    candidates: int = Field(
        default=100,
        ge=1,
        le=10_000,
        description="Documents each retriever ranks before fusion (at least top_k), whatever the page size.",
    )
    max_body_bytes: int = Field(
        default=16 * 1024 * 1024,
        ge=1024,
        description="Largest request body the API accepts; larger ones get 413 before they are read into memory.",
    )
    header_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        description="A connection the API is not answering (new, or idle after its answers) is closed unless it sends "
        "a complete request head within this many seconds; a request body must bring 1 KiB (or its rest) in each "
        "such period.",
    )
    max_connections: int | None = Field(
        default=None,
        ge=1,
        description="Open connections per server process; past it, the one idle longest is closed, or when every "
        "one is being answered the new one gets 503 with Retry-After. Default: the open-file limit (serve raises "
        "it to the hard limit) less a quarter of it (at least 128), left to the database and index files; at "
        "most 65,536.",
    )

    @field_validator("chunk_overlap")
    @classmethod
    def _overlap_below_size(cls, value: int, info: ValidationInfo) -> int:
        size = info.data.get("chunk_size", 256)
        if value >= size:
            raise ValueError(f"chunk_overlap ({value}) must be smaller than chunk_size ({size})")
        return value

    @field_validator("collection")
    @classmethod
    def _collection_name(cls, value: str) -> str:
        return check_collection_name(value)

    @model_validator(mode="after")
    def _int8_on_openvino(self) -> Settings:
        # Said now, not when the encoder first runs: only the OpenVINO CPU backend has an int8 model.
        if self.dtype == "int8" and (self.backend == "torch" or self.device.startswith("cuda")):
            raise ValueError(
                f"dtype int8 runs on the openvino backend on a CPU, not backend={self.backend}, device={self.device}"
            )
        return self

    @property
    def deployment_database_url(self) -> str:
        """The deployment's database (its keys, its collections, and the collection `default`): the
        configured URL, else a SQLite file in the data directory."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'semsearch.db').resolve()}"

    @property
    def resolved_database_url(self) -> str:
        """The database of the collection these settings name (search/collections/placement.py)."""
        return placement.database_url(self.deployment_database_url, self.data_dir, self.collection)

    @property
    def collection_dir(self) -> Path:
        """The folder of the collection's index files: the data directory itself for `default`."""
        return placement.collection_dir(self.data_dir, self.collection)

    @property
    def index_dir(self) -> Path:
        """Where index generations are written."""
        return self.collection_dir / "index"

    @property
    def keyword_dir(self) -> Path:
        """Where the keyword index lives (a folder per analyzer language)."""
        return self.collection_dir / "keyword"


def settings_env(settings: Settings) -> dict[str, str]:
    """`settings` as SEMSEARCH_* variables, for child processes that build their own (uvicorn workers)."""
    out: dict[str, str] = {}
    for name, value in settings.model_dump(exclude_none=True).items():
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        out[f"SEMSEARCH_{name.upper()}"] = str(value).lower() if isinstance(value, bool) else str(value)
    return out
