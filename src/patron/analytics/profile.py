"""Each member's inferred profile, summarised from the canonical tables in one pass.

Design overview
---------------
:func:`collect` turns a ``source.Source`` (the snapshot's canonical tables in DuckDB) into
one Arrow row per active member with what a shop owner would want to know about them:
what they buy (favourite categories and products), where and when (preferred store,
weekday and hour in the store's own time zone), how much per visit, how price-sensitive
they are, which messages they act on, and family signals. ``tags`` and ``portraits``
build on these rows together with the member's scores.

Everything is set-based SQL over the whole history (a handful of GROUP BYs, window
ranks and one as-of join), never a loop over members. It is DuckDB SQL rather than Ibis
because two steps have no portable Ibis form: the conversion of each sale to its store's
local hour (``timezone(store zone, occurred_at)``) and the as-of join that finds the first
purchase after each message. Both exist in Spark SQL under other names, should the
history outgrow one machine.

Definitions (docs/portraits.md has the full table):

* a **sale** here is a member's sale with a positive net (``sales.net_minor > 0``: what
  the shop kept after refunds booked before the cutoff); the average basket is the mean
  net of those sales. History is the whole history up to the snapshot's cutoff.
* favourite **categories** are ranked by net spend in them (lines still kept after
  refunds), ties by number of lines then id; favourite **products** by units kept.
* preferred **store**, **weekday** (0 = Monday) and **hour** are the most frequent among
  the member's sales (ties: more spend, then the smaller id / the earlier day or hour);
  weekday and hour are in the store's zone. ``weekend_share`` is the share of sales on a
  Saturday or Sunday, ``evening_share`` at or after ``evening_hour``.
* **price sensitivity**: ``promo_share`` is the share of net spend in sales that a coupon
  or a promotion reduced (``sale_discounts`` of kind coupon / promotion; member prices of a
  tier are the standing price of membership and do not count); ``coupon_share`` the share
  of sales with a coupon; ``discount_rate`` all discounts over the list price.
* **channel responsiveness**: marketing messages (SMS or e-mail, sent or delivered) sent in
  the last ``message_window_days`` whose response window of ``response_days`` had ended by
  the cutoff; a message is **acted on** when the member's next sale came within
  ``response_days`` after it. ``best_channel`` is the channel with the higher acted rate
  (at least one acted message; ties to SMS), ``best_template`` the template with most
  acted messages (ties: higher rate, then name).
* **family signals**: a category carries a signal (``baby``, ``kids``, ``pet``, …) when its
  name or code contains one of that signal's keywords (case-insensitive; the keywords are
  ``ProfileConfig.family_keywords``). ``family_share`` is the share of the member's
  category spend in signal categories; ``baby_first_on`` / ``baby_days`` are the first day
  and the number of distinct days the member bought a ``baby`` category.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta

import pyarrow as pa

from patron.analytics.canonical import ts_literal
from patron.analytics.source import Source
from patron.core.errors import ValidationFailed

#: Keywords per family signal, matched case-insensitively inside category names and codes.
DEFAULT_FAMILY_KEYWORDS: Mapping[str, tuple[str, ...]] = {
    "baby": ("baby", "infant", "newborn", "nappy", "nappies", "diaper", "formula",
             "母婴", "婴", "宝宝", "奶粉", "尿布", "尿裤", "纸尿"),
    "kids": ("kids", "child", "toddler", "toy", "儿童", "童装", "玩具", "童"),
    "pet": ("pet", "dog", "cat food", "kitten", "puppy", "宠物", "猫", "狗"),
}


@dataclass(frozen=True)
class ProfileConfig:
    """Knobs of the profile: family keywords, the message response window, evening."""

    family_keywords: Mapping[str, tuple[str, ...]] = field(
        default_factory=lambda: dict(DEFAULT_FAMILY_KEYWORDS))
    response_days: int = 7
    message_window_days: int = 365
    evening_hour: int = 17
    favourites: int = 3

    def __post_init__(self) -> None:
        if not 1 <= self.response_days <= 90:
            raise ValidationFailed("the response window is 1 to 90 days", "response_days")
        if self.message_window_days <= self.response_days:
            raise ValidationFailed("the message window must be longer than the response "
                                   "window", "message_window_days")
        if not 0 <= self.evening_hour <= 23:
            raise ValidationFailed("evening starts at an hour 0-23", "evening_hour")
        if not 1 <= self.favourites <= 10:
            raise ValidationFailed("keep 1 to 10 favourites", "favourites")
        for signal, words in self.family_keywords.items():
            if not signal.isidentifier() or not words or any(not w.strip() for w in words):
                raise ValidationFailed(f"family signal {signal!r} needs a name and keywords",
                                       "family_keywords")


@dataclass(frozen=True)
class Collected:
    """What :func:`collect` found: one row per active member (``table``, ordered by
    member_id; ids as hyphenated text) and the names of the categories."""

    table: pa.Table
    category_names: dict[str, str]
    family_categories: dict[str, tuple[str, ...]]  # category id -> its signals


def family_signals(categories: list[tuple[str, str, str]],
                   keywords: Mapping[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
    """Category id -> the signals whose keywords its name or code contains."""
    found: dict[str, tuple[str, ...]] = {}
    for category_id, code, name in categories:
        text = f"{code} {name}".casefold()
        signals = tuple(sorted(signal for signal, words in keywords.items()
                               if any(w.strip().casefold() in text for w in words)))
        if signals:
            found[category_id] = signals
    return found


def _ranked(key: str, value: str, top: int) -> str:
    """Aggregates pivoting the ``top`` ranked rows of a member into columns ``key_1``,
    ``value_1``, … (``any_value`` with a filter per rank: an ordered ``list()`` aggregate
    sorts inside every group, which was the costliest step of the whole query)."""
    return ", ".join(f"any_value({key}) FILTER (WHERE rank = {r}) AS {key}_{r}, "
                     f"any_value({value}) FILTER (WHERE rank = {r}) AS {value}_{r}"
                     for r in range(1, top + 1))


def _favourites_json(alias: str, key: str, value: str, top: int, shown: str) -> str:
    """The pivoted favourites of :func:`_ranked` as a JSON array of ``{"id", value}``
    objects in rank order (``[]`` without any)."""
    items = ", ".join(
        f"CASE WHEN {alias}.{key}_{r} IS NOT NULL THEN {{'id': CAST({alias}.{key}_{r} AS "
        f"VARCHAR), '{value}': {shown.format(f'{alias}.{value}_{r}')}}} END"
        for r in range(1, top + 1))
    return (f"coalesce(CAST(to_json(list_filter([{items}], x -> x IS NOT NULL)) AS VARCHAR),"
            " '[]')")


def _sql(src: Source, config: ProfileConfig) -> str:
    cutoff = src.cutoff
    since_365 = src.as_of - timedelta(days=365)
    window_start = ts_literal(cutoff - timedelta(days=config.message_window_days))
    window_end = ts_literal(cutoff - timedelta(days=config.response_days))
    top = config.favourites
    return f"""
    WITH basics AS (
        SELECT member_id, count(*) AS sales,
               count(*) FILTER (WHERE occurred_on > DATE '{since_365}') AS sales_365,
               sum(net_minor) AS spend_minor,
               coalesce(sum(net_minor) FILTER (WHERE coupon_used OR promoted), 0) AS promo_minor,
               count(*) FILTER (WHERE coupon_used) AS coupon_sales,
               sum(discount_minor) AS discount_minor, sum(gross_minor) AS gross_minor,
               count(*) FILTER (WHERE weekday >= 5) AS weekend_sales,
               count(*) FILTER (WHERE hour >= {config.evening_hour}) AS evening_sales,
               count(DISTINCT store_id) AS stores
        FROM pf_sales GROUP BY member_id),
    by_store AS (
        SELECT member_id, store_id, count(*) AS n, sum(net_minor) AS spend
        FROM pf_sales GROUP BY member_id, store_id
        QUALIFY row_number() OVER (PARTITION BY member_id
                                   ORDER BY n DESC, spend DESC, store_id) = 1),
    by_weekday AS (
        SELECT member_id, weekday FROM pf_sales GROUP BY member_id, weekday
        QUALIFY row_number() OVER (PARTITION BY member_id
                                   ORDER BY count(*) DESC, sum(net_minor) DESC, weekday) = 1),
    by_hour AS (
        SELECT member_id, hour FROM pf_sales GROUP BY member_id, hour
        QUALIFY row_number() OVER (PARTITION BY member_id
                                   ORDER BY count(*) DESC, sum(net_minor) DESC, hour) = 1),
    by_category AS (
        SELECT member_id, category_id, sum(spend) AS spend, sum(lines) AS lines
        FROM pf_products GROUP BY member_id, category_id HAVING sum(spend) > 0),
    ranked_categories AS (
        SELECT *, spend / sum(spend) OVER (PARTITION BY member_id) AS share,
               row_number() OVER (PARTITION BY member_id
                                  ORDER BY spend DESC, lines DESC, category_id) AS rank
        FROM by_category),
    categories AS (
        SELECT member_id, count(*) AS categories,
               {_ranked("category_id", "share", top)},
               sum(spend) AS category_spend,
               coalesce(sum(spend) FILTER (WHERE category_id IN (
                   SELECT category_id FROM pf_family)), 0) AS family_spend
        FROM ranked_categories GROUP BY member_id),
    products AS (
        SELECT member_id, {_ranked("product_id", "quantity", top)}
        FROM (SELECT member_id, product_id, quantity,
                     row_number() OVER (PARTITION BY member_id ORDER BY quantity DESC,
                                        spend DESC, product_id) AS rank
              FROM pf_products
              QUALIFY rank <= {top})
        GROUP BY member_id),
    family AS (
        SELECT p.member_id,
               string_agg(DISTINCT f.signal, ',' ORDER BY f.signal) AS family_signals
        FROM (SELECT DISTINCT member_id, category_id FROM pf_products) p
        JOIN pf_family f ON f.category_id = p.category_id
        GROUP BY p.member_id),
    sent AS (
        SELECT m.member_id, m.channel, m.template,
               p.occurred_at IS NOT NULL
               AND p.occurred_at <= m.sent_at + INTERVAL {config.response_days} DAY AS acted
        FROM (SELECT * FROM messages WHERE sent_at >= {window_start}
                                       AND sent_at < {window_end}) m
        ASOF LEFT JOIN pf_sales p
          ON p.member_id = m.member_id AND p.occurred_at > m.sent_at),
    channels AS (
        SELECT member_id,
               count(*) FILTER (WHERE channel = 'sms') AS sms_messages,
               count(*) FILTER (WHERE channel = 'sms' AND acted) AS sms_acted,
               count(*) FILTER (WHERE channel = 'email') AS email_messages,
               count(*) FILTER (WHERE channel = 'email' AND acted) AS email_acted
        FROM sent GROUP BY member_id),
    templates AS (
        SELECT member_id, template AS best_template FROM sent
        GROUP BY member_id, template HAVING count(*) FILTER (WHERE acted) > 0
        QUALIFY row_number() OVER (PARTITION BY member_id ORDER BY
            count(*) FILTER (WHERE acted) DESC,
            count(*) FILTER (WHERE acted) / count(*) DESC, template) = 1)
    SELECT CAST(m.member_id AS VARCHAR) AS member_id,
           CAST(m.home_store_id AS VARCHAR) AS home_store_id,
           coalesce(b.sales, 0) AS sales, coalesce(b.sales_365, 0) AS sales_365,
           coalesce(b.spend_minor, 0) AS spend_minor, b.promo_minor, b.coupon_sales,
           b.discount_minor, b.gross_minor, b.weekend_sales, b.evening_sales,
           coalesce(b.stores, 0) AS stores,
           coalesce(c.categories, 0) AS categories,
           CAST(c.category_id_1 AS VARCHAR) AS top_category_id,
           c.share_1 AS top_category_share,
           {_favourites_json("c", "category_id", "share", top, "round({}, 4)")}
               AS favourite_categories,
           c.category_spend, c.family_spend,
           CAST(p.product_id_1 AS VARCHAR) AS top_product_id,
           {_favourites_json("p", "product_id", "quantity", top, "{}")} AS favourite_products,
           CAST(s.store_id AS VARCHAR) AS preferred_store_id, s.n AS preferred_store_sales,
           w.weekday AS preferred_weekday, h.hour AS preferred_hour,
           coalesce(ch.sms_messages, 0) AS sms_messages,
           coalesce(ch.sms_acted, 0) AS sms_acted,
           coalesce(ch.email_messages, 0) AS email_messages,
           coalesce(ch.email_acted, 0) AS email_acted,
           t.best_template,
           coalesce(f.family_signals, '') AS family_signals,
           bb.baby_first_on, coalesce(bb.baby_days, 0) AS baby_days
    FROM members m
    LEFT JOIN basics b ON b.member_id = m.member_id
    LEFT JOIN by_store s ON s.member_id = m.member_id
    LEFT JOIN by_weekday w ON w.member_id = m.member_id
    LEFT JOIN by_hour h ON h.member_id = m.member_id
    LEFT JOIN categories c ON c.member_id = m.member_id
    LEFT JOIN products p ON p.member_id = m.member_id
    LEFT JOIN family f ON f.member_id = m.member_id
    LEFT JOIN pf_baby bb ON bb.member_id = m.member_id
    LEFT JOIN channels ch ON ch.member_id = m.member_id
    LEFT JOIN templates t ON t.member_id = m.member_id
    WHERE m.status = 'active'
    ORDER BY m.member_id"""  # noqa: S608 - dates and integers of ours, no user text


def _utc_offset_sql(src: Source) -> str:
    """SQL for the UTC offset, in seconds, of the store's zone at ``s.occurred_at``.

    A CASE over each store zone's offset changes within the history (from zoneinfo, as
    ``views.local_time`` does) on the sale's epoch second: integer comparisons, where
    DuckDB's per-row ``timezone()`` took 20 s for 10 million sales on this machine.
    """
    from patron.analytics.views import offset_changes

    duck = src.duck
    zones = sorted(z for (z,) in duck.execute("SELECT DISTINCT timezone FROM stores")
                   .fetchall() if z)
    first = duck.execute("SELECT epoch_ms(min(occurred_at)) // 1000 FROM sales").fetchone()
    end_s = int(src.cutoff.timestamp())
    start_s = (int(first[0]) if first and first[0] is not None else end_s) - 86_400
    epoch = "(epoch_ms(s.occurred_at) // 1000)"
    branches = []
    for zone in zones:
        offset, changes = offset_changes(zone, start_s, end_s)
        expr = str(offset)
        if changes:
            steps = [f"WHEN {epoch} < {at} THEN {before}" for (at, _), before in
                     zip(changes, [offset, *(new for _, new in changes[:-1])], strict=True)]
            expr = f"CASE {' '.join(steps)} ELSE {changes[-1][1]} END"
        quoted = zone.replace("'", "''")
        branches.append(f"WHEN '{quoted}' THEN {expr}")
    return f"(CASE st.timezone {' '.join(branches)} ELSE 0 END)" if branches else "0"


def collect(src: Source, config: ProfileConfig | None = None) -> Collected:
    """One row per active member of the source with the profile's raw columns."""
    config = config or ProfileConfig()
    duck = src.duck
    categories = [(str(i), c or "", n or "") for i, c, n in duck.execute(
        "SELECT category_id, code, name FROM categories").fetchall()]
    family = family_signals(categories, config.family_keywords)
    pairs = pa.table({
        "category_id": pa.array([c for c, signals in family.items() for _ in signals],
                                type=pa.string()),
        "signal": pa.array([s for signals in family.values() for s in signals],
                           type=pa.string())})
    duck.register("pf_family_arrow", pairs)
    duck.execute("CREATE OR REPLACE TEMP TABLE pf_family AS SELECT CAST(category_id AS UUID) "
                 "AS category_id, signal FROM pf_family_arrow")
    duck.unregister("pf_family_arrow")
    duck.execute(f"""
        CREATE OR REPLACE TEMP TABLE pf_sales AS
        SELECT s.member_id, s.store_id, s.occurred_at, s.occurred_on, s.net_minor,
               s.gross_minor, s.discount_minor, s.coupon_used, s.promoted,
               CAST(isodow(s.occurred_on) - 1 AS INTEGER) AS weekday,
               CAST((epoch_ms(s.occurred_at) // 1000 + {_utc_offset_sql(src)}) // 3600 % 24
                    AS INTEGER) AS hour
        FROM sales s JOIN stores st ON st.store_id = s.store_id
        WHERE s.member_id IS NOT NULL AND s.net_minor > 0""")  # noqa: S608 - ours
    # one pass over the lines: per member and product (categories are sums of these)
    duck.execute("""
        CREATE OR REPLACE TEMP TABLE pf_products AS
        SELECT member_id, product_id, any_value(category_id) AS category_id,
               sum(quantity) AS quantity, sum(net_minor) AS spend, count(*) AS lines
        FROM lines WHERE member_id IS NOT NULL AND quantity > 0
        GROUP BY member_id, product_id""")
    # days with a baby category: a scan of only those lines (none without such categories)
    baby = sorted(c for c, signals in family.items() if "baby" in signals)
    listed = ", ".join(f"'{c}'" for c in baby) or "NULL"
    duck.execute(f"""
        CREATE OR REPLACE TEMP TABLE pf_baby AS
        SELECT member_id, min(occurred_on) AS baby_first_on,
               count(DISTINCT occurred_on) AS baby_days
        FROM lines
        WHERE member_id IS NOT NULL AND quantity > 0 AND {"true" if baby else "false"}
          AND category_id IN ({listed})
        GROUP BY member_id""")  # noqa: S608 - category ids read from the table, quoted
    table = duck.execute(_sql(src, config)).to_arrow_table()
    for name in ("pf_sales", "pf_products", "pf_baby", "pf_family"):
        duck.execute(f"DROP TABLE IF EXISTS {name}")
    names = {category_id: name or code for category_id, code, name in categories}
    return Collected(table=table, category_names=names, family_categories=family)
