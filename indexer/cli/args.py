"""The `semsearch` command line: its subcommands and flags, and the settings the flags override."""

from __future__ import annotations

# Imports nothing heavy: `semsearch --help` builds this parser and nothing else.
import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from search.settings import Settings

# CLI flag -> Settings field; a flag that is given overrides the SEMSEARCH_* variable.
_OVERRIDES = {
    "data_dir": "data_dir",
    "database_url": "database_url",
    "model": "model",
    "pooling": "pooling",
    "max_length": "max_length",
    "device": "device",
    "dtype": "dtype",
    "factory": "index_factory",
    "batch_tokens": "batch_tokens",
}


# The flags `collections create` takes as the new collection's own settings (search.collections.spec).
COLLECTION_FLAGS = {
    "model": "model",
    "pooling": "pooling",
    "max_length": "max_length",
    "factory": "index_factory",
    "chunk_size": "chunk_size",
    "chunk_overlap": "chunk_overlap",
    "keyword_language": "keyword_language",
    "fusion": "fusion",
}


def _common(parser: argparse.ArgumentParser, collection: bool = True) -> None:
    group = parser.add_argument_group("settings (override SEMSEARCH_* variables)")
    if collection:
        group.add_argument(
            "--collection",
            metavar="NAME",
            help="the collection to act on (default: SEMSEARCH_COLLECTION, else default)",
        )
    group.add_argument("--data-dir", type=Path)
    group.add_argument("--database-url")
    group.add_argument("--model")
    group.add_argument("--pooling", choices=["mean", "cls", "pooler"])
    group.add_argument("--max-length", type=int)
    group.add_argument("--device")
    # Checked by Settings against its one list (search.settings.Dtype); a wrong value is named there.
    group.add_argument("--dtype", help="what the model computes in: auto or a SEMSEARCH_DTYPE value (README)")
    group.add_argument("--factory", help="FAISS index-factory string, e.g. Flat, IVF1024,SQ8, HNSW32,Flat")
    group.add_argument("--batch-tokens", type=int, help="token budget of one encoder batch")
    group.add_argument("--no-chunking", action="store_true", help="embed each document whole (truncated)")
    group.add_argument("--json", action="store_true", help="print the result as JSON")
    group.add_argument("-v", "--verbose", action="store_true")


def _globs(parser: argparse.ArgumentParser) -> None:
    """--include and --exclude: which files of the folders given are read."""
    parser.add_argument(
        "--include",
        action="append",
        default=[],
        metavar="GLOB",
        help="read only files of the folders whose path (relative to the folder) or name matches; repeatable",
    )
    parser.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="GLOB",
        help="leave out files of the folders whose relative path or name matches, e.g. 'drafts/*'; repeatable",
    )


def _engine(name: str) -> str:
    """An --engine value, checked against the engines indexer.write.rebuild knows (imported only when given)."""
    from indexer.write.rebuild import ENGINES

    if name not in ENGINES:
        raise argparse.ArgumentTypeError(f"invalid choice: {name!r} (choose from {', '.join(ENGINES)})")
    return name


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(prog="semsearch", description="Self-hosted semantic search.")
    sub = parser.add_subparsers(dest="command", required=True)
    p_index = sub.add_parser(
        "index", help="index JSON Lines files, BEIR corpora, or folders of .txt, .md, .html, .pdf, .docx files"
    )
    p_index.add_argument("paths", nargs="+", type=Path)
    _globs(p_index)
    p_index.add_argument(
        "--delete-missing",
        action="store_true",
        help="the paths are the whole corpus: delete stored documents they do not contain (none if any is rejected)",
    )
    _common(p_index)
    p_add = sub.add_parser("add", help="queue documents for the worker (no embedding here)")
    p_add.add_argument("paths", nargs="+", type=Path)
    _globs(p_add)
    _common(p_add)
    p_worker = sub.add_parser(
        "worker", help="embed queued documents of every collection (or --collection's) and publish them, until stopped"
    )
    p_worker.add_argument("--until-empty", action="store_true", help="stop once the queue is empty")
    _common(p_worker)
    p_rebuild = sub.add_parser("rebuild", help="build a new index generation and switch readers to it")
    p_rebuild.add_argument(
        "--engine",
        type=_engine,
        default="local",
        help="where chunks are embedded: local or ray (pip install semsearch[ray])",
    )
    p_rebuild.add_argument("--address", help="Ray cluster address (default: a Ray instance on this machine)")
    p_rebuild.add_argument(
        "--ray-actors", type=int, help="CPU embedding actors on a cluster without GPUs (default: one per CPU)"
    )
    _common(p_rebuild)
    p_delete = sub.add_parser("delete", help="delete documents by id")
    p_delete.add_argument("ids", nargs="+")
    _common(p_delete)
    p_check = sub.add_parser("check", help="verify that every chunk has one vector and no vector lacks a chunk")
    p_check.add_argument("--repair", action="store_true", help="fix what the check finds")
    p_check.add_argument(
        "--all-collections", action="store_true", help="check (and with --repair, repair) every collection"
    )
    _common(p_check)
    p_migrate = sub.add_parser(
        "migrate", help="bring the database to the newest schema (writing commands and serve do it as they start)"
    )
    _common(p_migrate)
    p_snapshot = sub.add_parser(
        "snapshot", help="write a consistent copy of the running deployment (SQL and index files) into a new folder"
    )
    p_snapshot.add_argument("out", type=Path)
    _common(p_snapshot)
    p_restore = sub.add_parser("restore", help="restore a snapshot into an empty data directory and database")
    p_restore.add_argument("snapshot", type=Path)
    _common(p_restore)
    _add_query_commands(sub)
    _add_key_commands(sub)
    _add_collection_commands(sub)
    return parser


def _add_key_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """keys create, list and revoke (their values are checked by search.access.KeySpec, as the API's)."""
    p_keys = sub.add_parser("keys", help="create, list and revoke API keys")
    keys = p_keys.add_subparsers(dest="keys_command", required=True)
    p_create = keys.add_parser("create", help="create an API key and print it (shown this once)")
    p_create.add_argument("--role", required=True, help="read, write or admin")
    p_create.add_argument(
        "--collection",
        action="append",
        dest="collections",
        metavar="NAME",
        help="a collection the key reaches (repeat for several; default: all)",
    )
    p_create.add_argument("--expires", help="ISO 8601 time or a duration such as 30d, 12h, 90m (default: never)")
    p_create.add_argument("--name", default="", help="what the key is for")
    _common(p_create, collection=False)
    _common(keys.add_parser("list", help="list API keys (never their secrets)"), collection=False)
    p_revoke = keys.add_parser("revoke", help="revoke an API key: every server refuses it within seconds")
    p_revoke.add_argument("id", help="the key's id, as `keys list` shows it")
    _common(p_revoke, collection=False)


def _add_collection_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """collections list, create and delete (their values are checked by search.collections, as the API's)."""
    p_collections = sub.add_parser("collections", help="list, create and delete collections")
    commands = p_collections.add_subparsers(dest="collections_command", required=True)
    _common(commands.add_parser("list", help="list the collections, their settings and sizes"), collection=False)
    p_create = commands.add_parser(
        "create",
        help="create a collection; --model, --pooling, --max-length, --factory and the flags below are its own",
    )
    p_create.add_argument("name")
    p_create.add_argument("--chunk-size", type=int, help="tokens per chunk")
    p_create.add_argument("--chunk-overlap", type=int, help="tokens shared by neighbouring chunks")
    p_create.add_argument("--keyword-language", help="the keyword analyzer's language (none: no stemming)")
    p_create.add_argument("--fusion", help="bounded, convex or rrf")
    _common(p_create, collection=False)
    p_delete = commands.add_parser("delete", help="delete a collection: its documents, vectors and index files")
    p_delete.add_argument("name")
    _common(p_delete, collection=False)


def _add_query_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The subcommands that read the index: search, eval, serve."""
    p_search = sub.add_parser("search", help="search the index")
    p_search.add_argument("query")
    p_search.add_argument("-k", type=int, default=10, help="number of results (default 10)")
    p_search.add_argument(
        "--filter", metavar="JSON", help='only documents whose metadata passes, e.g. \'{"year": {"$gte": 2000}}\''
    )
    p_search.add_argument(
        "--min-score", type=float, metavar="SCORE", help="only hits scoring at least SCORE (as the API's min_score)"
    )
    p_search.add_argument("--offset", type=int, default=0, help="results to skip, for the next page (default 0)")
    p_search.add_argument(
        "--sort",
        metavar="FIELD",
        help="order the most relevant documents by a metadata field; --sort=-FIELD: descending",
    )
    p_search.add_argument(
        "--facet", action="append", default=[], metavar="FIELD", help="count the values of a metadata field (repeat)"
    )
    _mode(p_search)
    _common(p_search)
    p_eval = sub.add_parser("eval", help="nDCG@10 and Recall@100 on a BEIR-format directory")
    p_eval.add_argument("directory", type=Path)
    _mode(p_eval)
    _common(p_eval)
    p_serve = sub.add_parser("serve", help="serve the HTTP query API")
    p_serve.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1: this machine only)")
    p_serve.add_argument("--port", type=int, default=8000)
    p_serve.add_argument("--workers", type=int, default=1, help="HTTP worker processes (default 1)")
    p_serve.add_argument(
        "--no-worker", action="store_true", help="do not run the indexing worker here (run `semsearch worker`)"
    )
    _common(p_serve, collection=False)  # serves every collection


def _mode_name(name: str) -> str:
    from search.query.hits import MODES  # imported when the flag is given: --help stays light

    if name not in MODES:
        raise argparse.ArgumentTypeError(f"invalid choice: {name!r} (choose from {', '.join(MODES)})")
    return name


def _mode(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--mode",
        type=_mode_name,
        default="hybrid",
        help="hybrid: dense and keyword results fused (default); dense: vectors only; keyword: BM25 only",
    )


def settings_from(args: argparse.Namespace) -> Settings:
    """Settings from the environment, with the flags that were given on top."""
    from search.settings import Settings

    overrides = flag_overrides(args)
    if getattr(args, "collection", None) is not None:
        overrides["collection"] = args.collection
    return Settings(**overrides)


def flag_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The settings the flags given set (not the environment's)."""
    overrides: dict[str, Any] = {
        field: getattr(args, flag) for flag, field in _OVERRIDES.items() if getattr(args, flag, None) is not None
    }
    if getattr(args, "no_chunking", False):
        overrides["chunking"] = False
    return overrides


def collection_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The settings `collections create` was given for the new collection."""
    given = {field: getattr(args, flag) for flag, field in COLLECTION_FLAGS.items() if getattr(args, flag, None)}
    if getattr(args, "no_chunking", False):
        given["chunking"] = False
    return given
