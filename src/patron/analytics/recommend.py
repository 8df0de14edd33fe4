"""Next-best products per member, and "frequently bought together" for a product.

Design overview
---------------
**Next-best products** are item-to-item collaborative filtering (Linden, Smith & York,
"Amazon.com Recommendations: Item-to-Item Collaborative Filtering", *IEEE Internet
Computing* 7(1), 2003) over *member baskets*: the set of products each member bought in
the last ``history_days`` (a basket is the member, not one sale, so products bought on
different visits still count as bought together).

* n_i = members who bought product i; n_ij = members who bought both i and j.
* similarity(i, j) = n_ij / √(n_i · n_j), the cosine of the two products' buyer vectors.
  Raw co-occurrence would recommend the best sellers to everyone and lift would favour
  products a handful of people bought; the cosine sits between the two. Pairs with fewer
  than ``min_common`` shared buyers are dropped as noise, and each product keeps only its
  ``neighbours`` most similar products, which bounds the work per member.
* score(member, j) = Σ similarity(i, j) over the products i in the member's basket: a
  product close to several things the member buys ranks higher. ``because`` names the
  basket product that contributed most (for "because you bought …").
* a product the member bought in the last ``recent_days`` is not recommended, unless it is
  a replenishment item (bought again on a cycle: coffee, pet food, contact lenses); a
  product bought longer ago may come back. Ties go to the more popular product.

**Frequently bought together** is an association rule p → j over *sale baskets* (the
products of one sale, walk-ins included), with N sales in the window:
support = n_pj / N, confidence = n_pj / n_p, lift = confidence / (n_j / N). Products
are ranked by confidence among those bought with p at least ``min_common`` times and
with lift above ``min_lift`` (by default 1: more often with p than on their own), so a
best seller that is in every basket anyway is not offered as a companion.

**Precomputed**: the nightly refresh stores every member's top products
(``precompute``, written by ``aggregates`` to ``next_best_products``), so the member page
and templates read a few rows (``next_best``); only when the latest snapshot has no such
rows (none yet, or written before they existed) is one member's list computed on demand.

Everything is one Ibis expression per call (a self-join of baskets on the member or the
sale, group-bys and window ranks), executed by the engine: no Python loop over pairs.
Lines are canonical ``lines`` rows; a line counts when its kept ``quantity`` is positive
(a line refunded in full was not bought). Dates are the lines' local ``occurred_on``.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import ibis
import ibis.expr.types as ir
import pyarrow as pa
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from patron.analytics import source, views
from patron.analytics.tables import AnalyticsRun, NextBestProduct
from patron.core.clock import Clock, local_today
from patron.core.db import Database
from patron.core.errors import FieldProblem, ValidationFailed

Id = uuid.UUID | str


@dataclass(frozen=True)
class Recommendation:
    """A product for a member, its score, its rank (1 = best) and the product behind it."""

    product_id: str
    score: float
    rank: int
    because: str


@dataclass(frozen=True)
class Companion:
    """A product bought together with the asked-for product (see the module docstring)."""

    product_id: str
    together: int
    support: float
    confidence: float
    lift: float


@dataclass(frozen=True)
class RecommendSettings:
    """Tuning of next-best products; the defaults suit a shop with a year of history."""

    top_n: int = 10
    history_days: int = 365
    recent_days: int = 90
    min_common: int = 2
    neighbours: int = 50

    def validate(self) -> None:
        problems = []
        if not 1 <= self.top_n <= 100:
            problems.append(FieldProblem("top_n", "between 1 and 100 products"))
        if not 1 <= self.history_days <= 3660:
            problems.append(FieldProblem("history_days", "between 1 and 3660 days"))
        if not 0 <= self.recent_days <= self.history_days:
            problems.append(FieldProblem("recent_days",
                                         "between 0 and the history's length in days"))
        if self.min_common < 1:
            problems.append(FieldProblem("min_common", "at least one shared buyer"))
        if not 1 <= self.neighbours <= 1000:
            problems.append(FieldProblem("neighbours", "between 1 and 1000 products"))
        if problems:
            raise ValidationFailed(problems[0].message, problems[0].field, problems=problems)


def _key(column: ir.Value) -> ir.StringValue:
    """Ids as text, so UUID columns and string inputs compare the same everywhere."""
    key: ir.StringValue = column.cast("string")
    return key


def bought_lines(lines: ir.Table, *, as_of: date, days: int, tz: str = "UTC") -> ir.Table:
    """Lines kept (quantity > 0) on local days (as_of − days, as_of], with ``day``.

    ``tz`` only matters for lines without the canonical ``occurred_on``."""
    period = views.Period(as_of - timedelta(days=days - 1), as_of)
    kept = views.sales_in(lines, period, tz)
    kept = kept.filter(kept.quantity > 0)
    return kept.mutate(day=views.sale_day(kept, tz, around=period))


def member_baskets(lines: ir.Table, *, as_of: date, history_days: int,
                   tz: str = "UTC") -> ir.Table:
    """(member_id, product_id, last_on): what each member bought in the window, and when
    they last bought it. Ids are text."""
    kept = bought_lines(lines, as_of=as_of, days=history_days, tz=tz)
    kept = kept.filter(kept.member_id.notnull())
    return kept.group_by(member_id=_key(kept.member_id),
                         product_id=_key(kept.product_id)).aggregate(last_on=kept.day.max())


def item_similarity(baskets: ir.Table, *, min_common: int = 2, neighbours: int = 50,
                    anchors: ir.Table | None = None) -> ir.Table:
    """(product_id, other_id, common, similarity): each product's closest products.

    ``baskets`` has member_id and product_id. With ``anchors`` (a table of product_id),
    only the rows of those products are computed: what one member's page needs.
    """
    pairs_left = baskets.select("member_id", "product_id")
    if anchors is not None:
        pairs_left = pairs_left.semi_join(anchors, "product_id")
    right = baskets.select(member_id_r=baskets.member_id, other_id=baskets.product_id)
    pairs = pairs_left.join(right, pairs_left.member_id == right.member_id_r)
    pairs = pairs.filter(pairs.product_id != pairs.other_id)
    common = pairs.group_by(["product_id", "other_id"]).aggregate(common=pairs.count())
    common = common.filter(common.common >= min_common)
    buyers = popularity(baskets)
    a = buyers.select(product_id=buyers.product_id, n_i=buyers.buyers)
    b = buyers.select(other_id=buyers.product_id, n_j=buyers.buyers)
    scored = common.join(a, "product_id").join(b, "other_id")
    scored = scored.mutate(similarity=scored.common.cast("float64")
                           / (scored.n_i.cast("float64") * scored.n_j).sqrt())
    ranked = scored.mutate(rank=ibis.row_number().over(ibis.window(
        group_by="product_id",
        order_by=[ibis.desc(scored.similarity), ibis.desc(scored.n_j), scored.other_id])))
    ranked = ranked.filter(ranked["rank"] < neighbours)
    return ranked.select("product_id", "other_id", "common", "similarity")


def popularity(baskets: ir.Table) -> ir.Table:
    """(product_id, buyers): how many members bought each product."""
    return baskets.group_by("product_id").aggregate(buyers=baskets.count())


def recommendations(lines: ir.Table, *, as_of: date, member_ids: Collection[Id] | None = None,
                    replenishable: Collection[Id] = (), tz: str = "UTC",
                    settings: RecommendSettings | None = None) -> ir.Table:
    """Top-N next-best products for every member (or ``member_ids``), as an expression.

    Columns: member_id, product_id, score, rank (1 = best), because. Execute it (or
    write it out) on the tables' backend; ``recommend_for_member`` does this for one
    member. ``replenishable`` product ids stay recommendable right after a purchase.
    """
    settings = settings or RecommendSettings()
    settings.validate()
    baskets = member_baskets(lines, as_of=as_of, history_days=settings.history_days, tz=tz)
    history = baskets
    if member_ids is not None:
        history = baskets.filter(baskets.member_id.isin([str(m) for m in member_ids]))
    anchors = history.select("product_id").distinct() if member_ids is not None else None
    similar = item_similarity(baskets, min_common=settings.min_common,
                              neighbours=settings.neighbours, anchors=anchors)
    candidates = history.join(similar, "product_id")
    scored = candidates.group_by(member_id=candidates.member_id,
                                 product_id=candidates.other_id).aggregate(
        score=candidates.similarity.sum(),
        because=candidates.product_id.argmax(candidates.similarity))

    recent_since = as_of - timedelta(days=settings.recent_days - 1)
    recent = history.filter(history.last_on >= recent_since) if settings.recent_days else \
        history.filter(ibis.literal(False))
    wanted_again = [str(p) for p in replenishable]
    if wanted_again:
        recent = recent.filter(~recent.product_id.isin(wanted_again))
    scored = scored.anti_join(recent.select("member_id", "product_id"),
                              ["member_id", "product_id"])
    scored = scored.join(popularity(baskets), "product_id")
    # ranked on the score rounded to 9 places: a sum of similarities depends in its last
    # bits on the order the engine adds them in, and equal scores must tie the same way
    # in the nightly batch and in one member's query (then popularity, then the id decide)
    ranked = scored.mutate(rank=ibis.row_number().over(ibis.window(
        group_by="member_id",
        order_by=[ibis.desc(scored.score.round(9)), ibis.desc(scored.buyers),
                  scored.product_id])) + 1)
    ranked = ranked.filter(ranked["rank"] <= settings.top_n)
    return ranked.select("member_id", "product_id", "score", "rank", "because")


def recommend_for_member(lines: ir.Table, member_id: Id, *, as_of: date,
                         replenishable: Collection[Id] = (), tz: str = "UTC",
                         settings: RecommendSettings | None = None) -> list[Recommendation]:
    """The member page's next-best products (empty for a member without history)."""
    table = recommendations(lines, as_of=as_of, member_ids=[member_id],
                            replenishable=replenishable, tz=tz, settings=settings)
    rows: list[dict[str, Any]] = table.order_by("rank").to_pyarrow().to_pylist()
    return [Recommendation(product_id=r["product_id"], score=float(r["score"]),
                           rank=int(r["rank"]), because=r["because"]) for r in rows]


def frequently_bought_together(lines: ir.Table, product_id: Id, *, as_of: date,
                               history_days: int = 365, top_n: int = 10,
                               min_common: int = 2, min_lift: float = 1.0,
                               tz: str = "UTC") -> list[Companion]:
    """Products most often in the same sale as ``product_id`` (association rules)."""
    if not 1 <= top_n <= 100:
        raise ValidationFailed("between 1 and 100 products", "top_n")
    if not 1 <= history_days <= 3660:
        raise ValidationFailed("between 1 and 3660 days", "history_days")
    if min_common < 1:
        raise ValidationFailed("at least one shared sale", "min_common")
    kept = bought_lines(lines, as_of=as_of, days=history_days, tz=tz)
    baskets = kept.select(sale_id=_key(kept.sale_id),
                          product_id=_key(kept.product_id)).distinct()
    wanted = str(product_id)
    with_p = baskets.filter(baskets.product_id == wanted).select(sale_id_p=baskets.sale_id)
    together = baskets.join(with_p, baskets.sale_id == with_p.sale_id_p)
    together = together.filter(together.product_id != wanted)
    pair = together.group_by("product_id").aggregate(together=together.count())
    pair = pair.filter(pair.together >= min_common)
    counts = baskets.group_by("product_id").aggregate(n_j=baskets.count())
    totals = baskets.aggregate(n=baskets.sale_id.nunique(),
                               n_p=baskets.sale_id.nunique(
                                   where=baskets.product_id == wanted))
    rules = pair.join(counts, "product_id").cross_join(totals)
    n = rules.n.cast("float64")
    rules = rules.mutate(support=rules.together / n,
                         confidence=rules.together / rules.n_p.cast("float64"),
                         lift=(rules.together * n) / (rules.n_p * rules.n_j).cast("float64"))
    rules = rules.filter(rules.lift > min_lift).order_by(
        [ibis.desc(rules.confidence), ibis.desc(rules.lift), rules.product_id]).limit(top_n)
    rows: list[dict[str, Any]] = rules.to_pyarrow().to_pylist()
    return [Companion(product_id=r["product_id"], together=int(r["together"]),
                      support=float(r["support"]), confidence=float(r["confidence"]),
                      lift=float(r["lift"])) for r in rows]


def replenishable_products(products: ir.Table, categories: ir.Table) -> frozenset[str]:
    """Ids of products whose category has a replenishment cycle (``replenish_days``)."""
    cycled = categories.filter(categories.replenish_days.notnull()).select("category_id")
    found = products.semi_join(cycled, "category_id").select(
        product_id=_key(products.product_id))
    return frozenset(str(r["product_id"]) for r in found.to_pyarrow().to_pylist())


# ---------------------------------------------------------------- precomputed


def precompute(src: source.Source, *, as_of: date, tz: str, top_n: int) -> pa.Table:
    """Every member's top ``top_n`` products as of ``as_of`` from an open Source (with
    ``lines``, ``products`` and ``categories``): member_id, product_id, score, rank,
    because, ids as text. The refresh's step; ``aggregates`` writes the rows."""
    again = replenishable_products(src.products, src.categories)
    table: pa.Table = recommendations(src.lines, as_of=as_of, replenishable=again, tz=tz,
                                      settings=RecommendSettings(top_n=top_n)).to_pyarrow()
    return table


def stored_next_best(session: Session, *, member_id: uuid.UUID, top_n: int = 10
                     ) -> list[Recommendation] | None:
    """The member's precomputed products of the latest snapshot, best first; None when
    that snapshot has none for anybody (so the caller computes them on demand)."""
    day = session.scalar(select(func.max(AnalyticsRun.as_of))
                         .where(AnalyticsRun.status == "succeeded"))
    if day is None:
        return None
    n = NextBestProduct
    rows = list(session.scalars(select(n).where(n.as_of == day, n.member_id == member_id)
                                .order_by(n.rank).limit(top_n)))
    if not rows:
        written = session.scalar(select(n.member_id).where(n.as_of == day).limit(1))
        return [] if written is not None else None
    return [Recommendation(product_id=str(r.product_id), score=float(r.score), rank=r.rank,
                           because=str(r.because_id) if r.because_id else "")
            for r in rows]


def next_best(session: Session, db: Database, member_id: uuid.UUID, *, clock: Clock,
              tz: str, top_n: int = 5) -> list[Recommendation]:
    """A member's next-best products: the latest snapshot's (``stored_next_best``), or,
    when it has none, computed now from the history to date (today in ``tz``)."""
    found = stored_next_best(session, member_id=member_id, top_n=top_n)
    if found is not None:
        return found
    as_of = local_today(clock, tz)
    with source.open_source(db, as_of=as_of, timezone=tz,
                            tables=["lines", "products", "categories"]) as src:
        again = replenishable_products(src.products, src.categories)
        return recommend_for_member(src.lines, member_id, as_of=as_of, replenishable=again,
                                    tz=tz, settings=RecommendSettings(top_n=top_n))
