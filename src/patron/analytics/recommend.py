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

Everything on demand is one Ibis expression per call (a self-join of baskets on the
member or the sale, group-bys and window ranks), executed by the engine: no Python loop
over pairs. The nightly batch for every member (``precompute``) takes only the member
baskets from the engine and does the rest in NumPy/SciPy on dense integer keys
(``top_products``): the self-join over every member's basket and the member × neighbour
candidates were most of the refresh's dashboard hook (68 of 85 s at 100 k members), and
as sparse matrix products they cost a few seconds. The picks are the engine query's.
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
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from scipy import sparse
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
    # grouped by the ids as they are, then turned into text: one cast a basket row, not
    # one a line, and a smaller key to hash (UUIDs: 16 bytes, not 36 characters)
    baskets = kept.group_by(["member_id", "product_id"]).aggregate(last_on=kept.day.max())
    return baskets.select(member_id=_key(baskets.member_id),
                          product_id=_key(baskets.product_id), last_on=baskets.last_on)


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
    # ``because``: the basket product most similar to the pick; of equally similar ones
    # the smallest id, so that every engine (and ``top_products``) names the same one
    candidates = candidates.mutate(best=candidates.similarity.max().over(
        ibis.window(group_by=[candidates.member_id, candidates.other_id])))
    scored = candidates.group_by(member_id=candidates.member_id,
                                 product_id=candidates.other_id).aggregate(
        score=candidates.similarity.sum(),
        because=candidates.product_id.min(where=candidates.similarity == candidates.best))

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

#: Members whose candidate scores are held in memory at once by ``top_products``.
MEMBER_CHUNK = 20_000
PICKS_SCHEMA = pa.schema([("member_id", pa.string()), ("product_id", pa.string()),
                          ("score", pa.float64()), ("rank", pa.int64()),
                          ("because", pa.string())])


def precompute(src: source.Source, *, as_of: date, tz: str, top_n: int) -> pa.Table:
    """Every member's top ``top_n`` products as of ``as_of`` from an open Source (with
    ``lines``, ``products`` and ``categories``): member_id, product_id, score, rank,
    because, ids as text. The refresh's step; ``aggregates`` writes the rows.

    The engine reads the lines once into member baskets; the rest is ``top_products``
    in NumPy, the same picks as ``recommendations`` (a test compares them) at a fraction
    of the cost of the self-join over every member."""
    settings = RecommendSettings(top_n=top_n)
    settings.validate()
    again = replenishable_products(src.products, src.categories)
    baskets: pa.Table = member_baskets(src.lines, as_of=as_of,
                                       history_days=settings.history_days,
                                       tz=tz).to_pyarrow()
    return top_products(baskets, as_of=as_of, replenishable=again, settings=settings)


def top_products(baskets: pa.Table, *, as_of: date, replenishable: Collection[Id] = (),
                 settings: RecommendSettings | None = None) -> pa.Table:
    """``recommendations`` of every member, computed in NumPy/SciPy from the member
    baskets (``member_baskets``, as Arrow: member_id, product_id, last_on).

    Products and members become dense integer keys numbered in the order of their ids
    (``_sorted_keys``: "the smaller id" is "the smaller key", and the picks come out by
    member id, then rank, the order ``aggregates`` writes them); the baskets a sparse
    members × products 0/1 matrix B. Then, as in the module docstring: co-occurrence BᵀB, the
    cosine, each product's ``neighbours`` best (similarity, then buyers, then id); the
    similarity matrix S keeps only those. A chunk of members at a time, B·S gives every
    candidate's score; the recent purchases are dropped and each member's top ``top_n``
    taken in the order ``recommendations`` ranks them (the score rounded to 9 places as
    the engine rounds it, buyers, id: ``_top_in_groups``, a selection rather than a sort
    of every candidate), and ``because`` is the basket product with the largest
    similarity to the pick (the smallest id among equals). Scores are the same
    sums up to the order of addition (last bits).
    """
    settings = settings or RecommendSettings()
    settings.validate()
    if baskets.num_rows == 0:
        return PICKS_SCHEMA.empty_table()
    product_ids, prod = _sorted_keys(baskets.column("product_id"))
    member_ids, memb = _sorted_keys(baskets.column("member_id"))
    n_products, n_members = len(product_ids), len(member_ids)
    bought = sparse.csr_array((np.ones(len(prod), np.int64), (memb, prod)),
                              shape=(n_members, n_products))
    bought.sum_duplicates()  # canonical: sorted products in each member's row
    buyers = np.bincount(prod, minlength=n_products).astype(np.int64)

    # item-to-item similarity, each product's best ``neighbours``
    common = sparse.coo_array(bought.T @ bought)
    i, j, n_ij = common.row.astype(np.int64), common.col.astype(np.int64), common.data
    keep = (i != j) & (n_ij >= settings.min_common)
    i, j, n_ij = i[keep], j[keep], n_ij[keep]
    similarity = n_ij.astype(np.float64) / np.sqrt(
        buyers[i].astype(np.float64) * buyers[j].astype(np.float64))
    order = np.lexsort((j, -buyers[j], -similarity, i))
    i, j, similarity = i[order], j[order], similarity[order]
    first = np.searchsorted(i, i, side="left")
    near = np.arange(len(i)) - first < settings.neighbours
    similar = sparse.csr_array((similarity[near], (i[near], j[near])),
                               shape=(n_products, n_products))

    # what each member bought recently (and is not to be offered again), as a 0/1 matrix
    recent_since = as_of - timedelta(days=settings.recent_days - 1)
    last_on = baskets.column("last_on").cast(pa.date32()).to_numpy(zero_copy_only=False)
    again = np.isin(product_ids.to_numpy(zero_copy_only=False),
                    np.array(sorted(str(p) for p in replenishable), dtype=object))
    recent = (last_on >= np.datetime64(recent_since, "D")) & ~again[prod] \
        if settings.recent_days else np.zeros(len(prod), bool)
    recent_bought = sparse.csr_array(
        (np.ones(int(recent.sum()), bool), (memb[recent], prod[recent])),
        shape=(n_members, n_products))

    # popularity order of the products: buyers desc, then the smaller key (the tie-break
    # of equal rounded scores), as one integer per product
    by_popularity = np.lexsort((np.arange(n_products), -buyers))
    popular = np.empty(n_products, np.int64)
    popular[by_popularity] = np.arange(n_products)

    rows: list[np.ndarray] = []
    picks: list[np.ndarray] = []
    scores: list[np.ndarray] = []
    ranks: list[np.ndarray] = []
    reasons: list[np.ndarray] = []
    bought_f = bought.astype(np.float64)
    dense = similar.toarray() if n_products <= DENSE_LOOKUP_PRODUCTS else None
    for lo in range(0, n_members, MEMBER_CHUNK):
        hi = min(lo + MEMBER_CHUNK, n_members)
        scored = sparse.csr_array(bought_f[lo:hi] @ similar)  # no duplicate entries
        # the recent purchases dropped: their scores minus themselves are exact zeros,
        # left out (every other score is a sum of similarities > 0, and minus nothing)
        scored = scored - scored * recent_bought[lo:hi]
        scored.eliminate_zeros()
        m = np.repeat(np.arange(lo, hi, dtype=np.int64), np.diff(scored.indptr))
        p = scored.indices.astype(np.int64)
        value = scored.data
        at, rank = _top_in_groups(m, _round9_units(value), popular[p], n_products,
                                  settings.top_n)
        rows.append(m[at])
        picks.append(p[at])
        scores.append(value[at])
        ranks.append(rank)
        reasons.append(_because(bought, similar, m[at], p[at], dense))
    return pa.table({
        "member_id": member_ids.take(pa.array(np.concatenate(rows))),
        "product_id": product_ids.take(pa.array(np.concatenate(picks))),
        "score": pa.array(np.concatenate(scores), pa.float64()),
        "rank": pa.array(np.concatenate(ranks), pa.int64()),
        "because": product_ids.take(pa.array(np.concatenate(reasons))),
    }, schema=PICKS_SCHEMA)


def _sorted_keys(column: pa.ChunkedArray) -> tuple[pa.Array, np.ndarray]:
    """(the distinct ids in ascending order, each row's id as its index there): one hash
    pass (a dictionary encoding) and a sort of the distinct ids only. Members too are
    numbered in id order: a member's picks do not depend on the numbering (each is its
    own row of the products), and the picks then come out in the order ``aggregates``
    writes them (member id, rank), with no sort of millions of rows there."""
    encoded = pc.dictionary_encode(column.cast(pa.string()).combine_chunks())
    order = pc.array_sort_indices(encoded.dictionary).to_numpy().astype(np.int64)
    place = np.empty(len(order), np.int64)
    place[order] = np.arange(len(order), dtype=np.int64)
    keys: np.ndarray = place[encoded.indices.to_numpy(zero_copy_only=False)]
    return encoded.dictionary.take(pa.array(order)), keys


def _round9_units(value: np.ndarray) -> np.ndarray:
    """``round(value, 9)`` as DuckDB computes it for a double (the value times 10⁹,
    rounded half away from zero, divided by 10⁹; NumPy's ``round`` rounds half to even),
    in units of 10⁻⁹ as integers: the same order and the same ties as the rounded doubles
    (distinct multiples of 10⁻⁹ below 10⁶ are distinct doubles), as an integer sort key."""
    scaled = value * 1e9
    whole = np.trunc(scaled)
    up = np.abs(scaled - whole) >= 0.5
    units: np.ndarray = (whole + np.where(up, np.sign(scaled), 0.0)).astype(np.int64)
    return units


def _top_in_groups(groups: np.ndarray, units: np.ndarray, popular: np.ndarray,
                   n_products: int, top_n: int) -> tuple[np.ndarray, np.ndarray]:
    """The positions and ranks (1 = best) of each group's ``top_n`` rows, ordered by
    group, then rank: rows ranked by ``units`` desc, then ``popular`` asc (a product's
    place by buyers desc, key asc, unique within a group). ``groups`` is ascending.

    The ranking of ``recommendations`` without sorting every candidate: both keys become
    one int64 (lower = better) and each round takes every group's smallest remaining key
    (``np.minimum.reduceat``), ``top_n`` rounds of linear passes instead of an
    n log n sort with four keys over all candidates (most of ``top_products`` at a
    million members). When the key cannot fit in an int64 it falls back to the sort.
    """
    if len(groups) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    best = int(units.max())
    if int(units.min()) < 0 or (best + 1) * n_products >= 2 ** 62:
        order = np.lexsort((popular, -units, groups))
        place = np.arange(len(order)) - np.searchsorted(groups[order], groups[order]) + 1
        top = place <= top_n
        return order[top], place[top]
    key = (best - units) * n_products + popular
    gone = np.iinfo(np.int64).max
    starts = np.flatnonzero(np.r_[True, groups[1:] != groups[:-1]])
    group_of = np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, len(groups)]))
    taken: list[np.ndarray] = []
    rank_of: list[np.ndarray] = []
    for step in range(1, top_n + 1):
        smallest = np.minimum.reduceat(key, starts)
        at = np.flatnonzero(key == smallest[group_of])
        at = at[key[at] != gone]
        if len(at) == 0:
            break
        key[at] = gone
        taken.append(at)
        rank_of.append(np.full(len(at), step, np.int64))
    where, ranks = np.concatenate(taken), np.concatenate(rank_of)
    order = np.lexsort((ranks, groups[where]))
    return where[order], ranks[order]


#: Up to this many products, ``_because`` looks similarities up in a dense copy of S
#: (n² doubles: 128 MB at 4,000 products); above it, in the sparse S.
DENSE_LOOKUP_PRODUCTS = 4_000


def _because(bought: sparse.csr_array, similar: sparse.csr_array, members: np.ndarray,
             picks: np.ndarray, dense: np.ndarray | None = None) -> np.ndarray:
    """For each (member, pick): the product of the member's basket most similar to the
    pick, the smallest key among equals. ``dense`` is ``similar`` as a dense array, or
    None (a large catalogue).

    Every (pick, basket product) pair's similarity is looked up (a gather from the dense
    S when there is one: SciPy's sparse fancy indexing was most of this), and
    each pick's best found with a segmented maximum, not a sort: the basket products of
    a member are in ascending key order (``bought`` is canonical), so the first pair with
    the maximum is the smallest key."""
    if len(members) == 0:  # SciPy answers an empty fancy index with a 0-d array
        return np.zeros(0, np.int64)
    starts = bought.indptr[members]
    counts = bought.indptr[members + 1] - starts  # ≥ 1: a member with a pick bought
    pick_of = np.repeat(np.arange(len(members)), counts)
    offsets = np.arange(len(pick_of)) - np.repeat(np.cumsum(counts) - counts, counts)
    items = bought.indices[np.repeat(starts, counts) + offsets].astype(np.int64)
    if dense is not None:
        value = dense[items, picks[pick_of]]
    else:
        value = np.asarray(similar[items, picks[pick_of]]).ravel()
    segments = np.cumsum(counts) - counts
    best = np.maximum.reduceat(value, segments)
    hits = np.flatnonzero(value == best[pick_of])
    first = hits[np.r_[True, pick_of[hits][1:] != pick_of[hits][:-1]]]
    chosen: np.ndarray = items[first]
    return chosen


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
