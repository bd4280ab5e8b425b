"""A snapshot's manifest (manifest.json, written last): what it holds, at which change-log seq, in which
schema and embedding space, and a SHA-256 of every file, checked before anything is restored."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# Bumped when the layout of a snapshot changes; a restore refuses a format it does not know.
FORMAT = 1
MANIFEST = "manifest.json"
_CHUNK = 1 << 20


class SnapshotError(ValueError):
    """A snapshot that cannot be taken or restored (the message says why and what to do)."""


@dataclass
class Manifest:
    """What a snapshot holds. `seq` is the change-log seq of its SQL copy; the index files it holds
    (`dense_file`, `keyword_dir`) applied at most that much, so a restored deployment catches them up
    from the log in O(changes)."""

    database: str  # "sqlite" or "postgresql": the store it came from, and the only kind it restores into
    schema_revision: str  # the Alembic revision of the SQL copy
    seq: int  # the newest change-log seq in the SQL copy
    created_at: str  # ISO 8601, UTC
    documents: int
    chunks: int
    embedding_space: dict[str, Any] | None  # the serving generation's model, pooling, dim, max_length
    dense_file: str | None  # the serving generation's base file (index/...), None before the first merge
    dense_seq: int | None  # the change-log seq that file holds
    keyword_dir: str | None  # the keyword index's folder (keyword/...), None when none was built
    keyword_seq: int | None  # the seq it had applied
    files: dict[str, dict[str, Any]] = field(default_factory=dict)  # relative path -> sha256, bytes
    # Every other collection's own manifest (its files under collections/<name>/), by name.
    collections: dict[str, dict[str, Any]] = field(default_factory=dict)
    format: int = FORMAT

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return asdict(self)

    def write(self, folder: Path) -> None:
        """Checksum every file under `folder` and write the manifest beside them."""
        self.files = {
            path.relative_to(folder).as_posix(): {"sha256": sha256(path), "bytes": path.stat().st_size}
            for path in sorted(folder.rglob("*"))
            if path.is_file() and path.name != MANIFEST
        }
        (folder / MANIFEST).write_text(json.dumps(self.as_dict(), indent=2) + "\n", encoding="utf-8")


def sha256(path: Path) -> str:
    """The file's SHA-256, hex."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def read(folder: Path) -> Manifest:
    """The manifest of the snapshot in `folder`, its format and every file's checksum verified."""
    path = folder / MANIFEST
    if not path.is_file():
        raise SnapshotError(f"{folder} is not a semsearch snapshot: it has no {MANIFEST}")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise SnapshotError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        found = raw.get("format") if isinstance(raw, dict) else None
        raise SnapshotError(f"{path}: snapshot format {found!r}; this semsearch reads format {FORMAT}")
    try:
        manifest = Manifest(**raw)
    except TypeError as exc:
        raise SnapshotError(f"{path} is not a valid manifest: {exc}") from exc
    _verify(folder, manifest)
    return manifest


def _verify(folder: Path, manifest: Manifest) -> None:
    """Every file the manifest names is there with its checksum, and there is no other."""
    present = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST}
    if missing := sorted(set(manifest.files) - present):
        raise SnapshotError(f"the snapshot {folder} is incomplete: {', '.join(missing[:5])} missing")
    if extra := sorted(present - set(manifest.files)):
        raise SnapshotError(f"the snapshot {folder} holds files its manifest does not name: {', '.join(extra[:5])}")
    for name, entry in manifest.files.items():
        if sha256(folder / name) != entry.get("sha256"):
            raise SnapshotError(f"the snapshot {folder} is damaged: {name} does not match its checksum")
