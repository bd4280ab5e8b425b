"""API keys in SQL: created, listed, revoked and verified, each in the caller's session.

A key reads `ss_<id>_<secret>`: the public id finds its row, whose salted scrypt hash of the secret
is compared in constant time. The secret itself is never stored, so a copy of the database holds no
usable key. Revocation and expiry are read from the row at every verification, so every process
sees them as soon as its cache of verified keys (api/server/auth.py, at most 2 s) lets it look again.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from search.access import KeySpec, Role
from search.storage.models import ApiKey, utcnow

PREFIX = "ss"
_ID = re.compile(r"[0-9a-f]{12}")
# scrypt's recommended interactive cost (16 MiB, some tens of milliseconds): the secret is random
# enough that the cost guards the stored hashes only against what an attacker learns later.
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}
_SCRYPT_MEMORY = 64 * 1024 * 1024


@dataclass(frozen=True)
class KeyInfo:
    """A key as listed: everything but its secret."""

    id: str
    name: str
    role: Role
    collections: tuple[str, ...] | None
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None

    def usable(self, now: datetime) -> bool:
        """Neither revoked nor expired at `now`."""
        return self.revoked_at is None and (self.expires_at is None or now < self.expires_at)


def _aware(moment: datetime | None) -> datetime | None:
    # SQLite gives back timestamps without their zone; every timestamp semsearch writes is UTC.
    return moment.replace(tzinfo=UTC) if moment is not None and moment.tzinfo is None else moment


def _info(row: ApiKey) -> KeyInfo:
    created = _aware(row.created_at)
    assert created is not None
    return KeyInfo(
        id=row.id,
        name=row.name,
        role=Role(row.role),
        collections=None if row.collections is None else tuple(row.collections),
        created_at=created,
        expires_at=_aware(row.expires_at),
        revoked_at=_aware(row.revoked_at),
    )


def _hash(secret: str, salt: bytes) -> bytes:
    return hashlib.scrypt(secret.encode(), salt=salt, dklen=32, maxmem=_SCRYPT_MEMORY, **_SCRYPT)


def _encode(salt: bytes, digest: bytes) -> str:
    b64 = base64.b64encode
    return f"scrypt${_SCRYPT['n']}${_SCRYPT['r']}${_SCRYPT['p']}${b64(salt).decode()}${b64(digest).decode()}"


def _matches(secret: str, stored: str) -> bool:
    """Whether `secret` is the one whose hash `stored` holds (with the cost it was made with)."""
    kind, n, r, p, salt, digest = stored.split("$")
    if kind != "scrypt":
        return False
    cost = {"n": int(n), "r": int(r), "p": int(p)}
    found = hashlib.scrypt(secret.encode(), salt=base64.b64decode(salt), dklen=32, maxmem=_SCRYPT_MEMORY, **cost)
    return hmac.compare_digest(found, base64.b64decode(digest))


def key_id(presented: str) -> str | None:
    """The public id inside a presented key, or None when it is not shaped as a semsearch key."""
    parts = presented.split("_", 2)
    if len(parts) != 3 or parts[0] != PREFIX or _ID.fullmatch(parts[1]) is None or not parts[2]:
        return None
    return parts[1]


def create_key(session: Session, spec: KeySpec) -> tuple[KeyInfo, str]:
    """Add a key as `spec` describes; (its listing, the key itself, which nothing can show again)."""
    new_id, secret = secrets.token_hex(6), secrets.token_hex(24)
    salt = secrets.token_bytes(16)
    row = ApiKey(
        id=new_id,
        name=spec.name,
        role=spec.role.value,
        collections=spec.collections,
        secret_hash=_encode(salt, _hash(secret, salt)),
        created_at=utcnow(),
        expires_at=spec.expires_at,
    )
    session.add(row)
    session.flush()
    return _info(row), f"{PREFIX}_{new_id}_{secret}"


def list_keys(session: Session) -> list[KeyInfo]:
    """Every key, revoked and expired ones too, oldest first."""
    return [_info(row) for row in session.scalars(select(ApiKey).order_by(ApiKey.created_at, ApiKey.id))]


def revoke_key(session: Session, key: str) -> KeyInfo | None:
    """Revoke the key with id `key` (a key revoked before keeps its time); None when there is none."""
    row = session.get(ApiKey, key, with_for_update=True) if _ID.fullmatch(key) else None
    if row is None:
        return None
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        session.flush()
    return _info(row)


def any_keys(session: Session) -> bool:
    """Whether a key was ever created here (revoked and expired ones count: revoking the last key
    must not open the server to everyone)."""
    return bool(session.scalar(select(exists().select_from(ApiKey))))


def verify(session: Session, presented: str, now: datetime | None = None) -> KeyInfo | None:
    """The key `presented` is, when it exists, its secret matches and it is neither revoked nor expired."""
    found = key_id(presented)
    row = None if found is None else session.get(ApiKey, found)
    if row is None:
        return None
    info = _info(row)
    if not info.usable(now or datetime.now(UTC)):
        return None
    return info if _matches(presented.split("_", 2)[2], row.secret_hash) else None
