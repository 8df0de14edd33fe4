"""Kill the worker (SIGKILL) in the middle of its batches, restart it, and check that every
due receipt reached the (real, loopback) SMTP server, that no occasion produced a second
message, and that the only physical re-sends are messages whose send a kill interrupted.

Delivery is at least once by design (see messaging.service): a worker killed after the
SMTP server accepted a message but before the worker booked it re-sends that message, with
the same Message-ID, when its lease runs out. So "none twice" is checked as: one message
row and one Message-ID per occasion, and at most one re-send per kill.
"""

from __future__ import annotations

import asyncio
import email
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from sqlalchemy import func, select

from patron.auth import service as auth
from patron.auth.enums import Role
from patron.core.clock import SystemClock
from patron.core.db import Database
from patron.messaging.models import Message
from patron.sales import service as sales
from patron.sales.schemas import LineIn, PaymentsIn, SaleCreate
from patron.wallet.enums import SpendOrder
from tests.factories import make_member, make_product, make_store, make_user
from tests.support.worker import free_port

ROOT = Path(__file__).resolve().parents[2]
SALES = 40
KILLS = 4
TILL = sales.TillConfig(currency="CNY", region="CN", timezone="Asia/Shanghai",
                        spend_order=SpendOrder.PRINCIPAL_FIRST)


class SlowInbox:
    """An SMTP handler that takes a little time per message, so kills land mid-batch."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.to: list[str] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        await asyncio.sleep(0.03)
        parsed = email.message_from_bytes(envelope.content)
        with self.lock:
            self.ids.append(str(parsed["Message-ID"]))
            self.to.append(str(parsed["To"]))
        return "250 OK"


def _worker(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "patron.cli", "worker", "--poll", "0.05"],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def _sent(db: Database) -> int:
    with db.read() as s:
        return int(s.scalar(select(func.count()).select_from(Message)
                            .where(Message.status == "sent")) or 0)


def test_killed_workers_lose_nothing_and_duplicate_no_occasion(
        database_url: str, db: Database, tmp_path: Path) -> None:
    clock = SystemClock()  # the worker processes run on real time too
    with db.write() as s:
        store = make_store(s, clock, code="K")
        cashier = make_user(s, clock, Role.CASHIER, [store], username="crash-cashier")
        make_product(s, sku="CRASH", price_minor=1_990)
        actor = auth.principal_for_user(cashier)
        for n in range(SALES):
            member = make_member(s, clock, store, email=f"m{n}@example.com")
            sales.checkout(s, clock=clock, actor=actor, till=TILL, data=SaleCreate(
                member_id=member.id, lines=[LineIn(sku="CRASH", quantity=1)],
                payments=PaymentsIn(cash_minor=1_990)))
    inbox = SlowInbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    env = os.environ | {
        "PATRON_DATABASE_URL": database_url, "PATRON_ENVIRONMENT": "test",
        "PATRON_EMAIL_PROVIDER": "smtp", "PATRON_SMTP_HOST": "127.0.0.1",
        "PATRON_SMTP_PORT": str(port), "PATRON_SMTP_SECURITY": "none",
        "PATRON_SMTP_FROM_ADDRESS": "shop@example.com", "PATRON_SMS_PROVIDER": "none",
        "PATRON_WEBHOOK_PROVIDER": "none", "PATRON_MESSAGE_LOG_PATH": str(tmp_path / "log"),
        "PATRON_WORKER_LEASE_SECONDS": "2"}
    rng = random.Random(11)
    kills = 0
    try:
        for _ in range(KILLS):
            proc = _worker(env)
            before = len(inbox.ids)
            deadline = time.monotonic() + 60
            # kill once it is sending: a few more messages have arrived since it started
            target = before + rng.randint(2, 6)
            while len(inbox.ids) < target and time.monotonic() < deadline \
                    and proc.poll() is None:
                time.sleep(0.005)
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
            kills += 1
        # restart: two workers at once on PostgreSQL (SKIP LOCKED), one on SQLite
        finals = [_worker(env) for _ in range(2 if "postgresql" in database_url else 1)]
        deadline = time.monotonic() + 120
        while _sent(db) < SALES and time.monotonic() < deadline:
            time.sleep(0.2)
        for proc in finals:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
    finally:
        controller.stop()
    with db.read() as s:
        rows = list(s.execute(select(Message.recipient, Message.status, Message.dedupe_key)))
    assert len(rows) == SALES  # one message per sale, however often the worker died
    assert {status for _, status, _ in rows} == {"sent"}
    assert len({key for _, _, key in rows}) == SALES
    per_id = Counter(inbox.ids)
    assert len(per_id) == SALES  # every receipt arrived, each with its own Message-ID
    assert set(inbox.to) == {f"<m{n}@example.com>" for n in range(SALES)} or \
        {t.split("<")[-1].rstrip(">") for t in inbox.to} == \
        {f"m{n}@example.com" for n in range(SALES)}
    resent = sum(n - 1 for n in per_id.values())
    assert resent <= kills, f"{resent} re-sends for {kills} kills"
