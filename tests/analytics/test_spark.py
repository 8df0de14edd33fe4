"""The analytics refresh on Spark (local mode) gives the scores it gives on DuckDB.

One small demo chain is refreshed twice for the same day, once per engine, through the
same ``service.refresh`` the CLI and the setting select; each snapshot (every column of
every member's scores, the category cycles, the fitted parameters) is read back and the
two are compared. Integers, dates and words must be equal; floats within a relative
1e-6 (the engines may add in another order; in practice they agree to the last bit).

Spark's JVM takes long to start, so the module starts one session and stops it at the
end; it runs only in the SQLite run of the suite (the engine reads the exported tables,
not the OLTP database, so PostgreSQL adds nothing) and needs Java.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import numpy as np
import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from patron.analytics import service, source, spark
from patron.analytics.tables import AnalyticsRun, CategoryCycle, MemberScore
from patron.cli import app
from patron.core import migrate
from patron.core.clock import FixedClock
from patron.core.db import Database
from patron.core.errors import ValidationFailed
from patron.core.settings import Settings
from patron.demo import DemoConfig, build_demo, wipe
from patron.demo.build import TIMEZONE

pytestmark = [
    pytest.mark.skipif(bool(os.environ.get("PATRON_TEST_DATABASE_URL")),
                       reason="Spark reads the exported tables, whatever the OLTP database: "
                              "run once, in the SQLite run of the suite"),
    pytest.mark.skipif(spark.available() is not None,
                       reason=f"Spark cannot run here: {spark.available()}"),
]

CONFIG = DemoConfig(end_on=date(2026, 11, 23), seed=5, members=300, years=1.0)
AS_OF = date(2026, 11, 22)
CLOCK = FixedClock(datetime(2026, 11, 23, 2, tzinfo=UTC))
FIT_PARAMS = ("r", "alpha", "a", "b", "loglik", "p", "q", "v", "gamma_gamma_loglik")
COUNT_PARAMS = ("customers", "repeat_buyers", "rows", "gamma_gamma_customers")


@dataclass
class Snapshot:
    """One refresh's output: rows keyed by member (and category), and the run's params."""

    scores: dict[Any, tuple[Any, ...]]
    cycles: dict[Any, tuple[Any, ...]]
    params: dict[str, Any]


@dataclass
class Compared:
    duckdb: Snapshot
    spark: Snapshot
    database: Database


def _snapshot(database: Database) -> Snapshot:
    score_cols = [c for c in MemberScore.__table__.columns if c.name != "as_of"]
    cycle_cols = [c for c in CategoryCycle.__table__.columns if c.name != "as_of"]
    with database.read() as s:
        scores = {row[0]: tuple(row) for row in s.execute(
            select(*score_cols).where(MemberScore.as_of == AS_OF))}
        cycles = {(row[0], row[1]): tuple(row) for row in s.execute(
            select(*cycle_cols).where(CategoryCycle.as_of == AS_OF))}
        params = s.scalar(select(AnalyticsRun.params).where(
            AnalyticsRun.as_of == AS_OF, AnalyticsRun.status == "succeeded"))
    assert params is not None
    return Snapshot(scores=scores, cycles=cycles, params=dict(params))


@pytest.fixture(scope="module")
def spark_session() -> Iterator[Any]:
    """local[2], few shuffle partitions, no UI, loopback only (``spark.LOCAL_CONF``); the
    JVM compiles with C1 only, which starts faster on a test's few small queries."""
    session = spark.spark_session("local[2]", conf={
        "spark.sql.shuffle.partitions": "2",
        "spark.driver.extraJavaOptions": "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"})
    yield session
    session.stop()


@pytest.fixture(scope="module")
def compared(database_url: str, spark_session: Any) -> Iterator[Compared]:
    database = Database.from_url(database_url)
    migrate.upgrade(database.engine)
    try:
        with database.write() as s:
            build_demo(s, config=CONFIG)
        service.refresh(database, CLOCK, timezone=TIMEZONE, as_of=AS_OF, engine="duckdb")
        on_duckdb = _snapshot(database)
        service.refresh(database, CLOCK, timezone=TIMEZONE, as_of=AS_OF, engine="spark")
        yield Compared(duckdb=on_duckdb, spark=_snapshot(database), database=database)
    finally:
        with database.write() as s:
            wipe(s)
        database.dispose()


def _assert_same_rows(expected: dict[Any, tuple[Any, ...]], actual: dict[Any, tuple[Any, ...]],
                      names: list[str]) -> None:
    assert expected.keys() == actual.keys()
    keys = sorted(expected)
    for i, name in enumerate(names):
        left = [expected[k][i] for k in keys]
        right = [actual[k][i] for k in keys]
        if any(isinstance(v, float) for v in left + right):
            a = np.array([np.nan if v is None else v for v in left], dtype=float)
            b = np.array([np.nan if v is None else v for v in right], dtype=float)
            np.testing.assert_allclose(b, a, rtol=1e-6, atol=0.0, equal_nan=True,
                                       err_msg=name)
        else:
            assert right == left, name


def test_every_score_column_is_the_same_on_spark(compared: Compared) -> None:
    names = [c.name for c in MemberScore.__table__.columns if c.name != "as_of"]
    on_duckdb, on_spark = compared.duckdb.scores, compared.spark.scores
    assert len(on_duckdb) == CONFIG.members
    _assert_same_rows(on_duckdb, on_spark, names)
    # the comparison saw real scores: segments, stages and model outputs are filled in
    column = {n: i for i, n in enumerate(names)}
    segments = {row[column["rfm_segment"]] for row in on_spark.values()}
    assert len(segments) >= 5
    assert all(row[column["p_alive"]] is not None for row in on_spark.values())


def test_category_cycles_are_the_same_on_spark(compared: Compared) -> None:
    names = [c.name for c in CategoryCycle.__table__.columns if c.name != "as_of"]
    assert len(compared.duckdb.cycles) > 0
    _assert_same_rows(compared.duckdb.cycles, compared.spark.cycles, names)


def test_the_models_fitted_on_spark_summaries_have_the_same_parameters(
        compared: Compared) -> None:
    on_duckdb, on_spark = compared.duckdb.params, compared.spark.params
    assert "error" not in on_spark
    for name in COUNT_PARAMS:
        assert on_spark[name] == on_duckdb[name], name
    for name in FIT_PARAMS:
        assert on_spark[name] == pytest.approx(on_duckdb[name], rel=1e-6), name


def test_the_spark_source_has_no_duckdb_and_drops_its_views(compared: Compared,
                                                            spark_session: Any) -> None:
    with source.open_source(compared.database, as_of=AS_OF, timezone=TIMEZONE,
                            tables=["stores"]) as src, \
            spark.on_spark(src, session=spark_session) as on_spark:
        assert on_spark.stores.count().execute() == src.stores.count().execute() > 0
        view = on_spark.views["stores"]
        assert spark_session.catalog.tableExists(view)
        with pytest.raises(ValidationFailed) as refused:
            _ = on_spark.duck
        assert refused.value.field == "analytics_engine"
    assert not spark_session.catalog.tableExists(view)


def test_an_unknown_engine_is_refused_before_a_run_is_recorded(db: Database) -> None:
    def runs() -> int:
        with db.read() as s:
            return int(s.scalar(select(func.count()).select_from(AnalyticsRun)) or 0)

    before = runs()
    with pytest.raises(ValidationFailed) as refused:
        service.refresh(db, CLOCK, timezone=TIMEZONE, as_of=AS_OF, engine="hive")
    assert refused.value.field == "analytics_engine"
    assert runs() == before


def test_the_cli_refuses_an_unknown_engine_naming_the_option(db: Database,
                                                             database_url: str) -> None:
    result = CliRunner().invoke(app, ["analytics", "refresh", "--database-url", database_url,
                                      "--engine", "hive", "--json"])
    assert result.exit_code == 2
    assert "--engine" in result.output and "hive" in result.output


def test_the_setting_names_the_engine() -> None:
    assert Settings(environment="test").analytics_engine == "duckdb"
    assert Settings(environment="test", analytics_engine="spark").analytics_engine == "spark"
    with pytest.raises(ValueError, match="analytics_engine"):
        Settings(environment="test", analytics_engine="hive")  # type: ignore[arg-type]
