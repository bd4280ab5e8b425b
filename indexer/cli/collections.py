"""`semsearch collections list|create|delete`, and the settings of the collection a command names
with `--collection` (search/collections/catalog.py keeps the rows and files of each)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from indexer.cli.args import collection_flags, flag_overrides
from indexer.cli.shared import migrate_schema, print_json

if TYPE_CHECKING:
    from search.settings import Settings
    from search.storage.collections import CollectionInfo
    from search.storage.store import Store

# The commands that act on one collection's documents; the others act on the deployment.
_ON_A_COLLECTION = ("index", "add", "worker", "rebuild", "delete", "check", "search", "eval", "migrate")


def in_collection(args: argparse.Namespace, settings: Settings) -> Settings:
    """The settings a command runs with: those of the collection it names (its own settings, with the
    flags given on top), read from the deployment's database; `default` is the server's settings."""
    from search.access import DEFAULT_COLLECTION
    from search.collections import catalog
    from search.collections.spec import effective

    if args.command not in _ON_A_COLLECTION or settings.collection == DEFAULT_COLLECTION:
        return settings
    deployment = _deployment(settings, migrate=False)
    try:
        own = catalog.collection_settings(settings, deployment, settings.collection)
    except catalog.UnknownCollectionError as exc:
        raise ValueError(f"{exc}: `semsearch collections create {exc.name}` makes it") from None
    finally:
        deployment.close()
    # Flags given for this command win over the collection's own settings (a rebuild with --factory).
    flags = {k: v for k, v in flag_overrides(args).items() if k not in ("data_dir", "database_url")}
    return effective(settings, settings.collection, {**own.model_dump(exclude={"collection"}), **flags})


def _deployment(settings: Settings, migrate: bool) -> Store:
    from search.access import DEFAULT_COLLECTION
    from search.components import open_store

    server = settings.model_copy(update={"collection": DEFAULT_COLLECTION})
    if migrate:
        migrate_schema(server)
    return open_store(server)


def every_collection(settings: Settings) -> list[Settings]:
    """The settings of every collection of the deployment, by name."""
    return [own for _, own in _every(settings)]


def _every(settings: Settings) -> list[tuple[CollectionInfo, Settings]]:
    from search.collections import catalog

    deployment = _deployment(settings, migrate=False)
    try:
        return catalog.every_collection(settings, deployment)
    finally:
        deployment.close()


def cmd_collections(args: argparse.Namespace, settings: Settings) -> int:
    """Run the collections subcommand asked for."""
    return {"list": _list, "create": _create, "delete": _delete}[args.collections_command](args, settings)


def _list(args: argparse.Namespace, settings: Settings) -> int:
    from search.components import open_store

    rows: list[dict[str, Any]] = []
    for info, own in _every(settings):
        store = open_store(own)
        try:
            counts = store.counts()
        finally:
            store.close()
        rows.append({"name": info.name, "settings": info.settings, **counts})
    if args.json:
        print_json(rows)
    for row in [] if args.json else rows:
        said = " ".join(f"{k}={v}" for k, v in row["settings"].items())
        print(f"{row['name']}  documents={row['documents']} chunks={row['chunks']}  {said}".rstrip())
    return 0


def _create(args: argparse.Namespace, settings: Settings) -> int:
    from pydantic import ValidationError

    from search.collections import catalog
    from search.collections.spec import CollectionSettings

    try:
        own = CollectionSettings.model_validate(collection_flags(args))
    except ValidationError as exc:
        raise ValueError(
            "; ".join(f"--{str(e['loc'][0]).replace('_', '-')}: {e['msg']}" for e in exc.errors())
        ) from None
    deployment = _deployment(settings, migrate=True)
    try:
        made, created = catalog.create(settings, deployment, args.name, own)
    except catalog.CollectionConflictError as exc:
        raise ValueError(str(exc)) from None
    finally:
        deployment.close()
    data = {"name": args.name, "created": created, "settings": own.given(), "pooling": made.pooling}
    if args.json:
        print_json(data)
    else:
        print(f"{'created' if created else 'exists already, with these settings:'} {args.name}")
    return 0


def _delete(args: argparse.Namespace, settings: Settings) -> int:
    from search.collections import catalog

    deployment = _deployment(settings, migrate=True)
    try:
        deleted = catalog.delete(settings, deployment, args.name)
    except catalog.DefaultCollectionError as exc:
        raise ValueError(str(exc)) from None
    finally:
        deployment.close()
    if args.json:
        print_json({"name": args.name, "deleted": deleted})
    else:
        print(f"deleted {args.name}" if deleted else f"no collection {args.name!r}")
    return 0 if deleted else 1
