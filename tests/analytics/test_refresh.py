"""``refresh``: repeatable dated snapshots, pruning, failures recorded, the CLI around it."""

from __future__ import annotations

import json
import sqlite3
import uuid
from datetime import date, timedelta
from typing import Any

import numpy as np
import psycopg
import pyarrow as pa
import pytest
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from typer.testing import CliRunner

from patron.analytics import scores, service
from patron.analytics.tables import (
    LIFECYCLE_STAGES,
    LOYALTY_TYPES,
    RFM_SEGMENTS,
    SATISFACTION,
    AnalyticsRun,
    CategoryCycle,
    MemberScore,
)
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
    with db.read() as s:
        assert service.snapshot_days(s, MemberScore) == []
    days = [DAY - timedelta(days=2), DAY - timedelta(days=1), DAY]
    pruned = [service.refresh(db, clock, timezone=TZ, as_of=d, keep=2).pruned for d in days]
    assert pruned == [[], [], [days[0]]]
    with db.read() as s:
        present = set(s.scalars(select(MemberScore.as_of).distinct()))
        assert present == set(days[1:])
        assert set(s.scalars(select(CategoryCycle.as_of).distinct())) == set(days[1:])
        # the seeks that prune uses instead of a DISTINCT find the same days, in order
        assert service.snapshot_days(s, MemberScore) == days[1:]
        assert service.snapshot_days(s, CategoryCycle) == days[1:]
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
    status = runner.invoke(app, ["analytics", "warehouse", "--database-url", database_url],
                           terminal_width=200)
    assert status.exit_code == 0, status.output
    if db.engine.dialect.name == "sqlite":  # "auto": a file beside the database
        assert out["params"]["warehouse"]["mode"] == "incremental"  # the first run built it
        assert "Analytics warehouse" in status.output and "sales" in status.output
    else:  # "auto" keeps none on PostgreSQL
        assert "warehouse" not in out["params"]
        assert "No analytics warehouse" in status.output


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


# ---------------------------------------------------------------- the snapshot write


def _score_table(n: int, seed: int) -> pa.Table:
    """``n`` rows shaped as ``scores.score`` returns them, with every kind of edge value the
    columns can hold: NULLs, full-precision floats, 0 and 1, large and negative money."""
    rng = np.random.default_rng(seed)
    ids = sorted(str(uuid.UUID(int=int(v))) for v in rng.integers(1, 2**62, n))
    bought = rng.random(n) < 0.8

    def nullable(values: np.ndarray, pa_type: pa.DataType, share: float = 0.2) -> pa.Array:
        return pa.array(values, type=pa_type, mask=~bought | (rng.random(n) < share))

    money = rng.integers(-2**40, 2**62, n)
    unit = rng.random(n)
    unit[:3] = [0.0, 1.0, 1 / 3]
    days = np.datetime64("2020-01-01") + rng.integers(0, 2500, n).astype("timedelta64[D]")
    scores_1_5 = rng.integers(1, 6, n)

    def pick(words: tuple[str, ...]) -> list[str]:
        return [words[i] for i in rng.integers(0, len(words), n)]

    columns: dict[str, pa.Array] = {
        "member_id": pa.array(ids, type=pa.string()),
        "purchases": pa.array(rng.integers(0, 500, n), type=pa.int64()),
        "frequency": nullable(rng.integers(0, 500, n), pa.int64()),
        "first_purchase_on": nullable(days, pa.date32()),
        "last_purchase_on": nullable(days + 3, pa.date32()),
        "recency_days": nullable(rng.integers(0, 900, n), pa.int64()),
        "tenure_days": nullable(rng.integers(0, 900, n), pa.int64()),
        "t_x_days": nullable(rng.random(n) * 700, pa.float64()),
        "age_days": nullable(rng.random(n) * 730 + 1e-9, pa.float64()),
        "monetary_minor": nullable(money, pa.int64()),
        "total_net_minor": pa.array(money, type=pa.int64()),
        "net_90_minor": pa.array(-money // 3, type=pa.int64()),
        "net_prev_90_minor": pa.array(money // 7, type=pa.int64()),
        "net_365_minor": pa.array(money // 2, type=pa.int64()),
        "r_score": pa.array(scores_1_5, type=pa.int16(), mask=~bought),
        "f_score": pa.array(scores_1_5[::-1], type=pa.int16(), mask=~bought),
        "m_score": pa.array(scores_1_5, type=pa.int16(), mask=~bought),
        "fm_score": pa.array(scores_1_5, type=pa.int16(), mask=~bought),
        "rfm_segment": pa.array(pick(RFM_SEGMENTS), mask=~bought),
        "p_alive": nullable(unit, pa.float64()),
        "expected_30": nullable(rng.random(n) * 3, pa.float64()),
        "expected_90": nullable(rng.random(n) * 1e-300, pa.float64()),
        "expected_365": nullable(rng.random(n) * 1e12, pa.float64()),
        "expected_spend_minor": nullable(money, pa.int64()),
        "clv_minor": nullable(money // 5, pa.int64()),
        "lifecycle_stage": pa.array(pick(LIFECYCLE_STAGES)),
        "next_purchase_on": nullable(days + 30, pa.date32(), 0.5),
        "satisfaction": pa.array(pick(SATISFACTION)),
        "loyalty_type": pa.array(pick(LOYALTY_TYPES)),
        "replenishment_categories": pa.array(rng.integers(0, 12, n), type=pa.int64()),
        "bond_financial": pa.array(unit, type=pa.float64()),
        "bond_social": pa.array(unit[::-1], type=pa.float64()),
        "bond_structural": pa.array(rng.random(n), type=pa.float64()),
        "next_bond": pa.array(pick(("issue_coupon", "invite_survey")), mask=rng.random(n) < 0.3),
    }
    return pa.table(columns)


def _cycle_table(member_ids: list[str], seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    categories = sorted(str(uuid.UUID(int=int(v))) for v in rng.integers(1, 2**62, 3))
    pairs = [(m, c) for m in member_ids[::2] for c in categories]
    n = len(pairs)
    last = np.datetime64("2026-01-01") + rng.integers(0, 300, n).astype("timedelta64[D]")
    return pa.table({
        "member_id": pa.array([m for m, _ in pairs], type=pa.string()),
        "category_id": pa.array([c for _, c in pairs], type=pa.string()),
        "intervals": pa.array(rng.integers(1, 40, n), type=pa.int64()),
        "own_median_days": pa.array(rng.random(n) * 60, type=pa.float64()),
        "category_median_days": pa.array(rng.random(n) * 60, type=pa.float64()),
        "interval_days": pa.array(rng.random(n) * 60, type=pa.float64()),
        "last_purchase_on": pa.array(last, type=pa.date32()),
        "next_due_on": pa.array(last + 17, type=pa.date32()),
    })


def _as_stored(table: pa.Table, day: date) -> list[tuple[Any, ...]]:
    """The rows as the ORM reads them back: UUIDs, dates, Python numbers, None."""
    rows = []
    for row in table.to_pylist():
        rows.append((day, *(uuid.UUID(v) if k.endswith("_id") and v is not None else v
                            for k, v in row.items())))
    return sorted(rows)


def test_a_written_snapshot_reads_back_value_for_value(
        db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(service, "CHUNK_ROWS", 700)  # several chunks, a partial last one
    table = _score_table(2_500, seed=5)
    cycles = _cycle_table(table.column("member_id").to_pylist(), seed=6)
    service.write_snapshot(db, as_of=DAY, member_scores=table, category_cycles=cycles)
    assert _rows(db, MemberScore, DAY) == _as_stored(table, DAY)
    assert _rows(db, CategoryCycle, DAY) == _as_stored(cycles, DAY)
    # rewriting the day replaces every row
    again = _score_table(1_000, seed=7)
    service.write_snapshot(db, as_of=DAY, member_scores=again, category_cycles=cycles)
    assert _rows(db, MemberScore, DAY) == _as_stored(again, DAY)


def test_the_snapshot_write_still_refuses_rows_breaking_a_check(db: Database) -> None:
    table = _score_table(50, seed=8)
    stages = table.column("lifecycle_stage").to_pylist()
    stages[17] = "zombie"
    bad = table.set_column(table.column_names.index("lifecycle_stage"), "lifecycle_stage",
                           pa.array(stages))
    empty = _cycle_table([], seed=9)
    with pytest.raises((sqlite3.IntegrityError, psycopg.errors.CheckViolation)):
        service.write_snapshot(db, as_of=DAY, member_scores=bad, category_cycles=empty)
    # a good write (checks evaluated beforehand) leaves the connection checking as before
    service.write_snapshot(db, as_of=DAY, member_scores=table, category_cycles=empty)
    with pytest.raises(IntegrityError), db.write() as session:
        session.execute(update(MemberScore).where(MemberScore.as_of == DAY)
                        .values(p_alive=1.5))


@pytest.mark.parametrize(("column", "bad"), [
    ("purchases", -1), ("r_score", 6), ("f_score", 0), ("rfm_segment", "vip"),
    ("lifecycle_stage", "zombie"), ("loyalty_type", "blind"), ("satisfaction", "meh"),
    ("p_alive", 1.01), ("bond_social", -0.1),
])
def test_each_check_constraint_is_evaluated_before_sqlite_skips_it(column: str,
                                                                   bad: Any) -> None:
    """The fast write skips SQLite's row-by-row CHECKs only when DuckDB, evaluating the
    same constraints column-wise, finds every row good: each constraint must be seen."""
    table = _score_table(40, seed=10)
    assert service._checks_hold(MemberScore.__tablename__, table)  # the fast path is taken
    values = table.column(column).to_pylist()
    row = next(i for i, v in enumerate(values) if v is not None)
    values[row] = bad
    index = table.column_names.index(column)
    broken = table.set_column(index, column, pa.array(values, type=table.schema.field(column).type))
    assert not service._checks_hold(MemberScore.__tablename__, broken)


def test_checks_duckdb_cannot_evaluate_are_left_to_the_database() -> None:
    table = _score_table(10, seed=11)
    assert not service._checks_hold(MemberScore.__tablename__, table.drop_columns(["p_alive"]))
    assert not service._checks_hold("no_such_table", table)
