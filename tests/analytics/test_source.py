"""The analytics source: one normalised history whatever the OLTP backend, cut at as_of.

The same seeded rows are written into a SQLite file and (when PATRON_TEST_DATABASE_URL is
set) a PostgreSQL database, and every canonical table must come out identical.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import duckdb
import pytest
from sqlalchemy import text

from patron.analytics import canonical, source
from patron.core import migrate
from patron.core.db import Database
from patron.core.errors import ValidationFailed
from tests.analytics.history import History, at
from tests.support.pgdb import throwaway_database

AS_OF = date(2026, 11, 22)  # Shanghai: the history ends at 2026-11-22 16:00 UTC
TZ = "Asia/Shanghai"


@dataclass
class Seeded:
    shop: uuid.UUID
    ny: uuid.UUID
    regular: uuid.UUID
    other: uuid.UUID
    late: uuid.UUID
    coupon_sale: uuid.UUID
    ny_sale: uuid.UUID
    coffee_line: uuid.UUID
    tea_line: uuid.UUID


def seed(h: History) -> Seeded:
    """A history touching every canonical table, with rows on both sides of the cutoff."""
    shop = h.store("SH")
    ny = h.store("NY", "America/New_York")
    coffee = h.product("coffee", 4500)
    tea = h.product("tea", 3000)
    regular = h.member(shop, at("2025-03-01"), preferences="oat milk")
    other = h.member(shop, at("2025-06-01"))
    late = h.member(shop, at("2026-11-22", 17))  # joined after the cutoff
    # 23:30 UTC on the 21st is the 22nd in Shanghai
    coupon_sale, (coffee_line,) = h.sale(regular, shop, at("2026-11-21", 23, 30),
                                         [(coffee, 2, 4500)], discounts=[("coupon", 500)])
    # 03:00 UTC on the 20th is the 19th in New York
    ny_sale, (_, tea_line) = h.sale(regular, ny, at("2026-11-20", 3),
                                    [(coffee, 1, 4500), (tea, 2, 3000)],
                                    discounts=[("promotion", 600)])
    h.refund(shop, tea_line, 1, at("2026-11-21", 1))  # before the cutoff: counted
    h.refund(shop, coffee_line, 1, at("2026-11-23", 1))  # after: not yet
    h.sale(None, shop, at("2026-11-10"), total=1200)  # a walk-in
    h.sale(other, shop, at("2026-05-05"), total=2500)
    h.sale(other, shop, at("2026-11-22", 17), total=9900)  # after the cutoff
    h.points(regular, at("2026-10-01"), 120)
    h.points(regular, at("2026-11-23"), 999)
    for earned, remaining, pending, expires in (
            (at("2026-10-01"), 120, False, at("2027-10-01")),
            (at("2026-11-22", 2), 80, True, None),  # still in its return window
            (at("2026-11-23"), 999, False, None)):  # after the cutoff
        h._add("points_lots", account_id=h._points[regular], points=remaining,
               remaining=remaining, is_pending=pending, earned_at=earned, available_at=earned,
               expires_at=expires)
    h.wallet(regular, at("2026-09-01"), 5000, 500)
    h.coupon(regular, shop, at("2026-11-01"), at("2026-12-31"))  # unused
    h.coupon(regular, shop, at("2026-11-01"), at("2026-12-31"), redeemed=at("2026-11-02"))
    h.coupon(regular, shop, at("2026-11-01"), at("2026-12-31"), redeemed=at("2026-11-23"))
    h.coupon(other, shop, at("2026-01-01"), at("2026-02-01"))  # expired
    h.survey(regular, shop, at("2026-06-01"), csat=5)
    h.survey(regular, shop, at("2026-11-23"), csat=2)  # after the cutoff
    h.callback(other, shop, at("2026-08-08"))
    h.referral(regular, other, at("2025-06-01"))
    h.package(other, at("2026-10-01"), at("2027-10-01"), visits_left=3)
    h.tier(regular, "gold", at("2026-01-01"))
    h.tier(regular, "platinum", at("2026-11-23"))
    return Seeded(shop, ny, regular, other, late, coupon_sale, ny_sale, coffee_line, tea_line)


def _seed_into(database: Database) -> Seeded:
    with database.engine.begin() as conn:
        return seed(History(conn))


def _rows(src: source.Source, name: str) -> list[dict[str, Any]]:
    return sorted(src.table(name).to_pyarrow().to_pylist(), key=repr)


def test_the_liabilities_balances_are_cut_at_the_end_of_the_as_of_day(db: Database) -> None:
    s = _seed_into(db)
    with source.open_source(db, as_of=AS_OF, timezone=TZ,
                            tables=["points_lots", "wallet_balances"]) as src:
        lots = sorted((r["remaining"], r["is_pending"], r["expires_at"] is None)
                      for r in src.table("points_lots").to_pyarrow().to_pylist())
        wallets = src.table("wallet_balances").to_pyarrow().to_pylist()
    assert lots == [(80, True, True), (120, False, False)]  # the lot of the 23rd is later
    assert wallets == [{"member_id": str(s.regular), "principal_minor": 5000,
                        "bonus_minor": 500}]


def test_the_canonical_tables_are_normalised_and_cut_at_the_end_of_the_as_of_day(
        db: Database) -> None:
    s = _seed_into(db)
    with source.open_source(db, as_of=AS_OF, timezone=TZ) as src:
        assert src.cutoff == datetime(2026, 11, 22, 16, tzinfo=UTC)
        sales = {r["sale_id"]: r for r in src.sales.to_pyarrow().to_pylist()}
        members = {r["member_id"]: r for r in src.members.to_pyarrow().to_pylist()}
        lines = {r["line_id"]: r for r in src.lines.to_pyarrow().to_pylist()}
        holdings = {r["member_id"]: r for r in src.holdings.to_pyarrow().to_pylist()}
        surveys = src.surveys.to_pyarrow().to_pylist()

    assert len(sales) == 4  # the sale after the cutoff is not there
    coupon_sale = sales[str(s.coupon_sale)]
    assert coupon_sale["member_id"] == str(s.regular)
    assert coupon_sale["occurred_on"] == date(2026, 11, 22)  # the store's local day
    assert (coupon_sale["gross_minor"], coupon_sale["discount_minor"]) == (9000, 500)
    assert (coupon_sale["refunded_minor"], coupon_sale["net_minor"]) == (0, 8500)
    assert coupon_sale["coupon_used"] and not coupon_sale["promoted"]
    ny_sale = sales[str(s.ny_sale)]
    assert ny_sale["occurred_on"] == date(2026, 11, 19)
    assert ny_sale["promoted"] and not ny_sale["coupon_used"]
    assert (ny_sale["refunded_minor"], ny_sale["net_minor"]) == (3000, 10500 - 600 - 3000)
    assert [r["member_id"] for r in sales.values()].count(None) == 1  # the walk-in

    assert lines[str(s.coffee_line)]["quantity"] == 2  # its refund comes after the cutoff
    assert (lines[str(s.tea_line)]["quantity"], lines[str(s.tea_line)]["net_minor"]) == (1, 3000)

    assert set(members) == {str(s.regular), str(s.other)}  # "late" joined afterwards
    assert members[str(s.regular)]["tier_code"] == "gold"
    assert members[str(s.regular)]["has_preferences"]
    assert members[str(s.other)]["tier_code"] is None

    regular, other = holdings[str(s.regular)], holdings[str(s.other)]
    assert (regular["points_available"], regular["wallet_minor"]) == (120, 5500)
    assert (regular["unused_coupons"], other["unused_coupons"]) == (2, 0)
    assert (regular["referrals_made"], regular["survey_replies"]) == (1, 1)
    assert (other["callback_calls"], other["prepaid_packages"]) == (1, 1)
    assert not regular["paid_membership"]
    assert surveys == [{"member_id": str(s.regular), "store_id": str(s.shop),
                        "answered_at": at("2026-06-01"), "csat": 5, "nps": None}]


def test_the_app_keeps_writing_to_sqlite_after_a_load(db: Database) -> None:
    """The scanner's own SQLite library stays out of this process (``sqlite_extract``):
    loaded here, it reset the WAL index under the app's connections and the next large
    write died with SIGBUS."""
    if db.engine.dialect.name != "sqlite":
        pytest.skip("SQLite only")
    s = _seed_into(db)
    with source.open_source(db, as_of=AS_OF, timezone=TZ) as src:
        loaded = src.duck.execute("SELECT loaded FROM duckdb_extensions() "
                                  "WHERE extension_name = 'sqlite_scanner'").fetchone()
        assert loaded == (False,)
        assert src.sales.count().execute() == 4
    with db.write() as session:
        h = History(session.connection(), _n=100_000)
        filler = h.product("filler")
        for i in range(400):
            h.sale(s.other, s.shop, at("2026-01-01"), [(filler, 1, 100 + i)])
        session.execute(text("DELETE FROM sale_lines WHERE total_minor < 300"))
    with db.read() as session:
        assert session.execute(text("PRAGMA integrity_check")).scalar() == "ok"


def test_a_reading_child_nobody_waits_for_is_stopped(db: Database, tmp_path: Path) -> None:
    """The load starts the SQLite child, then syncs the warehouse; if that fails, leaving
    the block stops the child instead of leaving it reading."""
    if db.engine.dialect.name != "sqlite":
        pytest.skip("SQLite only")
    _seed_into(db)
    cutoff = source.cutoff_for(AS_OF, TZ)
    with source.SqliteExtraction(db.engine, tmp_path / "a.duckdb", ["members"], cutoff,
                                 str(tmp_path), None) as child:
        pass
    assert child.process.returncode is not None
    with source.SqliteExtraction(db.engine, tmp_path / "b.duckdb", ["members"], cutoff,
                                 str(tmp_path), None) as child:
        assert "members" in child.wait()
    with duckdb.connect(str(tmp_path / "b.duckdb"), read_only=True) as duck:
        assert duck.execute("SELECT count(*) FROM members").fetchone() == (2,)  # the third joined after the cutoff


def test_only_the_tables_asked_for_are_loaded(db: Database) -> None:
    _seed_into(db)
    with source.open_source(db, as_of=AS_OF, timezone=TZ, tables=["lines"]) as src:
        assert src.loaded == ("stores", "sales", "lines")
        with pytest.raises(KeyError, match="members"):
            src.table("members")


def test_an_unknown_table_or_zone_is_refused(db: Database) -> None:
    with pytest.raises(ValidationFailed, match="baskets"), \
            source.open_source(db, as_of=AS_OF, timezone=TZ, tables=["baskets"]):
        pass
    with pytest.raises(ValidationFailed, match="Mars/Olympus"):
        source.cutoff_for(AS_OF, "Mars/Olympus")


@pytest.fixture
def postgres_url() -> Iterator[str]:
    server = os.environ.get("PATRON_TEST_DATABASE_URL")
    if not server:
        pytest.skip("PATRON_TEST_DATABASE_URL is not set")
    with throwaway_database(server, "patron_analytics") as url:
        yield url


def test_sqlite_and_postgresql_give_identical_tables(tmp_path: Path, postgres_url: str) -> None:
    loaded: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for label, url in (("sqlite", f"sqlite:///{tmp_path}/same.db"), ("postgresql", postgres_url)):
        database = Database.from_url(url)
        try:
            migrate.upgrade(database.engine)
            _seed_into(database)
            with source.open_source(database, as_of=AS_OF, timezone=TZ,
                                    tables=source.CANONICAL_TABLES) as src:
                assert src.backend == label
                loaded[label] = {name: _rows(src, name) for name in source.CANONICAL_TABLES}
        finally:
            database.dispose()
    for name in source.CANONICAL_TABLES:
        assert loaded["sqlite"][name] == loaded["postgresql"][name], name
    assert len(loaded["sqlite"]["sales"]) == 4 and len(loaded["sqlite"]["holdings"]) == 2


# ------------------------------------------------- the fast load gives the plain SQL's tables

#: The store-local day as the canonical ``sales`` first computed it, row by row.
PLAIN_LOCAL_DAY = "CAST(timezone(st.timezone, s.occurred_at) AS DATE)"

#: (zone, a DST change in 2026 there, UTC): the spring and autumn changes of both zones.
TRANSITIONS = (("America/New_York", datetime(2026, 3, 8, 7, tzinfo=UTC)),
               ("America/New_York", datetime(2026, 11, 1, 6, tzinfo=UTC)),
               ("Europe/London", datetime(2026, 3, 29, 1, tzinfo=UTC)),
               ("Europe/London", datetime(2026, 10, 25, 1, tzinfo=UTC)))


def _around_local_midnights(zone: str, change: datetime) -> list[datetime]:
    """Instants near each local midnight from the day before a DST change to the day after
    (where one hour of offset moves a sale to another day), and next to the change itself."""
    info = ZoneInfo(zone)
    day = change.astimezone(info).date()
    instants = [change + timedelta(seconds=s) for s in (-1, 0, 1)]
    for d in range(-1, 3):
        midnight = datetime.combine(day + timedelta(days=d), datetime.min.time(), info)
        for minutes in (-61, -60, -59, -30, -1, 0, 1, 30, 59, 60, 61):
            instants.append(midnight.astimezone(UTC) + timedelta(minutes=minutes))
    instants.append(midnight.astimezone(UTC) - timedelta(seconds=1))
    return instants


def seed_dst(h: History) -> None:
    """Sales of stores in DST zones next to their local midnights around each change, a
    third of them by walk-ins, some discounted, some refunded (before and after the cutoff),
    and two sales older than ``canonical.LOCAL_DAY_YEARS`` (the fallback's rows)."""
    stores = {zone: h.store(zone.split("/")[1][:8], zone)
              for zone in ("America/New_York", "Europe/London")}
    shanghai = h.store("PVG")
    buyer = h.member(shanghai, at("2025-01-01"))
    product = h.product("dst", 700)
    n = 0
    for zone, change in TRANSITIONS:
        for when in _around_local_midnights(zone, change):
            n += 1
            member = None if n % 3 == 0 else buyer
            discounts = [("coupon" if n % 2 else "promotion", 100)] if n % 5 == 0 else []
            _, (line,) = h.sale(member, stores[zone], when, [(product, 2, 700)],
                                discounts=discounts)
            if n % 7 == 0:
                h.refund(stores[zone], line, 1, when + timedelta(days=1))
            if n % 11 == 0:
                h.refund(stores[zone], line, 1, at("2026-11-30"))  # after the cutoff
    for store in (stores["Europe/London"], shanghai):
        h.sale(buyer, store, at("2004-06-30", 23, 30), total=500)


def _reference_tables(database: Database, tables: tuple[str, ...]) -> duckdb.DuckDBPyConnection:
    """The canonical tables built the plain way in an in-memory DuckDB: every raw row read
    through SQLAlchemy and typed by DuckDB's own casts, the local day by ``timezone()``."""
    cutoff = source.cutoff_for(AS_OF, TZ)
    built, raw = canonical.needed(tables)
    duck = duckdb.connect()
    duck.execute("SET TimeZone = 'UTC'")
    with database.engine.connect() as conn:
        for name in raw:
            spec = canonical.RAW_TABLES[name]
            cols = ", ".join(f'"{c}"' for c, _ in spec.columns)
            rows = conn.execute(text(f'SELECT {cols} FROM "{spec.source}"')).all()
            texts = ", ".join(f'"{c}" VARCHAR' for c, _ in spec.columns)
            duck.execute(f"CREATE TABLE text_{name} ({texts})")
            if rows:
                duck.executemany(f"INSERT INTO text_{name} VALUES "
                                 f"({', '.join('?' for _ in spec.columns)})",
                                 [[_as_text(v) for v in row] for row in rows])
            typed = ", ".join(f'CAST("{c}" AS {k.value}) AS "{c}"' for c, k in spec.columns)
            duck.execute(f"CREATE VIEW {spec.raw_name} AS " + canonical.cut_sql(
                spec, f"SELECT {typed} FROM text_{name}", cutoff))
    for name in built:
        sql = canonical.CANONICAL_SQL[name][2].format(cutoff=canonical.ts_literal(cutoff),
                                                      occurred_on=PLAIN_LOCAL_DAY)
        duck.execute(f"CREATE TABLE {name} AS {sql}")
    return duck


def _as_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):  # PostgreSQL: aware; SQLite gives naive UTC text
        return value.astimezone(UTC).isoformat() if value.tzinfo else value.isoformat()
    return str(value)


def _typed_rows(duck: duckdb.DuckDBPyConnection, name: str) -> tuple[list[tuple[str, str]],
                                                                     list[tuple[Any, ...]]]:
    types = [(str(c), str(t)) for c, t, *_ in duck.execute(f"DESCRIBE {name}").fetchall()]
    cols = ", ".join(f'CAST("{c}" AS VARCHAR)' for c, _ in types)
    rows = sorted(duck.execute(f"SELECT {cols} FROM {name}").fetchall(),
                  key=repr)
    return types, rows


def test_the_loaded_tables_equal_the_plain_sql_with_dst_zones_refunds_and_walk_ins(
        db: Database) -> None:
    """The load's shortcuts (the local day from UTC offsets, ids parsed as hex, no
    bit-packing) must not change a value or a type of any canonical table."""
    with db.engine.begin() as conn:
        h = History(conn)
        seed(h)
        seed_dst(h)
    reference = _reference_tables(db, source.CANONICAL_TABLES)
    with source.open_source(db, as_of=AS_OF, timezone=TZ,
                            tables=source.CANONICAL_TABLES) as src:
        for name in source.CANONICAL_TABLES:
            assert _typed_rows(src.duck, name) == _typed_rows(reference, name), name
        days = src.duck.execute(
            "SELECT count(*), count(DISTINCT occurred_on), count(*) FILTER "
            "(WHERE occurred_on < DATE '2005-01-01'), count(DISTINCT store_id) FROM sales"
        ).fetchone()
        refunded = src.duck.execute(
            "SELECT count(*) FILTER (WHERE refunded_minor > 0), "
            "count(*) FILTER (WHERE member_id IS NULL) FROM sales").fetchone()
    assert days is not None and days[0] > 150 and days[1] > 20
    assert days[2:] == (2, 5)  # the fallback's old sales; 2 + 3 stores
    assert refunded is not None and refunded[0] > 20 and refunded[1] > 60


def test_the_local_day_from_utc_offsets_is_timezones_day() -> None:
    """Every 10 minutes (plus a few seconds) over a week around each 2024-2026 DST change
    of zones with whole-hour, half-hour and no DST, and a day-line jump (Apia, 2011):
    ``local_day_sql`` gives ``CAST(timezone(zone, ts) AS DATE)`` for every instant."""
    zones = ["America/New_York", "Europe/London", "Australia/Lord_Howe", "Asia/Shanghai",
             "Asia/Kolkata", "America/St_Johns", "Pacific/Apia", "UTC"]
    cutoff = datetime(2026, 11, 22, 16, tzinfo=UTC)
    day_sql = canonical.local_day_sql("t.ts", "t.tz", zones, cutoff)
    duck = duckdb.connect()
    duck.execute("SET TimeZone = 'UTC'")
    starts = [datetime(2011, 12, 27, tzinfo=UTC)] + [
        datetime(year, month, 1, tzinfo=UTC) + timedelta(days=d)
        for year in (2024, 2025, 2026) for month in (3, 4, 9, 10, 11) for d in (0, 7, 14, 21)
        if datetime(year, month, 1, tzinfo=UTC) + timedelta(days=d + 8) < cutoff]
    duck.execute("CREATE TABLE starts AS SELECT unnest(?::TIMESTAMPTZ[]) AS start", [starts])
    duck.execute("CREATE TABLE zones AS SELECT unnest(?::VARCHAR[]) AS tz", [zones])
    duck.execute("""
        CREATE TABLE t AS
        SELECT tz, start + to_seconds(i * 600 + i % 7) AS ts
        FROM zones, starts, range(8 * 144) r(i)""")
    plain = PLAIN_LOCAL_DAY.replace("st.timezone", "t.tz").replace("s.occurred_at", "t.ts")
    checked, differing = duck.execute(
        f"SELECT count(*), count(*) FILTER (WHERE {day_sql} <> {plain}) FROM t").fetchone() \
        or (0, 0)
    assert checked > 400_000 and differing == 0
