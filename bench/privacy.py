"""Message-log retention purge and the member export as a CSV zip, on a big message log.

Builds (once, cached in ``bench/out/``, or in a throwaway PostgreSQL database with
``--url``) a database with ``--messages`` finished messages, each with one event, half of
them older than the retention, and ``--member-messages`` of them belonging to one member.
Then it measures:

* ``purge``: one nightly run of ``messaging.purge_message_logs`` (batches of 500, at most
  ``PURGE_PER_RUN``), in one transaction as the worker runs it: wall and CPU seconds, rows
  per second, and the slowest batch (how long a batch's UPDATEs take);
* ``export json`` / ``export zip``: the member's export both ways, wall seconds and the
  peak Python memory the export allocated (``tracemalloc``), which shows the zip is
  streamed rather than built whole.

    .venv/bin/python bench/privacy.py
    .venv/bin/python bench/privacy.py --url postgresql://postgres@127.0.0.1:5432/test

The purge is rolled back after it is measured, so the table can be run again.
"""

from __future__ import annotations

import argparse
import os
import time
import tracemalloc
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from rich.console import Console
from rich.table import Table
from sqlalchemy import Select, insert, select

from patron.auth import service as auth
from patron.auth.enums import Role
from patron.auth.models import User
from patron.core import (
    migrate,
    registry,  # noqa: F401 - every table known before the first query
)
from patron.core.clock import FixedClock
from patron.core.db import Database
from patron.members import privacy
from patron.members import service as members
from patron.members.models import Member
from patron.members.schemas import MemberCreate, StoreCreate
from patron.messaging import service as messaging
from patron.messaging.models import Message, MessageEvent

NOW = datetime(2026, 11, 24, 0, 15, tzinfo=UTC)
OUT = Path(__file__).resolve().parent / "out"


def build(db: Database, *, messages: int, member_messages: int) -> uuid.UUID:
    """The rows, written with bulk INSERTs; returns the member with the long history."""
    clock = FixedClock(NOW)
    with db.write() as s:
        store = members.create_store(s, clock=clock, actor=None,
                                     data=StoreCreate(code="B1", name="Bench"))
        owner = auth.create_user(s, clock=clock, actor=None, username="owner",
                                 display_name="Owner", password="bench-password-123",
                                 role=Role.OWNER, store_ids=[])
        member = members.enroll_member(s, clock=clock, actor=None, region="CN", data=(
            MemberCreate(name="王小姐", phone="13911112222", home_store_id=store.id)))
        member_id, _ = member.id, owner.id
    for start in range(0, messages, 10_000):
        rows, events = [], []
        for i in range(start, min(messages, start + 10_000)):
            at = NOW - timedelta(days=1460 * (i + 1) / messages)  # spread over four years
            mid = uuid.uuid4()
            rows.append({
                "id": mid, "dedupe_key": f"bench:{i}", "channel": "sms",
                "purpose": "marketing", "template": "promo", "language": "zh_CN",
                "member_id": member_id if i < member_messages else None,
                "store_id": None, "endpoint_id": None, "campaign_id": None,
                "source_event_id": None, "recipient": "+8613911112222", "subject": "",
                "body": "王小姐，本周会员日双倍积分，回复TD退订", "html": None,
                "payload": {"sms_params": {"name": "王小姐"}}, "segments": 1,
                "status": "delivered", "reason": None, "attempts": 1, "not_before": at,
                "lease_until": None, "provider_id": None, "created_at": at, "updated_at": at,
                "sent_at": at, "delivered_at": at, "purged_at": None})
            events.append({"message_id": mid, "at": at, "status": "delivered",
                           "detail": "delivered to +8613911112222"})
        with db.write() as s:
            s.execute(insert(Message), rows)
            s.execute(insert(MessageEvent), events)
    return member_id


@contextmanager
def database(url: str | None, messages: int, member_messages: int
             ) -> Iterator[tuple[Database, uuid.UUID]]:
    if url is None:
        OUT.mkdir(exist_ok=True)
        path = OUT / f"privacy-{messages}-{member_messages}.db"
        fresh = not path.exists()
        db = Database.from_url(f"sqlite:///{path}")
        if fresh:
            migrate.upgrade(db.engine)
            build(db, messages=messages, member_messages=member_messages)
    else:
        from tests.support.pgdb import throwaway_database

        with throwaway_database(url, prefix="patron_bench") as pg:
            db = Database.from_url(pg)
            migrate.upgrade(db.engine)
            build(db, messages=messages, member_messages=member_messages)
            try:
                with db.read() as s:
                    yield db, s.scalars(members_with_history()).one()
            finally:
                db.dispose()
            return
    try:
        with db.read() as s:
            yield db, s.scalars(members_with_history()).one()
    finally:
        db.dispose()


def members_with_history() -> Select[tuple[uuid.UUID]]:
    return select(Member.id).where(Member.name == "王小姐")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--member-messages", type=int, default=20_000)
    parser.add_argument("--url", default=None, help="a PostgreSQL server URL (throwaway db)")
    args = parser.parse_args()
    table = Table("measure", "rows", "wall s", "cpu s", "rows/s", "note",
                  title=f"privacy on {'PostgreSQL' if args.url else 'SQLite'}, "
                        f"load {os.getloadavg()[0]:.1f}")
    with database(args.url, args.messages, args.member_messages) as (db, member_id):
        clock = FixedClock(NOW)
        batches: list[float] = []
        with db.write() as s:
            messaging.get_policy(s, clock=clock)
        with db.session(write=True) as s:
            last = [time.perf_counter()]

            def tick() -> None:
                now = time.perf_counter()
                batches.append(now - last[0])
                last[0] = now

            wall, cpu = time.perf_counter(), time.process_time()
            counts = messaging.purge_message_logs(s, clock=clock,
                                                  limit=messaging.PURGE_PER_RUN,
                                                  checkpoint=tick)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            s.rollback()
        n = counts["purged"]
        table.add_row("purge, one nightly run", f"{n:,}", f"{wall:.2f}", f"{cpu:.2f}",
                      f"{n / wall:,.0f}", f"{len(batches)} batches, slowest "
                      f"{max(batches) * 1000:.0f} ms")

        with db.read() as s:
            owner = auth.principal_for_user(
                s.scalars(select(User).where(User.username == "owner")).one())
        for kind in ("json", "zip"):
            tracemalloc.start()
            wall, cpu = time.perf_counter(), time.process_time()
            with db.session(write=True) as s:
                if kind == "json":
                    data = privacy.export_member(s, clock=clock, principal=owner,
                                                 member_id=member_id)
                    size = len(str(data))
                    rows = sum(len(r) for r in data["records"].values())
                    del data
                else:
                    plan = privacy.begin_zip_export(s, clock=clock, principal=owner,
                                                    member_id=member_id)
                    size = sum(len(c) for c in privacy.zip_export(s, export=plan,
                                                                   currency="CNY"))
                    rows = sum(plan.tables.values())
                s.rollback()
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            table.add_row(f"export {kind}", f"{rows:,}", f"{wall:.2f}", f"{cpu:.2f}",
                          f"{rows / wall:,.0f}",
                          f"peak {peak / 2**20:.0f} MiB, {size / 2**20:.1f} MB out")
    Console().print(table)


if __name__ == "__main__":
    main()
