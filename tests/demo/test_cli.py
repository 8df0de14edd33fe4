"""``patron demo`` from the command line, in its own module: the other modules' builds
are gone by the time it runs, so it starts from empty tables."""

from __future__ import annotations

from sqlalchemy import func, select
from typer.testing import CliRunner

from patron.auth.models import User
from patron.cli import app
from patron.core.db import Database
from patron.members.models import Member


def test_cli_builds_once_then_reports_existing_data(db: Database, database_url: str) -> None:
    args = ["demo", "--members", "40", "--years", "0.2", "--seed", "3",
            "--end-date", "2026-11-23", "--database-url", database_url]
    runner = CliRunner()
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "patron-demo" in first.output and "owner" in first.output
    for figure in ("tier 注册会员", "points outstanding", "stored value", "coupons",
                   "complaints", "survey responses"):
        assert figure in first.output
    again = runner.invoke(app, args)
    assert again.exit_code == 0, again.output
    assert "already there" in again.output
    rebuilt = runner.invoke(app, [*args, "--reset"])
    assert rebuilt.exit_code == 0, rebuilt.output
    with db.read() as s:
        assert s.scalar(select(func.count()).select_from(Member)) == 40
        assert s.scalar(select(func.count()).select_from(User)) == 7
