"""Crash safety: `patron serve` and `patron worker` run as real processes while 8 tills
send a mix of value-moving calls (sales, points redemptions, refunds, top-ups, points
transfers) with Idempotency-Keys; server and worker are SIGKILLed at random moments five
times and restarted, and every call that got no answer is sent again with its key.

Then, exactly:
* every call a till was told succeeded is in the books once, and nothing else is (the
  sales, refunds, transfers and top-ups in the database are those of the answers; each
  redemption has one ledger entry);
* `patron doctor` finds nothing wrong;
* every message the calls made due reached the loopback SMTP server: the Message-IDs that
  arrived are exactly those the outbox booked as sent, one message per occasion. Delivery
  is at least once by design (see messaging.service): a worker killed between the SMTP
  server's "250" and its booking sends that message again with the same Message-ID, so
  physical re-sends are allowed up to one per worker kill and no more;
* on SQLite (one server process) `PRAGMA integrity_check` says ok after every restart.

The kill schedule and the tills' calls come from one seed (PATRON_TRUST_SEED, printed):
rerun with it to replay the same schedule.
"""

from __future__ import annotations

import os
import random
import sqlite3
import time
from collections import Counter
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from patron.core.db import Database
from patron.core.events import OutboxEvent
from patron.messaging.models import Message
from tests.support.worker import SmtpServer, free_port
from tests.trust.processes import Fleet, patron_env
from tests.trust.shop import open_shop
from tests.trust.tills import Till, check_books, finish_tills, start_tills, wait_for_progress

TILLS = 8
KILLS = 5
GIVE_UP_S = 240.0  # retrying after the last kill (a dead server's claims lease 5 s)


def _integrity(database_url: str) -> str:
    path = make_url(database_url).database
    assert path
    with sqlite3.connect(path) as conn:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])


def _settled(db: Database) -> bool:
    """The outbox is drained: every event handled, no message waiting to be sent."""
    with db.read() as s:
        events = s.scalar(select(func.count()).select_from(OutboxEvent)
                          .where(OutboxEvent.processed_at.is_(None))) or 0
        waiting = s.scalar(select(func.count()).select_from(Message)
                           .where(Message.status.in_(("queued", "sending")))) or 0
    return events == 0 and waiting == 0


def test_kills_of_server_and_worker_lose_no_acknowledged_call_and_no_message(
        database_url: str, db: Database, tmp_path: Path) -> None:
    seed = int(os.environ.get("PATRON_TRUST_SEED", "20261124"))
    print(f"PATRON_TRUST_SEED={seed}")
    rng = random.Random(seed)
    postgres = db.engine.dialect.name == "postgresql"
    shop = open_shop(db, members=2 * TILLS, email=True)
    port = free_port()
    with SmtpServer() as smtp:
        fleet = Fleet(patron_env(database_url, tmp_path, smtp_port=smtp.port), tmp_path,
                      shop.key)
        try:
            server = fleet.serve(port, workers=2 if postgres else 1)
            worker = fleet.worker()
            base = f"http://127.0.0.1:{port}"
            tills = [Till(f"till{n}", base, shop.key, shop.members[2 * n:2 * n + 2],
                          random.Random(rng.random()), shop.sku) for n in range(TILLS)]
            threads = start_tills(tills)
            checks = []
            for _ in range(KILLS):
                # a random moment: after a random amount of work, a random fraction of a
                # second into the calls then in flight
                wait_for_progress(tills, rng.randint(6, 16), timeout_s=90)
                time.sleep(rng.uniform(0.0, 0.3))
                server.kill()
                time.sleep(rng.uniform(0.0, 0.3))
                worker.kill()
                worker = fleet.worker()
                server = fleet.serve(port, workers=2 if postgres else 1)
                if not postgres:
                    checks.append(_integrity(database_url))
            wait_for_progress(tills, 8, timeout_s=90)
            finish_tills(tills, threads, timeout_s=GIVE_UP_S)
            deadline = time.monotonic() + 90
            while not _settled(db) and time.monotonic() < deadline:
                time.sleep(0.2)
        finally:
            fleet.close()
        doctor = fleet.doctor()  # with the servers gone: the books at rest
        received = [str(m["Message-ID"]) for m in smtp.inbox.messages]

    assert checks == (["ok"] * KILLS if not postgres else [])
    for till in tills:
        assert till.errors == [], till.errors
    with db.read() as s:
        counts = check_books(s, tills)
        rows = list(s.execute(select(Message.dedupe_key, Message.status, Message.provider_id)
                              .where(Message.channel == "email")))
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert rows, "no message was due: the run proved nothing about delivery"
    assert {status for _, status, _ in rows} == {"sent"}, Counter(st for _, st, _ in rows)
    assert len({key for key, _, _ in rows}) == len(rows)  # one message per occasion
    assert set(received) == {pid for _, _, pid in rows}  # each arrived, nothing else did
    resent = len(received) - len(set(received))
    assert resent <= KILLS, f"{resent} re-sends for {KILLS} worker kills"
    print({"seed": seed, **counts, "messages": len(rows), "resent": resent})
