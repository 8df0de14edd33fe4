"""Conservation of points under fire (PostgreSQL): a fixed total of points is spread over
20 members; 15 tills earn (sales), redeem (sales paying with points), transfer between
members and reverse (refunds: earned points clawed back, redeemed points returned) over
the API of `patron serve --workers 2`, and a 16th client runs the daily expiry
(``loyalty.run_daily``) through the service -- part of the seeded lots are set up to
expire during the run, and transfers carry that expiry on to other members. Every 5 s
every connection to the database is killed (``pg_terminate_backend``); the tills resend
what got no answer with its Idempotency-Key.

The conserved quantity, checked on every snapshot read while the clients run (each read
one REPEATABLE READ transaction, so it sees one consistent state):

    Σ over accounts (available + pending - debt)
        == T0 + entered - left

where T0 is that sum when the run starts (no debt then), and over the ledger entries
written since: ``entered`` is the net points of kinds earn, debt_settle and redeem_return
(points created by sales, or given back by refunds), ``left`` minus the net points of kinds
redeem, clawback, debt and expire (points spent, taken back or expired). ``release``
moves points from pending to available (net 0); transfers are in neither: their
``transfer_out`` entries must sum to minus the transferred points and their ``transfer_in``
entries to plus, so a transfer that lost or made points breaks the equation. A snapshot
must also show no balance below zero, each account's cached balances equal to its
ledger's sums and to its lots, and no entry of a kind the equation does not know.

Set PATRON_CONSERVATION_SECONDS for a shorter or longer run (default 120);
PATRON_TRUST_SEED replays a run's choices (printed).
"""

from __future__ import annotations

import os
import random
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Connection, create_engine, select, text
from sqlalchemy.pool import NullPool

from patron.core.clock import SystemClock
from patron.core.db import Database, normalise_url
from patron.loyalty import service as loyalty
from patron.loyalty.models import PointsAccount, PointsLot
from tests.support.worker import free_port
from tests.trust.processes import Fleet, patron_env
from tests.trust.shop import open_shop
from tests.trust.tills import Till, check_books, finish_tills, start_tills

MEMBERS = 20
TILLS = 15  # plus the daily-expiry client: 16
KILL_EVERY_S = 5.0
ENTERED = {"earn", "debt_settle", "redeem_return"}
LEFT = {"redeem", "clawback", "debt", "expire"}
NEUTRAL = {"release", "transfer_out", "transfer_in"}


@dataclass
class Watch:
    """What the background clients saw."""

    t0: int
    seq0: int
    snapshots: int = 0
    interrupted: int = 0
    killed_backends: int = 0
    kill_rounds: int = 0
    expired: int = 0
    daily_runs: int = 0
    violations: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)


def check_snapshot(conn: Connection, watch: Watch) -> list[str]:
    """The invariants of the module docstring on one REPEATABLE READ snapshot."""
    problems: list[str] = []
    accounts = conn.execute(text(
        "SELECT id, available, pending, debt FROM points_accounts")).all()
    ledger = {row[0]: tuple(int(v) for v in row[1:]) for row in conn.execute(text(
        "SELECT account_id, sum(available_delta), sum(pending_delta), sum(debt_delta) "
        "FROM points_entries GROUP BY account_id"))}
    lots = {row[0]: (int(row[1]), int(row[2])) for row in conn.execute(text(
        "SELECT account_id, coalesce(sum(remaining) FILTER (WHERE NOT is_pending), 0), "
        "coalesce(sum(remaining) FILTER (WHERE is_pending), 0) FROM points_lots "
        "GROUP BY account_id"))}
    by_kind = {row[0]: int(row[1]) for row in conn.execute(text(
        "SELECT kind, sum(available_delta + pending_delta - debt_delta) FROM points_entries "
        "WHERE seq > :seq0 GROUP BY kind"), {"seq0": watch.seq0})}
    moved = int(conn.execute(text(
        "SELECT coalesce(sum(points), 0) FROM points_transfers")).scalar_one())
    total = 0
    for account_id, available, pending, debt in accounts:
        if min(available, pending, debt) < 0:
            problems.append(f"negative balance on {account_id}: {available}/{pending}/{debt}")
        if ledger.get(account_id, (0, 0, 0)) != (available, pending, debt):
            problems.append(f"{account_id}: balances {available}/{pending}/{debt}, ledger "
                            f"{ledger.get(account_id)}")
        if lots.get(account_id, (0, 0)) != (available, pending):
            problems.append(f"{account_id}: balances {available}/{pending}, lots "
                            f"{lots.get(account_id)}")
        total += available + pending - debt
    unknown = set(by_kind) - ENTERED - LEFT - NEUTRAL
    if unknown:
        problems.append(f"entries of kinds the equation does not know: {unknown}")
    entered = sum(v for k, v in by_kind.items() if k in ENTERED)
    left = -sum(v for k, v in by_kind.items() if k in LEFT)
    if total != watch.t0 + entered - left:
        problems.append(f"sum of balances {total} != T0 {watch.t0} + entered {entered} - "
                        f"left {left}")
    if by_kind.get("release", 0) != 0:
        problems.append(f"releases moved {by_kind['release']} net points")
    if (-by_kind.get("transfer_out", 0), by_kind.get("transfer_in", 0)) != (moved, moved):
        problems.append(f"transfers: out {by_kind.get('transfer_out')}, in "
                        f"{by_kind.get('transfer_in')}, transferred {moved}")
    return problems


def _snapshots(url: str, watch: Watch) -> None:
    engine = create_engine(url, poolclass=NullPool)
    while not watch.stop.is_set():
        try:
            with engine.connect() as raw:
                conn = raw.execution_options(isolation_level="REPEATABLE READ")
                with conn.begin():
                    found = check_snapshot(conn, watch)
            watch.snapshots += 1
            watch.violations += found
        except Exception:  # a killed connection: read again
            watch.interrupted += 1
        time.sleep(0.1)
    engine.dispose()


def _killer(url: str, watch: Watch) -> None:
    engine = create_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    while not watch.stop.wait(KILL_EVERY_S):
        try:
            with engine.connect() as conn:
                killed = conn.execute(text(
                    "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) "
                    "FROM pg_stat_activity WHERE datname = current_database() "
                    "AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
                )).scalar_one()
            watch.killed_backends += int(killed)
            watch.kill_rounds += 1
        except Exception:  # try again at the next round
            pass
    engine.dispose()


def _expiry(db: Database, watch: Watch, rng: random.Random) -> None:
    """The 16th client: the daily job's expiry, through the service, on real time."""
    clock = SystemClock()
    while not watch.stop.wait(rng.uniform(0.5, 1.5)):
        try:
            with db.write() as s:
                counts = loyalty.run_daily(s, clock=clock)
            watch.expired += counts["expired_points"]
            watch.daily_runs += 1
        except Exception:  # a killed connection: the next run retries
            pass


def test_points_are_conserved_while_connections_are_killed(
        database_url: str, db: Database, tmp_path: Path) -> None:
    if db.engine.dialect.name != "postgresql":
        pytest.skip("pg_terminate_backend is PostgreSQL's: set PATRON_TEST_DATABASE_URL")
    seconds = float(os.environ.get("PATRON_CONSERVATION_SECONDS", "120"))
    seed = int(os.environ.get("PATRON_TRUST_SEED", "20261124"))
    print(f"PATRON_TRUST_SEED={seed} PATRON_CONSERVATION_SECONDS={seconds}")
    rng = random.Random(seed)
    shop = open_shop(db, members=MEMBERS, email=False)
    clock = SystemClock()
    with db.write() as s:
        for member_id in shop.members:
            loyalty.earn(s, clock=clock, actor=None, member_id=uuid.UUID(member_id),
                         points=rng.randint(200, 800), tz="Asia/Shanghai")
        # about half the seeded points expire while the clients run
        for lot in s.scalars(select(PointsLot).order_by(PointsLot.id)):
            if rng.random() < 0.5:
                lot.expires_at = clock.now() + timedelta(seconds=rng.uniform(3, seconds))
    with db.read() as s:
        t0 = sum(a.available + a.pending - a.debt for a in s.scalars(select(PointsAccount)))
        seq0 = int(s.scalar(text("SELECT coalesce(max(seq), 0) FROM points_entries")) or 0)
    watch = Watch(t0=t0, seq0=seq0)
    url = normalise_url(database_url)
    port = free_port()
    fleet = Fleet(patron_env(database_url, tmp_path), tmp_path, shop.key)
    background: list[threading.Thread] = []
    try:
        fleet.serve(port, workers=2)
        tills = [Till(f"till{n}", f"http://127.0.0.1:{port}", shop.key, shop.members,
                      random.Random(rng.random()), shop.sku,
                      kinds=("sale", "redeem", "redeem", "transfer", "transfer", "refund"))
                 for n in range(TILLS)]
        background = [threading.Thread(target=_snapshots, args=(url, watch), daemon=True),
                      threading.Thread(target=_killer, args=(url, watch), daemon=True),
                      threading.Thread(target=_expiry, args=(db, watch,
                                                             random.Random(rng.random())),
                                       daemon=True)]
        for thread in background:
            thread.start()
        threads = start_tills(tills)
        time.sleep(seconds)
        watch.stop.set()
        for thread in background:
            thread.join(timeout=60)
        finish_tills(tills, threads, timeout_s=240)
    finally:
        watch.stop.set()
        fleet.close()
    doctor = fleet.doctor()  # with the servers gone: the books at rest

    assert watch.violations == [], watch.violations[:10]
    with db.engine.connect() as raw:
        conn = raw.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            assert check_snapshot(conn, watch) == []  # and once more, all settled
    for till in tills:
        assert till.errors == [], till.errors
    with db.read() as s:
        counts = check_books(s, tills)
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    # the run did what it claims: many snapshots, connections killed, every kind of move
    assert watch.snapshots >= 10 and watch.kill_rounds >= max(1, int(seconds // 5) - 2), watch
    assert watch.killed_backends > 0 and watch.expired > 0, watch
    assert min(counts["transfers"], counts["refunds"], counts["sales"]) > 0, counts
    print({"seed": seed, "snapshots": watch.snapshots, "interrupted": watch.interrupted,
           "kill_rounds": watch.kill_rounds, "killed_backends": watch.killed_backends,
           "expired_points": watch.expired, "daily_runs": watch.daily_runs, **counts})
