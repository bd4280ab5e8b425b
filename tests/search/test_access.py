"""The rules of a new API key (search.access.KeySpec), which the API and the CLI both apply."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from search.access import KeySpec, Role, parse_expiry


def test_each_role_may_do_what_the_roles_below_it_may() -> None:
    assert [r.value for r in Role] == ["read", "write", "admin"]
    assert Role.ADMIN.allows(Role.WRITE) and Role.WRITE.allows(Role.READ) and Role.READ.allows(Role.READ)
    assert not Role.READ.allows(Role.WRITE) and not Role.WRITE.allows(Role.ADMIN)


def test_a_valid_spec() -> None:
    spec = KeySpec.model_validate({"role": "write", "collections": ["default", "a-b_9", "default"], "name": "ci"})
    assert spec.role is Role.WRITE and spec.collections == ["default", "a-b_9"]  # repeats dropped
    assert KeySpec(role=Role.READ).collections is None  # every collection


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        ({"role": "owner"}, "'read', 'write' or 'admin'"),
        ({"role": "read", "collections": []}, "at least one collection"),
        ({"role": "read", "collections": ["Upper"]}, "collections[0]: 'Upper' is not a collection name"),
        ({"role": "read", "collections": ["ok", "-dash"]}, "collections[1]"),
        ({"role": "read", "collections": ["x" * 64]}, "is not a collection name"),
        ({"role": "read", "expires_at": "2001-01-01T00:00:00Z"}, "has passed"),
        ({"role": "read", "expires_at": "soon"}, "neither an ISO 8601 time nor a duration"),
        ({"role": "read", "name": "a\nb"}, "control character"),
        ({"role": "read", "name": "x" * 201}, "at most 200 characters"),
        ({"role": "read", "secret": "mine"}, "Extra inputs are not permitted"),
    ],
)
def test_a_refused_spec_says_why(raw: dict[str, object], says: str) -> None:
    with pytest.raises(ValidationError) as caught:
        KeySpec.model_validate(raw)
    assert says in str(caught.value)


def test_expiry_as_a_time_or_a_duration() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_expiry("30d", now) == now + timedelta(days=30)
    assert parse_expiry("90m", now) == now + timedelta(minutes=90)
    assert parse_expiry("2w", now) == now + timedelta(weeks=2)
    assert parse_expiry("2030-05-01T12:00:00", now) == datetime(2030, 5, 1, 12, tzinfo=UTC)  # no zone: UTC
    assert parse_expiry("2030-05-01T12:00:00+02:00", now) == datetime(2030, 5, 1, 10, tzinfo=UTC)
    assert parse_expiry(None, now) is None
    spec = KeySpec.model_validate({"role": "read", "expires_at": "12h"})
    assert spec.expires_at is not None and spec.expires_at > datetime.now(UTC) + timedelta(hours=11)
