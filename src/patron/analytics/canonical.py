"""The canonical analytics tables as DuckDB SQL: what is read from the OLTP tables, and how.

Shared by ``source`` (in patron's process) and ``sqlite_extract`` (in a child process that
must start fast: it imports only DuckDB and this module). The meaning of every table and
column is documented in ``source``.
"""

from __future__ import annotations

import time
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import duckdb

from patron.core.errors import ValidationFailed


class Kind(StrEnum):
    """A raw column's logical type; decides how each backend's value is normalised."""

    UUID = "UUID"
    TS = "TIMESTAMPTZ"
    INT = "BIGINT"
    BOOL = "BOOLEAN"
    TEXT = "VARCHAR"
    DATE = "DATE"


@dataclass(frozen=True)
class RawTable:
    """An OLTP table as analytics read it: the columns needed and how rows are cut.

    ``before``: a time column; rows at or after the cutoff are left out. ``latest``:
    (partition column, order column): keep only the last row of each partition (a
    ledger's entry that holds the balance), after the ``before`` filter. ``table``: the
    OLTP table read, when it is not ``name`` (a narrower read of a table that also has a
    wider one). ``where``: a condition on the table's own columns that the OLTP database
    applies (only the rows that meet it leave it), in SQL that SQLite, PostgreSQL and
    DuckDB all take; ``{cutoff}`` stands for the cutoff as a time literal of each.
    """

    name: str
    columns: tuple[tuple[str, Kind], ...]
    before: str | None = None
    latest: tuple[str, str] | None = None
    table: str = ""
    where: str = ""

    @property
    def raw_name(self) -> str:
        return f"raw_{self.name}"

    @property
    def source(self) -> str:
        """The OLTP table the rows come from."""
        return self.table or self.name


_ID, _TS, _INT, _TXT = Kind.UUID, Kind.TS, Kind.INT, Kind.TEXT

RAW_TABLES: dict[str, RawTable] = {t.name: t for t in (
    RawTable("stores", (("id", _ID), ("code", _TXT), ("name", _TXT), ("timezone", _TXT))),
    RawTable("categories", (("id", _ID), ("code", _TXT), ("name", _TXT),
                            ("replenish_days", _INT))),
    RawTable("products", (("id", _ID), ("sku", _TXT), ("name", _TXT), ("category_id", _ID),
                          ("price_minor", _INT))),
    RawTable("members", (("id", _ID), ("joined_at", _TS), ("home_store_id", _ID),
                         ("enrolled_store_id", _ID), ("enrolled_by_id", _ID),
                         ("referred_by_id", _ID), ("status", _TXT), ("preferences", _TXT)),
             before="joined_at"),
    # Who is not active (a few rows), for a reader that needs nothing else of the members.
    RawTable("member_states", (("id", _ID), ("status", _TXT), ("joined_at", _TS)),
             table="members", where="status <> 'active' OR joined_at >= {cutoff}"),
    RawTable("tiers", (("id", _ID), ("code", _TXT))),
    RawTable("member_tiers", (("member_id", _ID), ("tier_id", _ID), ("since", _TS),
                              ("source", _TXT)), before="since"),
    RawTable("tier_changes", (("seq", _INT), ("member_id", _ID), ("from_tier_id", _ID),
                              ("to_tier_id", _ID), ("at", _TS)), before="at"),
    RawTable("sales", (("id", _ID), ("store_id", _ID), ("member_id", _ID),
                       ("occurred_at", _TS), ("subtotal_minor", _INT), ("discount_minor", _INT),
                       ("total_minor", _INT)), before="occurred_at"),
    RawTable("sale_lines", (("id", _ID), ("sale_id", _ID), ("product_id", _ID),
                            ("quantity", _INT), ("unit_price_minor", _INT),
                            ("discount_minor", _INT), ("total_minor", _INT))),
    RawTable("sale_discounts", (("sale_id", _ID), ("kind", _TXT))),
    RawTable("refunds", (("id", _ID), ("sale_id", _ID), ("amount_minor", _INT),
                         ("occurred_at", _TS)), before="occurred_at"),
    RawTable("refund_lines", (("refund_id", _ID), ("sale_line_id", _ID), ("quantity", _INT),
                              ("amount_minor", _INT))),
    RawTable("points_accounts", (("id", _ID), ("member_id", _ID))),
    RawTable("points_entries", (("seq", _INT), ("account_id", _ID), ("available_after", _INT),
                                ("occurred_at", _TS)),
             before="occurred_at", latest=("account_id", "seq")),
    RawTable("points_lots", (("account_id", _ID), ("remaining", _INT),
                             ("is_pending", Kind.BOOL), ("earned_at", _TS),
                             ("expires_at", _TS)), before="earned_at"),
    RawTable("wallet_accounts", (("id", _ID), ("member_id", _ID))),
    RawTable("wallet_entries", (("seq", _INT), ("account_id", _ID),
                                ("principal_after_minor", _INT), ("bonus_after_minor", _INT),
                                ("occurred_at", _TS)),
             before="occurred_at", latest=("account_id", "seq")),
    RawTable("memberships", (("member_id", _ID), ("starts_at", _TS), ("ends_at", _TS),
                             ("status", _TXT)), before="starts_at"),
    RawTable("coupons", (("id", _ID), ("member_id", _ID), ("issued_at", _TS),
                         ("valid_until", _TS), ("voided_at", _TS)), before="issued_at"),
    RawTable("coupon_redemptions", (("coupon_id", _ID), ("redeemed_at", _TS)),
             before="redeemed_at"),
    RawTable("referral_attributions", (("referrer_member_id", _ID), ("attributed_at", _TS)),
             before="attributed_at"),
    RawTable("survey_invitations", (("id", _ID), ("member_id", _ID), ("store_id", _ID))),
    RawTable("survey_responses", (("invitation_id", _ID), ("csat", _INT), ("nps", _INT),
                                  ("answered_at", _TS)), before="answered_at"),
    RawTable("callback_tasks", (("id", _ID), ("member_id", _ID))),
    RawTable("callback_calls", (("task_id", _ID), ("called_at", _TS)), before="called_at"),
    RawTable("member_packages", (("member_id", _ID), ("sold_at", _TS), ("expires_at", _TS),
                                 ("closed_at", _TS), ("visits_left", _INT)), before="sold_at"),
    RawTable("messages", (("member_id", _ID), ("channel", _TXT), ("purpose", _TXT),
                          ("template", _TXT), ("status", _TXT), ("sent_at", _TS)),
             before="sent_at"),
)}


# Canonical tables: DuckDB SQL over the raw_* relations. ``{cutoff}`` is a TIMESTAMPTZ
# literal, ``{occurred_on}`` the sale's store-local day (``local_day_sql``). Each entry:
# (raw tables needed, canonical tables needed, SQL).
CANONICAL_SQL: dict[str, tuple[tuple[str, ...], tuple[str, ...], str]] = {
    "stores": (("stores",), (), """
        SELECT id AS store_id, code, name, timezone FROM raw_stores"""),
    "categories": (("categories",), (), """
        SELECT id AS category_id, code, name, replenish_days FROM raw_categories"""),
    "products": (("products",), (), """
        SELECT id AS product_id, sku, name, category_id, price_minor FROM raw_products"""),
    "sales": (("sales", "sale_discounts", "refunds"), ("stores",), """
        WITH refunded AS (
            SELECT sale_id, CAST(sum(amount_minor) AS BIGINT) AS amount
            FROM raw_refunds GROUP BY sale_id),
        reasons AS (
            SELECT sale_id, bool_or(kind = 'coupon') AS coupon,
                   bool_or(kind = 'promotion') AS promotion
            FROM raw_sale_discounts GROUP BY sale_id)
        SELECT s.id AS sale_id, s.member_id, s.store_id, s.occurred_at,
               {occurred_on} AS occurred_on,
               s.subtotal_minor AS gross_minor, s.discount_minor,
               coalesce(r.amount, 0) AS refunded_minor,
               s.total_minor - coalesce(r.amount, 0) AS net_minor,
               coalesce(d.coupon, false) AS coupon_used,
               coalesce(d.promotion, false) AS promoted
        FROM raw_sales s
        JOIN stores st ON st.store_id = s.store_id
        LEFT JOIN refunded r ON r.sale_id = s.id
        LEFT JOIN reasons d ON d.sale_id = s.id"""),
    "lines": (("sale_lines", "refund_lines", "refunds", "products"), ("sales",), """
        WITH returned AS (
            SELECT rl.sale_line_id, CAST(sum(rl.quantity) AS BIGINT) AS quantity,
                   CAST(sum(rl.amount_minor) AS BIGINT) AS amount
            FROM raw_refund_lines rl JOIN raw_refunds r ON r.id = rl.refund_id
            GROUP BY rl.sale_line_id)
        SELECT l.id AS line_id, l.sale_id, s.member_id, s.store_id, l.product_id,
               p.category_id, s.occurred_at, s.occurred_on,
               l.quantity - coalesce(x.quantity, 0) AS quantity, l.unit_price_minor,
               l.discount_minor, l.total_minor - coalesce(x.amount, 0) AS net_minor
        FROM raw_sale_lines l
        JOIN sales s ON s.sale_id = l.sale_id
        JOIN raw_products p ON p.id = l.product_id
        LEFT JOIN returned x ON x.sale_line_id = l.id"""),
    "members": (("members", "tiers", "member_tiers", "tier_changes"), (), """
        SELECT m.id AS member_id, m.joined_at, m.home_store_id, m.enrolled_store_id,
               m.enrolled_by_id, m.referred_by_id, m.status,
               coalesce(tc_tier.code, mt_tier.code) AS tier_code,
               coalesce(m.preferences, '') <> '' AS has_preferences
        FROM raw_members m
        LEFT JOIN (SELECT member_id, arg_max(to_tier_id, seq) AS to_tier_id
                   FROM raw_tier_changes GROUP BY member_id) tc ON tc.member_id = m.id
        LEFT JOIN raw_tiers tc_tier ON tc_tier.id = tc.to_tier_id
        LEFT JOIN raw_member_tiers mt ON mt.member_id = m.id
        LEFT JOIN raw_tiers mt_tier ON mt_tier.id = mt.tier_id"""),
    "inactive_members": (("member_states",), (), """
        SELECT id AS member_id FROM raw_member_states"""),
    "surveys": (("survey_invitations", "survey_responses"), (), """
        SELECT i.member_id, i.store_id, r.answered_at, r.csat, r.nps
        FROM raw_survey_responses r JOIN raw_survey_invitations i ON i.id = r.invitation_id"""),
    "holdings": (("points_accounts", "points_entries", "wallet_accounts", "wallet_entries",
                  "memberships", "member_tiers", "coupons", "coupon_redemptions",
                  "referral_attributions", "callback_tasks", "callback_calls",
                  "member_packages"), ("members", "surveys"), """
        WITH points AS (
            SELECT a.member_id, e.available_after AS available
            FROM raw_points_entries e JOIN raw_points_accounts a ON a.id = e.account_id),
        wallet AS (
            SELECT a.member_id, e.principal_after_minor + e.bonus_after_minor AS amount
            FROM raw_wallet_entries e JOIN raw_wallet_accounts a ON a.id = e.account_id),
        paid AS (
            SELECT member_id FROM raw_memberships
            WHERE ends_at >= {cutoff} AND status <> 'cancelled'
            UNION SELECT member_id FROM raw_member_tiers WHERE source = 'paid'),
        coupons AS (
            SELECT c.member_id, count(*) AS n
            FROM raw_coupons c
            WHERE c.member_id IS NOT NULL AND c.valid_until >= {cutoff}
              AND (c.voided_at IS NULL OR c.voided_at >= {cutoff})
              AND NOT EXISTS (SELECT 1 FROM raw_coupon_redemptions r
                              WHERE r.coupon_id = c.id)
            GROUP BY c.member_id),
        referrals AS (
            SELECT referrer_member_id AS member_id, count(*) AS n
            FROM raw_referral_attributions GROUP BY 1),
        replies AS (SELECT member_id, count(*) AS n FROM surveys GROUP BY 1),
        calls AS (
            SELECT t.member_id, count(*) AS n
            FROM raw_callback_calls c JOIN raw_callback_tasks t ON t.id = c.task_id
            GROUP BY 1),
        packages AS (
            SELECT member_id, count(*) AS n FROM raw_member_packages
            WHERE expires_at >= {cutoff} AND visits_left > 0
              AND (closed_at IS NULL OR closed_at >= {cutoff})
            GROUP BY 1)
        SELECT m.member_id,
               coalesce(p.available, 0) AS points_available,
               coalesce(w.amount, 0) AS wallet_minor,
               pd.member_id IS NOT NULL AS paid_membership,
               coalesce(c.n, 0) AS unused_coupons,
               coalesce(rf.n, 0) AS referrals_made,
               coalesce(rp.n, 0) AS survey_replies,
               coalesce(cl.n, 0) AS callback_calls,
               coalesce(pk.n, 0) AS prepaid_packages,
               m.has_preferences
        FROM members m
        LEFT JOIN points p ON p.member_id = m.member_id
        LEFT JOIN wallet w ON w.member_id = m.member_id
        LEFT JOIN (SELECT DISTINCT member_id FROM paid) pd ON pd.member_id = m.member_id
        LEFT JOIN coupons c ON c.member_id = m.member_id
        LEFT JOIN referrals rf ON rf.member_id = m.member_id
        LEFT JOIN replies rp ON rp.member_id = m.member_id
        LEFT JOIN calls cl ON cl.member_id = m.member_id
        LEFT JOIN packages pk ON pk.member_id = m.member_id"""),
    "messages": (("messages",), (), """
        SELECT member_id, channel, template, sent_at FROM raw_messages
        WHERE member_id IS NOT NULL AND purpose = 'marketing'
          AND status IN ('sent', 'delivered') AND channel IN ('sms', 'email')"""),
}

# Every tier change by then, with tier codes (the tier-migration report).
CANONICAL_SQL["tier_changes"] = (("tier_changes", "tiers"), (), """
    SELECT tc.member_id, ft.code AS from_tier, tt.code AS to_tier, tc.at
    FROM raw_tier_changes tc
    LEFT JOIN raw_tiers ft ON ft.id = tc.from_tier_id
    JOIN raw_tiers tt ON tt.id = tc.to_tier_id""")

# Balances the shop owes, for the liabilities report (not read by the scores, so a refresh
# does not load them: see ``SCORING_TABLES``).
CANONICAL_SQL["points_lots"] = (("points_accounts", "points_lots"), (), """
    SELECT a.member_id, l.remaining, l.is_pending, l.expires_at
    FROM raw_points_lots l JOIN raw_points_accounts a ON a.id = l.account_id""")
CANONICAL_SQL["wallet_balances"] = (("wallet_accounts", "wallet_entries"), (), """
    SELECT a.member_id, e.principal_after_minor AS principal_minor,
           e.bonus_after_minor AS bonus_minor
    FROM raw_wallet_entries e JOIN raw_wallet_accounts a ON a.id = e.account_id""")

#: Every canonical table, in an order where each comes after those it is built from.
CANONICAL_TABLES: tuple[str, ...] = ("stores", "categories", "products", "sales", "lines",
                                     "members", "inactive_members", "surveys", "holdings",
                                     "messages", "points_lots", "wallet_balances",
                                     "tier_changes")


def sqlite_scanner_path() -> Path:
    """The DuckDB sqlite extension shipped in the ``duckdb-extension-sqlite-scanner`` wheel."""
    import duckdb_extension_sqlite_scanner as package  # type: ignore[import-untyped]

    root = Path(package.__file__).parent
    wanted = f"v{duckdb.__version__}"
    found = sorted(root.rglob("sqlite_scanner.duckdb_extension"))
    for path in found:
        if wanted in path.parts:
            return path
    if found:
        return found[0]
    raise RuntimeError(f"the sqlite scanner extension is missing under {root}")


#: What a request without a list of tables gets: everything but the reports' own tables.
SCORING_TABLES: tuple[str, ...] = tuple(t for t in CANONICAL_TABLES
                                        if t not in ("inactive_members", "points_lots",
                                                     "wallet_balances", "tier_changes"))


def needed(tables: Collection[str] | None) -> tuple[list[str], list[str]]:
    """(canonical tables to build in order, raw tables to load) for a request (None: the
    ``SCORING_TABLES``)."""
    wanted = set(SCORING_TABLES if tables is None else tables)
    unknown = wanted - set(CANONICAL_SQL)
    if unknown:
        raise ValidationFailed(f"unknown analytics table(s): {', '.join(sorted(unknown))}",
                               "tables")
    changed = True
    while changed:
        changed = False
        for name in list(wanted):
            for dep in CANONICAL_SQL[name][1]:
                if dep not in wanted:
                    wanted.add(dep)
                    changed = True
    canonical = [name for name in CANONICAL_TABLES if name in wanted]
    raw: list[str] = []
    for name in canonical:
        raw.extend(r for r in CANONICAL_SQL[name][0] if r not in raw)
    return canonical, raw


def ts_literal(at: datetime) -> str:
    return f"TIMESTAMPTZ '{at.astimezone(UTC).isoformat()}'"


def configure(duck: duckdb.DuckDBPyConnection, *, workdir: str,
              memory_limit: str | None) -> None:
    """Session settings every analytics DuckDB connection shares."""
    duck.execute("SET TimeZone = 'UTC'")
    duck.execute(f"SET temp_directory = '{workdir}'")
    if memory_limit:
        duck.execute(f"SET memory_limit = '{memory_limit}'")


#: How far before the cutoff ``local_day_sql`` spells out each zone's UTC offsets; older
#: sales fall back to DuckDB's ``timezone()``, row by row (same day, slower).
LOCAL_DAY_YEARS = 20


def utc_offsets(zone: str, start_s: int, end_s: int) -> tuple[int, list[tuple[int, int]]]:
    """``zone``'s UTC offset (seconds) at epoch second ``start_s``, and each (epoch second
    it starts, new offset) up to ``end_s``: stepped a day at a time, each change bisected
    to the second. Shared by ``views`` (which remembers the answers) and the load: it
    needs nothing but zoneinfo, as the extract child imports only DuckDB and this module."""
    info = ZoneInfo(zone)

    def offset(at_s: int) -> int:
        delta = datetime.fromtimestamp(at_s, UTC).astimezone(info).utcoffset()
        return int(delta.total_seconds()) if delta is not None else 0

    first = current_offset = offset(start_s)
    changes: list[tuple[int, int]] = []
    current = start_s
    while current < end_s:
        step = min(current + 86_400, end_s)
        new = offset(step)
        if new != current_offset:
            lo, hi = current, step
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if offset(mid) == current_offset:
                    lo = mid
                else:
                    hi = mid
            changes.append((hi, new))
            current_offset = new
        current = step
    return first, changes


def local_day_sql(ts: str, zone: str, zones: Collection[str], cutoff: datetime) -> str:
    """SQL for the local DATE in the zone named by column ``zone`` of the TIMESTAMPTZ
    expression ``ts``: the same day as ``CAST(timezone(zone, ts) AS DATE)``, from integer
    arithmetic on the epoch and a CASE over the UTC offsets each of ``zones`` had in the
    ``LOCAL_DAY_YEARS`` before ``cutoff`` (from zoneinfo, the zone rules the rest of patron
    uses). Why: DuckDB's per-row ``timezone()`` with a zone read from a column cost 1.1 CPU
    seconds per 700,000 sales here, this 0.02 (the sales table's biggest cost). Instants
    outside that window, and zones not listed, fall back to ``timezone()``."""
    end_s = int(cutoff.timestamp()) + 1
    start_s = max(0, end_s - LOCAL_DAY_YEARS * 366 * 86_400)
    epoch = f"epoch_us({ts})"
    branches = []
    for name in sorted(set(zones)):
        try:
            first, changes = utc_offsets(name, start_s, end_s)
        except (ZoneInfoNotFoundError, ValueError):
            continue  # left to timezone(), which fails on it as it always did
        # latest first: most sales are recent, and CASE stops at the first match
        steps = [f"WHEN {epoch} >= {at * 1_000_000} THEN {off * 1_000_000}"
                 for at, off in reversed(changes)]
        steps.append(f"WHEN {epoch} >= {start_s * 1_000_000} THEN {first * 1_000_000}")
        quoted = name.replace("'", "''")
        branches.append(f"WHEN '{quoted}' THEN CASE WHEN {epoch} < {end_s * 1_000_000} "
                        f"THEN CASE {' '.join(steps)} END END")
    fallback = f"CAST(timezone({zone}, {ts}) AS DATE)"
    if not branches:
        return fallback
    offset_us = f"CAST(CASE {zone} {' '.join(branches)} END AS BIGINT)"
    day = f"CAST(({epoch} + {offset_us}) // 86400000000 AS INTEGER)"
    return f"coalesce(DATE '1970-01-01' + {day}, {fallback})"


#: Written while loading: DuckDB's bit-packing of the loaded columns (UUIDs above all) cost
#: half the CPU of writing the ``lines`` table; without it the file is about 1.8 times
#: larger and scans of it got no slower (measured in ``docs/performance.md``).
LOAD_COMPRESSION = "SET disabled_compression_methods = 'bitpacking'"


def build_canonical(duck: duckdb.DuckDBPyConnection, canonical: Collection[str],
                    cutoff: datetime) -> dict[str, float]:
    """Create the canonical tables from the raw_* relations; seconds per table."""
    timings: dict[str, float] = {}
    for name in canonical:
        began = time.perf_counter()
        occurred_on = ""
        if name == "sales":  # the store zones are known once ``stores`` is built
            zones = [z for (z,) in duck.execute("SELECT DISTINCT timezone FROM stores "
                                                "WHERE timezone IS NOT NULL").fetchall()]
            occurred_on = local_day_sql("s.occurred_at", "st.timezone", zones, cutoff)
        sql = CANONICAL_SQL[name][2].format(cutoff=ts_literal(cutoff), occurred_on=occurred_on)
        duck.execute(f"CREATE TABLE {name} AS {sql}")
        timings[name] = time.perf_counter() - began
    return timings


def cut_sql(spec: RawTable, select: str, cutoff: datetime) -> str:
    """Wrap a SELECT of a raw table with its cutoff filter and last-entry rule (DuckDB)."""
    sql = select
    if spec.where:  # already applied by the OLTP database where it can be; the same rows
        sql = f"SELECT * FROM ({sql}) WHERE {spec.where.format(cutoff=ts_literal(cutoff))}"  # noqa: S608 - our names
    if spec.before:
        sql = f'SELECT * FROM ({sql}) WHERE "{spec.before}" < {ts_literal(cutoff)}'  # noqa: S608 - our names
    if spec.latest:
        part, order = spec.latest
        sql = (f'SELECT * FROM ({sql}) QUALIFY row_number() OVER '  # noqa: S608 - our names
               f'(PARTITION BY "{part}" ORDER BY "{order}" DESC) = 1')
    return sql
