"""patron backup and restore round-trip a live database, and the books still balance."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select, text
from typer.testing import CliRunner

from patron.cli import app as cli
from patron.cli.doctor import CHECKS
from patron.core.clock import FixedClock
from patron.core.db import Database
from patron.members.models import Member
from patron.wallet import service as wallet
from tests.factories import World, make_member


@pytest.fixture
def restore_url(database_url: str, tmp_path: Path) -> Iterator[str]:
    """An empty database to restore into, of the same kind as the test database."""
    if not database_url.startswith("postgresql"):
        yield f"sqlite:///{tmp_path / 'restored.db'}"
        return
    name = f"patron_restore_{uuid.uuid4().hex[:8]}"
    server = database_url.rsplit("/", 1)[0]
    admin = create_engine(server.replace("postgresql://", "postgresql+psycopg://") + "/postgres",
                          isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield f"{server}/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_backup_and_restore_round_trip(db: Database, clock: FixedClock, world: World,
                                       database_url: str, restore_url: str,
                                       tmp_path: Path) -> None:
    with db.write() as s:
        member = make_member(s, clock, world.store_a)
        wallet.top_up(s, clock=clock, actor=None, member_id=member.id, amount_minor=50_000)
        member_id = member.id
    runner = CliRunner()
    target = tmp_path / "patron.backup"
    made = runner.invoke(cli, ["backup", str(target), "--database-url", database_url])
    assert made.exit_code == 0, made.output
    with db.write() as s:  # changes after the backup are not in it
        make_member(s, clock, world.store_a)
    restored = runner.invoke(cli, ["restore", str(target), "--database-url", restore_url,
                                   "--yes"])
    assert restored.exit_code == 0, restored.output
    copy = Database.from_url(restore_url)
    try:
        with copy.read() as s:
            assert s.scalar(select(func.count()).select_from(Member)) == 1
            assert wallet.balance(s, member_id=member_id).total_minor >= 50_000
            for _, check in CHECKS:
                assert check(s) == []
    finally:
        copy.dispose()
    doctor = runner.invoke(cli, ["doctor", "--database-url", restore_url])
    assert doctor.exit_code == 0, doctor.output


def test_restore_refuses_a_file_that_is_not_a_backup(tmp_path: Path, database_url: str,
                                                     restore_url: str) -> None:
    junk = tmp_path / "notes.txt"
    junk.write_text("not a backup")
    result = CliRunner().invoke(cli, ["restore", str(junk), "--database-url", restore_url,
                                      "--yes"])
    assert result.exit_code == 2 and "not a" in result.output
