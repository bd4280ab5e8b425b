"""`semsearch keys create|list|revoke`: API keys in the database, as `POST/GET/DELETE /keys` manage them."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from indexer.cli.shared import migrate_schema, print_json

if TYPE_CHECKING:
    from search.settings import Settings
    from search.storage.keys import KeyInfo

# KeySpec's fields as the flags that set them, for its messages.
_FLAGS = {"role": "--role", "collections": "--collection", "expires_at": "--expires", "name": "--name"}


def cmd_keys(args: argparse.Namespace, settings: Settings) -> int:
    """Run the keys subcommand asked for."""
    return {"create": _create, "list": _list, "revoke": _revoke}[args.keys_command](args, settings)


def _fields(info: KeyInfo) -> dict[str, Any]:
    def iso(moment: Any) -> str | None:
        return None if moment is None else moment.isoformat()

    return {
        "id": info.id,
        "name": info.name,
        "role": info.role.value,
        "collections": None if info.collections is None else list(info.collections),
        "created_at": iso(info.created_at),
        "expires_at": iso(info.expires_at),
        "revoked_at": iso(info.revoked_at),
    }


def _spec(args: argparse.Namespace) -> Any:
    """The flags as a KeySpec; a ValueError naming the flag when one is refused."""
    from pydantic import ValidationError

    from search.access import KeySpec

    raw = {"role": args.role, "collections": args.collections, "expires_at": args.expires, "name": args.name}
    try:
        return KeySpec.model_validate(raw)
    except ValidationError as exc:
        problems = [f"{_FLAGS.get(str(e['loc'][0]), e['loc'][0])}: {e['msg']}" for e in exc.errors()]
        raise ValueError("; ".join(problems)) from None


def _create(args: argparse.Namespace, settings: Settings) -> int:
    from search.components import open_store
    from search.storage import keys

    spec = _spec(args)  # checked before the database is touched
    migrate_schema(settings)
    store = open_store(settings)
    try:
        with store.session(write=True) as session:
            info, key = keys.create_key(session, spec)
    finally:
        store.close()
    if args.json:
        print_json({**_fields(info), "key": key})
        return 0
    reach = "every collection" if info.collections is None else ", ".join(info.collections)
    until = "never expires" if info.expires_at is None else f"expires {info.expires_at.isoformat()}"
    print(key)
    print(f"created key {info.id} ({info.role}, {reach}, {until}); it is shown this once", file=sys.stderr)
    return 0


def _list(args: argparse.Namespace, settings: Settings) -> int:
    from search.components import open_store
    from search.storage import keys

    store = open_store(settings)
    try:
        with store.session() as session:
            found = [_fields(info) for info in keys.list_keys(session)]
    finally:
        store.close()
    if args.json:
        print_json(found)
        return 0
    if not found:
        print("no API keys (`semsearch keys create --role admin` makes one)")
    for key in found:
        reach = "all" if key["collections"] is None else ",".join(key["collections"])
        state = f"revoked {key['revoked_at']}" if key["revoked_at"] else f"expires {key['expires_at'] or 'never'}"
        print(f"{key['id']}  {key['role']:<5}  collections={reach}  {state}  {key['name']}")
    return 0


def _revoke(args: argparse.Namespace, settings: Settings) -> int:
    from search.components import open_store
    from search.storage import keys

    migrate_schema(settings)
    store = open_store(settings)
    try:
        with store.session(write=True) as session:
            info = keys.revoke_key(session, args.id)
    finally:
        store.close()
    if info is None:
        print(f"semsearch keys revoke: no API key with id {args.id!r}", file=sys.stderr)
        return 1
    if args.json:
        print_json(_fields(info))
    else:
        print(f"revoked {info.id}")
    return 0
