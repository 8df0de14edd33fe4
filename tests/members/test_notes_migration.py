"""Migration 0019 moves the notes lines of "Preferences and notes" into ``member_notes`` and
back again on downgrade, on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from patron.auth import service as auth
from patron.auth.enums import Role
from patron.core import migrate
from patron.core.clock import FixedClock
from patron.core.db import Database
from patron.members import notes
from patron.members.models import Member, MemberNote
from tests.factories import make_member, make_store, make_user
from tests.support.pgdb import blank_database, downgrade

AT = datetime(2026, 3, 5, 2, 30, tzinfo=UTC)  # 10:30 in Shanghai


@pytest.fixture(params=["sqlite", "postgresql"])
def blank_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with blank_database(request.param, tmp_path) as url:
        yield url


def test_notes_move_out_of_preferences_and_back(blank_url: str) -> None:
    database = Database.from_url(blank_url)
    try:
        migrate.upgrade(database.engine)
        clock = FixedClock(AT)
        with database.write() as s:
            store = make_store(s, clock, code="A", name="Store A")
            cashier = make_user(s, clock, Role.CASHIER, [store], username="wang")
            member = make_member(s, clock, store, preferences=(
                "likes oolong\n✎ 2025-12-31 ghost: asked for a refund"))
            notes.add_note(s, clock=clock, principal=auth.principal_for_user(cashier),
                           member_id=member.id, body="oat milk\nno sugar")
            member_id, cashier_id = member.id, cashier.id

        downgrade(database.engine, "0018")
        with database.engine.connect() as conn:
            text = conn.scalar(select(Member.__table__.c.preferences)
                               .where(Member.__table__.c.id == member_id))
        assert text == ("likes oolong\n✎ 2025-12-31 ghost: asked for a refund\n"
                        "✎ 2026-03-05 wang: oat milk / no sugar")

        migrate.upgrade(database.engine, "0019")
        with database.engine.connect() as conn:
            moved = conn.execute(select(
                MemberNote.__table__.c.author_id, MemberNote.__table__.c.author_name,
                MemberNote.__table__.c.body, MemberNote.__table__.c.created_at)
                .where(MemberNote.__table__.c.member_id == member_id)
                .order_by(MemberNote.__table__.c.created_at)).all()
            text = conn.scalar(select(Member.__table__.c.preferences)
                               .where(Member.__table__.c.id == member_id))
        assert text == "likes oolong"
        noon = datetime(2026, 3, 5, 12, tzinfo=UTC)
        assert [tuple(r) for r in moved] == [
            (None, "ghost", "asked for a refund", noon - timedelta(days=64)),
            (cashier_id, "wang", "oat milk / no sugar", noon)]
    finally:
        database.dispose()
