"""Simultaneous redemptions of one coupon through a real multi-worker HTTP server.

200 bearer coupons; each is hit by 16 redemptions at the same moment (a barrier releases
them together), from the POS keys of two stores, every request with its own
Idempotency-Key. Exactly one per coupon may succeed (201); the other 15 must get 409
``coupon_already_redeemed``. Then the same run with the lock taken away must be caught:
on PostgreSQL the second insert of a redemption hits UNIQUE(coupon_id) and fails with a
500 (the constraint's protection made visible), on SQLite the deferred transactions fail
to upgrade to writers -- or, should both be missing, a coupon is redeemed twice.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from patron.auth import service as auth
from patron.core.clock import FixedClock
from patron.core.db import Database
from patron.offers import service as offers
from patron.offers.models import Coupon, CouponRedemption
from tests.factories import World
from tests.offers.support import make_template

ROOT = Path(__file__).resolve().parents[2]
COUPONS = 200
RACERS = 16
BROKEN_COUPONS = 40
BASKET = {"lines": [{"product_id": str(uuid.uuid4()), "quantity": 1,
                     "unit_price_minor": 5_000}]}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def server(database_url: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """Two uvicorn workers; OFFERS_TEST_LOG_LEVEL=error shows the server's tracebacks (the
    UNIQUE violations of the lock-less run, for instance)."""
    broken = getattr(request, "param", False)
    port = _free_port()
    env = os.environ | {"PATRON_DATABASE_URL": database_url, "PATRON_ENVIRONMENT": "test",
                        "PATRON_TEST_BREAK_LOCK": "1" if broken else "0"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "tests.support.app_factory:create", "--factory",
         "--host", "127.0.0.1", "--port", str(port), "--workers", "2",
         # a worker importing the app on a busy machine outlasts the 5 s default check
         "--timeout-worker-healthcheck", "60",
         "--log-level", os.environ.get("OFFERS_TEST_LOG_LEVEL", "critical")], cwd=ROOT, env=env)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while True:
        try:
            if httpx.get(base + "/api/v1/openapi.json", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            raise RuntimeError("test server did not start")
        time.sleep(0.2)
    yield base
    proc.terminate()
    proc.wait(timeout=30)


def _coupons(db: Database, clock: FixedClock, world: World, count: int) -> list[str]:
    with db.write() as s:
        manager = auth.principal_for_user(world.manager_a)
        template = make_template(s, clock, manager)
        return [c.code for c in offers.issue_coupons(s, clock=clock, actor=None,
                                                     template_id=template.id, count=count)]


def _race(base: str, world: World, codes: list[str]) -> dict[str, list[tuple[int, bytes]]]:
    """Every racer redeems every coupon, all ``RACERS`` of them released together."""
    barrier = threading.Barrier(RACERS)
    results: dict[str, list[tuple[int, bytes]]] = {code: [] for code in codes}
    lock = threading.Lock()

    def racer(n: int) -> None:
        key = world.key_a if n % 2 == 0 else world.key_b  # two stores' tills
        with httpx.Client(base_url=base, timeout=120,
                          headers={"Authorization": f"Bearer {key}"}) as client:
            for code in codes:
                barrier.wait()
                try:
                    r = client.post(f"/api/v1/coupons/{code}/redemptions", json=BASKET,
                                    headers={"Idempotency-Key": f"racer{n}-{code}"})
                    outcome = (r.status_code, r.content)
                except httpx.TransportError as exc:  # a dropped connection is a failure too
                    outcome = (599, repr(exc).encode())
                with lock:
                    results[code].append(outcome)

    with ThreadPoolExecutor(RACERS) as pool:
        list(pool.map(racer, range(RACERS)))
    return results


def _redemptions_per_coupon(db: Database) -> Counter[uuid.UUID]:
    with db.read() as s:
        rows = s.execute(select(CouponRedemption.coupon_id, func.count())
                         .group_by(CouponRedemption.coupon_id))
        return Counter({row[0]: int(row[1]) for row in rows})


def test_sixteen_tills_at_once_redeem_each_coupon_exactly_once(
    db: Database, clock: FixedClock, world: World, server: str
) -> None:
    codes = _coupons(db, clock, world, COUPONS)
    results = _race(server, world, codes)

    statuses = Counter(status for outcomes in results.values() for status, _ in outcomes)
    assert statuses == {201: COUPONS, 409: COUPONS * (RACERS - 1)}, statuses
    for outcomes in results.values():
        assert sorted(s for s, _ in outcomes) == [201] + [409] * (RACERS - 1)
        refused = [body for status, body in outcomes if status == 409]
        assert all(b'"code":"coupon_already_redeemed"' in body for body in refused)
    per_coupon = _redemptions_per_coupon(db)
    assert len(per_coupon) == COUPONS and set(per_coupon.values()) == {1}
    with db.read() as s:
        statuses_in_db = Counter(s.scalars(select(Coupon.status)))
    assert statuses_in_db == {"redeemed": COUPONS}
    with db.read() as s:
        assert offers.verify(s) == []


@pytest.mark.parametrize("server", [True], indirect=True, ids=["lock-taken-away"])
def test_without_the_lock_the_same_race_is_caught(
    db: Database, clock: FixedClock, world: World, server: str
) -> None:
    codes = _coupons(db, clock, world, BROKEN_COUPONS)
    results = _race(server, world, codes)

    server_errors = sum(1 for outcomes in results.values() for s, _ in outcomes if s >= 500)
    double_wins = [c for c, outcomes in results.items()
                   if sum(1 for s, _ in outcomes if s == 201) > 1]
    double_rows = [c for c, n in _redemptions_per_coupon(db).items() if n > 1]
    caught = server_errors > 0 or double_wins or double_rows
    assert caught, "the concurrency test could not tell a missing lock"
