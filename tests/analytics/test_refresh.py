"""``refresh``: repeatable dated snapshots, pruning, failures recorded, the CLI around it."""

from __future__ import annotations

import json
from datetime import date, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from patron.analytics import scores, service
from patron.analytics.tables import AnalyticsRun, CategoryCycle, MemberScore
from patron.cli import app
from patron.core.clock import FixedClock
from patron.core.db import Database
from patron.core.errors import Conflict
from tests.analytics.history import History, at

TZ = "Asia/Shanghai"
DAY = date(2026, 11, 20)
runner = CliRunner()


def seed(db: Database, buyers: int = 24) -> None:
    """``buyers`` members with different rhythms and a coffee habit, a survey, a coupon."""
    with db.engine.begin() as conn:
        h = History(conn)
        shop = h.store("SH")
        coffee = h.product("coffee", 1500)
        for i in range(buyers):
            joined = DAY - timedelta(days=400 - 7 * i)
            member = h.member(shop, at(joined.isoformat(), 2))
            gap = 5 + 3 * (i % 7)
            stop = 400 - 7 * i - (i % 5) * 40  # some stop buying long before the end
            for k in range(0, max(stop, 1), gap):
                when = joined + timedelta(days=k)
                if when <= DAY:
                    h.sale(member, shop, at(when.isoformat(), 3 + i % 6),
                           [(coffee, 1 + i % 2, 1500)])
            if i % 4 == 0:
                h.survey(member, shop, at((DAY - timedelta(days=30)).isoformat()),
                         csat=5 if i % 8 == 0 else 2)
            if i % 3 == 0:
                h.coupon(member, shop, at("2026-11-01"), at("2026-12-31"))
        h.member(shop, at("2026-11-15"))  # joined, never bought


def _rows(db: Database, model: type[MemberScore] | type[CategoryCycle],
          day: date) -> list[tuple[Any, ...]]:
    with db.read() as s:
        table = model.__table__
        return sorted(tuple(r) for r in s.execute(select(table).where(table.c.as_of == day)))


def test_refreshing_the_same_day_twice_gives_the_same_rows(db: Database,
                                                           clock: FixedClock) -> None:
    seed(db)
    first = service.refresh(db, clock, timezone=TZ, as_of=DAY)
    scores_once, cycles_once = _rows(db, MemberScore, DAY), _rows(db, CategoryCycle, DAY)
    second = service.refresh(db, clock, timezone=TZ, as_of=DAY)
    assert _rows(db, MemberScore, DAY) == scores_once
    assert _rows(db, CategoryCycle, DAY) == cycles_once
    assert len(scores_once) == first.members == 25 and first.category_cycles == len(cycles_once)
    assert first.params["r"] == second.params["r"]
    # the run records the seconds of its parts (scores, portraits, dashboard aggregates)
    assert set(first.params["parts"]) == {"scores", "portraits", "dashboard"}
    with db.read() as s:
        runs = {r.id: r.status for r in s.scalars(select(AnalyticsRun))}
        assert runs == {first.run_id: "superseded", second.run_id: "succeeded"}
        latest = service.latest_run(s)
        assert latest is not None and latest.id == second.run_id
        assert set(latest.stages) == set(service.STAGES)
        assert {"r", "alpha", "a", "b", "p", "q", "v", "loglik", "customers"} <= set(
            latest.params)
        assert latest.members == 25 and latest.finished_at is not None


def test_snapshots_beyond_keep_are_deleted(db: Database, clock: FixedClock,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(service, "CHUNK_ROWS", 4)  # several write and delete transactions
    seed(db)
    days = [DAY - timedelta(days=2), DAY - timedelta(days=1), DAY]
    pruned = [service.refresh(db, clock, timezone=TZ, as_of=d, keep=2).pruned for d in days]
    assert pruned == [[], [], [days[0]]]
    with db.read() as s:
        present = set(s.scalars(select(MemberScore.as_of).distinct()))
        assert present == set(days[1:])
        assert set(s.scalars(select(CategoryCycle.as_of).distinct())) == set(days[1:])
        assert service.latest_as_of(s) == DAY
        counts = service.segment_counts(s)
        assert counts is not None and counts.members == 25
        assert sum(g.members for g in counts.stages) == 25
        assert any(g.name is None and g.members == 1 for g in counts.segments)  # no purchase


def test_a_failed_refresh_is_recorded_and_the_last_snapshot_stays_visible(
        db: Database, clock: FixedClock, monkeypatch: pytest.MonkeyPatch) -> None:
    seed(db)
    good = service.refresh(db, clock, timezone=TZ, as_of=DAY - timedelta(days=1))

    def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(scores, "score", broken)
    with pytest.raises(RuntimeError, match="disk on fire"):
        service.refresh(db, clock, timezone=TZ, as_of=DAY)
    with db.read() as s:
        run = service.latest_run(s)
        assert run is not None and run.status == "failed"
        assert run.params["failed_stage"] == "score" and "disk on fire" in run.error
        assert set(run.stages) == {"load", "summarise", "fit"}
        assert service.latest_as_of(s) == good.as_of
        member_id = s.scalars(select(MemberScore.member_id)).first()
        assert member_id is not None
        row = service.latest_scores(s, member_id=member_id)
        assert row is not None and row.as_of == good.as_of


def test_a_refresh_of_a_day_already_running_is_refused(db: Database,
                                                       clock: FixedClock) -> None:
    with db.write() as s:
        s.add(AnalyticsRun(as_of=DAY, started_at=clock.now(), status="running"))
    with pytest.raises(Conflict, match="already running"):
        service.refresh(db, clock, timezone=TZ, as_of=DAY)


def test_nightly_scores_the_day_before_the_schedule_fired(db: Database,
                                                         clock: FixedClock) -> None:
    seed(db, buyers=12)
    counts = service.nightly(db, clock, timezone=TZ, day=DAY + timedelta(days=1))
    assert counts["members"] == 13 and counts["pruned"] == 0
    with db.read() as s:
        assert service.latest_as_of(s) == DAY
        found = service.scores_for(s, member_ids=list(s.scalars(select(MemberScore.member_id))))
        assert len(found) == 13 and all(r.as_of == DAY for r in found.values())


def test_a_history_without_repeat_purchases_still_gets_scores(db: Database,
                                                              clock: FixedClock) -> None:
    """Nobody came back: the models cannot be fitted, RFM and lifecycle still work."""
    with db.engine.begin() as conn:
        h = History(conn)
        shop = h.store("SH")
        for i in range(3):
            h.sale(h.member(shop, at("2026-01-01")), shop, at(f"2026-0{i + 1}-02"), total=900)
    result = service.refresh(db, clock, timezone=TZ, as_of=DAY)
    assert "repeat purchase" in result.params["error"]
    with db.read() as s:
        rows = list(s.scalars(select(MemberScore)))
        assert {r.lifecycle_stage for r in rows} == {"lapsed"}
        assert all(r.p_alive is None and r.rfm_segment is not None for r in rows)


def test_cli_refresh_prints_stage_timings_and_json(db: Database, database_url: str) -> None:
    seed(db, buyers=12)
    result = runner.invoke(app, ["analytics", "refresh", "--database-url", database_url,
                                 "--as-of", DAY.isoformat()], terminal_width=160)
    assert result.exit_code == 0, result.output
    for word in ("load", "summarise", "fit", "score", "write", "total", "Segments"):
        assert word in result.output
    result = runner.invoke(app, ["analytics", "refresh", "--database-url", database_url,
                                 "--as-of", DAY.isoformat(), "--json", "--months", "6"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["as_of"] == DAY.isoformat() and out["members"] == 13
    assert set(out["stages"]) == set(service.STAGES) and out["params"]["clv_months"] == 6


def test_cli_refresh_refuses_a_bad_day(database_url: str) -> None:
    result = runner.invoke(app, ["analytics", "refresh", "--database-url", database_url,
                                 "--as-of", "22/11/2026"], terminal_width=200)
    assert result.exit_code == 2 and "--as-of" in result.output


def test_cli_fit_without_data_fits_the_database(db: Database, database_url: str) -> None:
    seed(db)
    result = runner.invoke(app, ["analytics", "fit", "--database-url", database_url,
                                 "--calibration-end", DAY.isoformat(), "--unit", "days",
                                 "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["customers"] == 24 and out["bgnbd"]["alpha"] > 0
    weeks = runner.invoke(app, ["analytics", "fit", "--database-url", database_url,
                                "--calibration-end", DAY.isoformat(), "--json"])
    alpha_weeks = json.loads(weeks.stdout)["bgnbd"]["alpha"]
    assert out["bgnbd"]["alpha"] == pytest.approx(7 * alpha_weeks, rel=1e-3)
