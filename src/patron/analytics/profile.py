"""Each member's inferred profile, summarised from the canonical tables in one pass.

Design overview
---------------
:func:`collect` turns a ``source.Source`` (the snapshot's canonical tables in DuckDB) into
one Arrow row per active member with what a shop owner would want to know about them:
what they buy (favourite categories and products), where and when (preferred store,
weekday and hour in the store's own time zone), how much per visit, how price-sensitive
they are, which messages they act on, and family signals. ``tags`` and ``portraits``
build on these rows together with the member's scores.

Everything is set-based SQL over the whole history (a handful of GROUP BYs and one as-of
join), never a loop over members. Members, stores, products and categories are numbered
with dense integer keys in id order first, so the grouped passes hash small integers
instead of UUIDs, each wide column of sales and lines is read once (the sales pass, the
one pass over the lines), and a tie settled by "the smaller id" is settled by the smaller
key; the top-n choices (favourites, preferred store, weekday and hour) are ``arg_max`` over
a struct of the ranking columns rather than window ranks. ``tests/analytics`` compares the
result, column by column, with the straightforward form (one statement of window ranks
and joins on ids) on histories full of ties. It is DuckDB SQL rather than Ibis
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
        if len(self.family_keywords) > 62:  # a member's signals are bits of a BIGINT
            raise ValidationFailed("at most 62 family signals", "family_keywords")
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


def _steps(src: Source, config: ProfileConfig, baby: int) -> list[tuple[str, str]]:
    """The passes of :func:`collect`, in order: (temporary table, its SELECT).

    Members, stores, products and categories get dense integer keys numbered in id order
    (so "the smaller id" of a tie is "the smaller key"); the grouped passes run on those
    keys, and ids come back only for the few rows that are shown. Top-n choices are
    ``arg_max`` over a struct of the ranking columns (a per-group heap instead of a window
    sort). ``baby`` is the bit of the ``baby`` signal in a category's ``mask`` (0: none).
    """
    since_365 = src.as_of - timedelta(days=365)
    window_start = ts_literal(src.cutoff - timedelta(days=config.message_window_days))
    window_end = ts_literal(src.cutoff - timedelta(days=config.response_days))
    top = config.favourites
    return [
        ("pf_members", """
            SELECT CAST(row_number() OVER (ORDER BY member_id) - 1 AS INTEGER) AS mk,
                   member_id, home_store_id
            FROM members WHERE status = 'active'"""),
        ("pf_stores", """
            SELECT CAST(row_number() OVER (ORDER BY store_id) - 1 AS INTEGER) AS sk,
                   store_id, timezone
            FROM stores"""),
        ("pf_category_keys", """
            SELECT CAST(row_number() OVER (ORDER BY c.category_id) - 1 AS INTEGER) AS ck,
                   c.category_id, coalesce(f.mask, 0) AS mask
            FROM (SELECT DISTINCT category_id FROM products) c
            LEFT JOIN pf_family f ON f.category_id = c.category_id"""),
        ("pf_product_keys", """
            SELECT CAST(row_number() OVER (ORDER BY p.product_id) - 1 AS INTEGER) AS pk,
                   p.product_id, c.ck, c.mask
            FROM products p JOIN pf_category_keys c
              ON c.category_id IS NOT DISTINCT FROM p.category_id"""),
        # the members' sales with a positive net, weekday and hour in the store's zone
        ("pf_sales", f"""
            SELECT m.mk, s_k.sk, s.occurred_at, s.occurred_on, s.net_minor, s.gross_minor,
                   s.discount_minor, s.coupon_used, s.promoted,
                   CAST(isodow(s.occurred_on) - 1 AS INTEGER) AS weekday,
                   CAST((epoch_ms(s.occurred_at) // 1000 + {_utc_offset_sql(src, "s_k")})
                        // 3600 % 24 AS INTEGER) AS hour
            FROM sales s
            JOIN pf_members m ON m.member_id = s.member_id
            JOIN pf_stores s_k ON s_k.store_id = s.store_id
            WHERE s.net_minor > 0"""),  # noqa: S608 - ours
        # per member and store the summable figures; per member their sums and the
        # preferred store (most sales, then more spend, then the smaller id)
        ("pf_by_store", f"""
            SELECT mk, sk, count(*) AS n,
                   count(*) FILTER (WHERE occurred_on > DATE '{since_365}') AS n_365,
                   sum(net_minor) AS spend,
                   sum(net_minor) FILTER (WHERE coupon_used OR promoted) AS promo,
                   count(*) FILTER (WHERE coupon_used) AS coupon_sales,
                   sum(discount_minor) AS discount, sum(gross_minor) AS gross,
                   count(*) FILTER (WHERE weekday >= 5) AS weekend_sales,
                   count(*) FILTER (WHERE hour >= {config.evening_hour}) AS evening_sales
            FROM pf_sales GROUP BY mk, sk"""),  # noqa: S608 - ours
        ("pf_basics", """
            SELECT b.mk, CAST(sum(b.n) AS BIGINT) AS sales,
                   CAST(sum(b.n_365) AS BIGINT) AS sales_365, sum(b.spend) AS spend_minor,
                   coalesce(sum(b.promo), 0) AS promo_minor,
                   CAST(sum(b.coupon_sales) AS BIGINT) AS coupon_sales,
                   sum(b.discount) AS discount_minor, sum(b.gross) AS gross_minor,
                   CAST(sum(b.weekend_sales) AS BIGINT) AS weekend_sales,
                   CAST(sum(b.evening_sales) AS BIGINT) AS evening_sales,
                   count(*) AS stores,
                   arg_max({'id': s_k.store_id, 'n': b.n},
                           {'n': b.n, 'spend': b.spend, 'key': -b.sk}) AS store
            FROM pf_by_store b JOIN pf_stores s_k ON s_k.sk = b.sk
            GROUP BY b.mk"""),
        # preferred weekday and hour: most sales, then more spend, then the earlier one
        ("pf_when", """
            SELECT mk,
                   arg_max(weekday, {'n': n, 'spend': spend, 'key': -weekday})
                       FILTER (WHERE by_weekday) AS preferred_weekday,
                   arg_max(hour, {'n': n, 'spend': spend, 'key': -hour})
                       FILTER (WHERE NOT by_weekday) AS preferred_hour
            FROM (SELECT mk, weekday, hour, grouping(hour) = 1 AS by_weekday,
                         count(*) AS n, sum(net_minor) AS spend
                  FROM pf_sales GROUP BY GROUPING SETS ((mk, weekday), (mk, hour)))
            GROUP BY mk"""),
        # the one pass over the lines: per member and product (categories are sums of
        # these), and per member and day with a baby category (signals by product)
        ("pf_products", f"""
            SELECT mk, pk, baby_on, grouping(pk) = 1 AS by_day, any_value(ck) AS ck,
                   sum(quantity) AS quantity, sum(net_minor) AS spend, count(*) AS lines
            FROM (SELECT m.mk, p.pk, p.ck, l.quantity, l.net_minor,
                         CASE WHEN p.mask & {baby} <> 0 THEN l.occurred_on END AS baby_on
                  FROM lines l
                  JOIN pf_members m ON m.member_id = l.member_id
                  JOIN pf_product_keys p ON p.product_id = l.product_id
                  WHERE l.quantity > 0)
            GROUP BY GROUPING SETS ((mk, pk), (mk, baby_on))"""),  # noqa: S608 - ours
        ("pf_baby", """
            SELECT mk, min(baby_on) AS baby_first_on, count(*) AS baby_days
            FROM pf_products WHERE by_day AND baby_on IS NOT NULL GROUP BY mk"""),
        # favourite products: most units, then more spend, then the smaller id
        ("pf_top_products", f"""
            SELECT p.mk,
                   arg_max({{'id': k.product_id, 'quantity': p.quantity}},
                           {{'quantity': p.quantity, 'spend': p.spend, 'key': -p.pk}},
                           {top}) AS top
            FROM pf_products p JOIN pf_product_keys k ON k.pk = p.pk
            WHERE NOT p.by_day
            GROUP BY p.mk"""),  # noqa: S608 - ours
        ("pf_by_category", """
            SELECT p.mk, p.ck, any_value(c.category_id) AS category_id,
                   any_value(c.mask) AS mask, sum(p.spend) AS spend, sum(p.lines) AS lines
            FROM pf_products p JOIN pf_category_keys c ON c.ck = p.ck
            WHERE NOT p.by_day
            GROUP BY p.mk, p.ck"""),
        # categories with a positive spend, favourites by more net spend, then more
        # lines, then the smaller id; family signals from every category bought
        ("pf_categories", f"""
            SELECT mk, count(*) FILTER (WHERE spend > 0) AS categories,
                   sum(spend) FILTER (WHERE spend > 0) AS category_spend,
                   CASE WHEN count(*) FILTER (WHERE spend > 0) > 0 THEN
                       coalesce(sum(spend) FILTER (WHERE spend > 0 AND mask <> 0), 0)
                   END AS family_spend,
                   arg_max({{'id': category_id, 'spend': spend}},
                           {{'spend': spend, 'lines': lines, 'key': -ck}}, {top})
                       FILTER (WHERE spend > 0) AS top,
                   bit_or(mask) AS signals
            FROM pf_by_category GROUP BY mk"""),  # noqa: S608 - ours
        # marketing messages whose response window is over, acted on when the member's
        # next purchase came within it: an as-of join on the member's later sales
        ("pf_sent", f"""
            SELECT m.mk, m.channel, m.template,
                   p.occurred_at IS NOT NULL
                   AND p.occurred_at <= m.sent_at + INTERVAL {config.response_days} DAY
                       AS acted
            FROM (SELECT k.mk, x.channel, x.template, x.sent_at
                  FROM messages x JOIN pf_members k ON k.member_id = x.member_id
                  WHERE x.sent_at >= {window_start} AND x.sent_at < {window_end}) m
            ASOF LEFT JOIN (SELECT mk, occurred_at FROM pf_sales
                            WHERE occurred_at > {window_start}) p
              ON p.mk = m.mk AND p.occurred_at > m.sent_at"""),  # noqa: S608 - ours
        ("pf_channels", """
            SELECT mk,
                   count(*) FILTER (WHERE channel = 'sms') AS sms_messages,
                   count(*) FILTER (WHERE channel = 'sms' AND acted) AS sms_acted,
                   count(*) FILTER (WHERE channel = 'email') AS email_messages,
                   count(*) FILTER (WHERE channel = 'email' AND acted) AS email_acted
            FROM pf_sent GROUP BY mk"""),
        # the template with most acted messages, then the higher rate, then the name
        ("pf_templates", """
            SELECT mk, template AS best_template FROM pf_sent
            GROUP BY mk, template HAVING count(*) FILTER (WHERE acted) > 0
            QUALIFY row_number() OVER (PARTITION BY mk ORDER BY
                count(*) FILTER (WHERE acted) DESC,
                count(*) FILTER (WHERE acted) / count(*) DESC, template) = 1"""),
    ]


def _final_sql(signals: list[str]) -> str:
    """The collected row per active member, in member id order, from the passes."""
    names = "[" + ", ".join("'" + s.replace("'", "''") + "'" for s in signals) + "]"
    return f"""
    SELECT CAST(m.member_id AS VARCHAR) AS member_id,
           CAST(m.home_store_id AS VARCHAR) AS home_store_id,
           coalesce(b.sales, 0) AS sales, coalesce(b.sales_365, 0) AS sales_365,
           coalesce(b.spend_minor, 0) AS spend_minor, b.promo_minor, b.coupon_sales,
           b.discount_minor, b.gross_minor, b.weekend_sales, b.evening_sales,
           coalesce(b.stores, 0) AS stores,
           coalesce(c.categories, 0) AS categories,
           CAST(c.top[1].id AS VARCHAR) AS top_category_id,
           c.top[1].spend / c.category_spend AS top_category_share,
           coalesce(CAST(to_json(list_transform(
               list_filter(c.top, x -> x.id IS NOT NULL),
               x -> {{'id': CAST(x.id AS VARCHAR),
                     'share': round(x.spend / c.category_spend, 4)}})) AS VARCHAR), '[]')
               AS favourite_categories,
           c.category_spend, c.family_spend,
           CAST(p.top[1].id AS VARCHAR) AS top_product_id,
           coalesce(CAST(to_json(list_transform(
               p.top, x -> {{'id': CAST(x.id AS VARCHAR), 'quantity': x.quantity}}))
               AS VARCHAR), '[]') AS favourite_products,
           CAST(b.store.id AS VARCHAR) AS preferred_store_id,
           b.store.n AS preferred_store_sales,
           w.preferred_weekday, w.preferred_hour,
           coalesce(ch.sms_messages, 0) AS sms_messages,
           coalesce(ch.sms_acted, 0) AS sms_acted,
           coalesce(ch.email_messages, 0) AS email_messages,
           coalesce(ch.email_acted, 0) AS email_acted,
           t.best_template,
           coalesce(array_to_string(list_filter({names},
               (x, i) -> (c.signals >> (i - 1)) & 1 = 1), ','), '') AS family_signals,
           bb.baby_first_on, coalesce(bb.baby_days, 0) AS baby_days
    FROM pf_members m
    LEFT JOIN pf_basics b ON b.mk = m.mk
    LEFT JOIN pf_when w ON w.mk = m.mk
    LEFT JOIN pf_categories c ON c.mk = m.mk
    LEFT JOIN pf_top_products p ON p.mk = m.mk
    LEFT JOIN pf_baby bb ON bb.mk = m.mk
    LEFT JOIN pf_channels ch ON ch.mk = m.mk
    LEFT JOIN pf_templates t ON t.mk = m.mk
    ORDER BY m.mk"""  # noqa: S608 - signal names of the configuration, quoted


def _utc_offset_sql(src: Source, stores: str) -> str:
    """SQL for the UTC offset, in seconds, of the zone of the store ``stores`` (an alias of
    a table with ``timezone``) at ``s.occurred_at``.

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
    return f"(CASE {stores}.timezone {' '.join(branches)} ELSE 0 END)" if branches else "0"


def collect(src: Source, config: ProfileConfig | None = None) -> Collected:
    """One row per active member of the source with the profile's raw columns."""
    config = config or ProfileConfig()
    duck = src.duck
    categories = [(str(i), c or "", n or "") for i, c, n in duck.execute(
        "SELECT category_id, code, name FROM categories").fetchall()]
    family = family_signals(categories, config.family_keywords)
    signals = sorted(config.family_keywords)
    bit = {signal: 1 << i for i, signal in enumerate(signals)}
    masks = pa.table({
        "category_id": pa.array(list(family), type=pa.string()),
        "mask": pa.array([sum(bit[s] for s in found) for found in family.values()],
                         type=pa.int64())})
    duck.register("pf_family_arrow", masks)
    duck.execute("CREATE OR REPLACE TEMP TABLE pf_family AS SELECT CAST(category_id AS UUID) "
                 "AS category_id, mask FROM pf_family_arrow")
    duck.unregister("pf_family_arrow")
    steps = _steps(src, config, bit.get("baby", 0))
    try:
        for name, select in steps:
            duck.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS {select}")
        table = duck.execute(_final_sql(signals)).to_arrow_table()
    finally:
        for name in ("pf_family", *(name for name, _ in steps)):
            duck.execute(f"DROP TABLE IF EXISTS {name}")
    names = {category_id: name or code for category_id, code, name in categories}
    return Collected(table=table, category_names=names, family_categories=family)
