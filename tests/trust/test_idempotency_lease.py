"""The Idempotency-Key lease is the deployment's setting, and it fences a presumed-dead
attempt: until the lease runs out a retry is told "in progress"; after it, the retry takes
the key over and its answer is the one stored, and the first attempt -- should it still
finish -- commits nothing.

The crash-safety run sets a short lease (tests/trust/processes.py) so retries of calls whose
server was killed are answered within seconds instead of a minute; these tests pin down
that a short lease is honoured exactly and still moves nothing twice. Time comes from a
FixedClock, so nothing here sleeps. The lease exists only where claim and work are two
transactions (PostgreSQL); serialised SQLite commits them together.
"""

from __future__ import annotations

import os
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from patron.api.app import create_app
from patron.core import idempotency
from patron.core.clock import FixedClock
from patron.core.db import Database
from patron.core.errors import Conflict
from patron.core.settings import Settings
from tests import factories
from tests.conftest import TEST_NOW

pytestmark = pytest.mark.skipif(
    not os.environ.get("PATRON_TEST_DATABASE_URL"),
    reason="a lease exists only where claim and work are two transactions (PostgreSQL)")

FP = idempotency.fingerprint("POST", "/api/v1/test", b"{}")


def _marker(session: Session, key: str) -> None:
    """Some work that shows whether an attempt's transaction committed: another key row."""
    session.add(idempotency.IdempotencyKey(
        scope="marker", key=key, fingerprint=FP, state="done", owner="-",
        lease_until=TEST_NOW, created_at=TEST_NOW))


def test_a_retry_takes_over_only_after_the_lease_and_the_first_attempt_commits_nothing(
        db: Database) -> None:
    clock = FixedClock(TEST_NOW)
    lease = timedelta(seconds=5)

    def retry(session: Session) -> tuple[int, bytes]:
        _marker(session, "retry")
        return 201, b"retry"

    def first(session: Session) -> tuple[int, bytes]:
        _marker(session, "first")
        clock.advance(lease - timedelta(seconds=1))  # still leased: the retry must wait
        with pytest.raises(Conflict) as busy:
            idempotency.run(db, clock=clock, scope="s", key="k", fingerprint_=FP,
                            work=retry, lease=lease)
        assert busy.value.code == "idempotency_in_progress"
        clock.advance(timedelta(seconds=2))  # past the lease: the first is presumed dead
        taken = idempotency.run(db, clock=clock, scope="s", key="k", fingerprint_=FP,
                                work=retry, lease=lease)
        assert taken == idempotency.StoredResponse(201, b"retry", replayed=False)
        return 201, b"first"

    with pytest.raises(Conflict) as fenced:
        idempotency.run(db, clock=clock, scope="s", key="k", fingerprint_=FP, work=first,
                        lease=lease)
    assert "taken over" in str(fenced.value)

    def never(session: Session) -> tuple[int, bytes]:
        raise AssertionError("a finished key ran its work again")

    replay = idempotency.run(db, clock=clock, scope="s", key="k", fingerprint_=FP,
                             work=never, lease=lease)
    assert replay == idempotency.StoredResponse(201, b"retry", replayed=True)
    with db.read() as s:
        assert idempotency.lookup(s, "marker", "retry") is not None
        assert idempotency.lookup(s, "marker", "first") is None  # rolled back: fenced off


@pytest.mark.parametrize("seconds", [None, 5])
def test_the_api_claims_keys_for_the_lease_the_settings_name(
        db: Database, database_url: str, seconds: int | None) -> None:
    """``PATRON_IDEMPOTENCY_LEASE_SECONDS`` (default 60) reaches the API: a call's claim
    leases its key for that long (the row keeps the lease it was claimed with)."""
    clock = FixedClock(TEST_NOW)
    world = factories.make_world(db, clock)
    lease = {} if seconds is None else {"idempotency_lease_seconds": seconds}
    settings = Settings(environment="test", database_url=database_url, default_region="CN",
                        default_language="en", **lease)
    with TestClient(create_app(settings, db=db, clock=clock)) as client:
        member = client.post("/api/v1/members", headers=factories.key_headers(world.key_a),
                             json={"name": "Lease", "phone": "13912345678"})
        assert member.status_code == 201, member.text
        done = client.post(f"/api/v1/members/{member.json()['id']}/wallet/top-ups",
                           json={"amount_minor": 1000},
                           headers=factories.key_headers(world.key_a)
                           | {"Idempotency-Key": "lease-1"})
        assert done.status_code == 201, done.text
    with db.read() as s:
        row = s.scalar(select(idempotency.IdempotencyKey).where(
            idempotency.IdempotencyKey.key == "lease-1"))
        assert row is not None and row.state == "done"
        assert row.lease_until - row.created_at == timedelta(seconds=seconds or 60)
