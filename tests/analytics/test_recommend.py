"""Recommendations on a planted history: A and B go together, R is bought on a cycle."""

from __future__ import annotations

import math
import random
from collections.abc import Collection
from datetime import UTC, date, datetime, timedelta

import ibis
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from scipy import sparse

from patron.analytics import aggregates, recommend
from patron.analytics.recommend import Id, RecommendSettings
from patron.core.errors import ValidationFailed

AS_OF = date(2026, 6, 30)  # recent = the last 90 days: from 2 April
OLD, RECENT, LONG_AGO = date(2026, 2, 1), date(2026, 6, 25), date(2025, 9, 1)


def lines_table(sales: list[tuple[str | None, date, list[str]]],
                refunded: frozenset[str] = frozenset()) -> ibis.Table:
    """Canonical ``lines``: one sale per (member, day, products); ``refunded`` products
    have a kept quantity of 0."""
    cols: dict[str, list[object]] = {k: [] for k in (
        "sale_id", "member_id", "store_id", "product_id", "category_id", "occurred_at",
        "occurred_on", "quantity", "net_minor")}
    for i, (member, day, products) in enumerate(sales):
        for product in products:
            cols["sale_id"].append(f"sale-{i}")
            cols["member_id"].append(member)
            cols["store_id"].append("store-1")
            cols["product_id"].append(product)
            cols["category_id"].append("cat")
            cols["occurred_at"].append(datetime(day.year, day.month, day.day, 4, tzinfo=UTC))
            cols["occurred_on"].append(day)
            kept = 0 if product in refunded else 1
            cols["quantity"].append(kept)
            cols["net_minor"].append(100 * kept)
    return ibis.memtable(cols, schema={
        "sale_id": "string", "member_id": "string", "store_id": "string",
        "product_id": "string", "category_id": "string", "occurred_at": "timestamp('UTC')",
        "occurred_on": "date", "quantity": "int64", "net_minor": "int64"})


def planted() -> ibis.Table:
    sales: list[tuple[str | None, date, list[str]]] = []
    sales += [(f"fan{i}", OLD, ["A", "B", "X"]) for i in range(8)]  # X refunded in full
    sales += [(f"regular{i}", OLD, ["A", "R"]) for i in range(6)]
    sales += [(f"regular{i}", date(2024, 3, 1), ["A", "Y"]) for i in range(6)]  # too old
    sales += [
        ("target", RECENT, ["A"]),
        ("recent_b", RECENT, ["A"]), ("recent_b", RECENT, ["B"]),
        ("recent_r", RECENT, ["A", "R"]),
        ("old_b", LONG_AGO, ["B"]), ("old_b", RECENT, ["A"]),
        ("c_buyer", OLD, ["A", "C"]),       # one shared buyer: below min_common
        ("solo", OLD, ["Z"]),
        (None, OLD, ["A", "Z"]), (None, OLD, ["A", "Z"]),  # walk-ins have no member basket
    ]
    return lines_table(sales, refunded=frozenset({"X"}))


# buyers in the year: A 19, B 10, R 7; together: A-B 10, A-R 7
SIM_AB = 10 / math.sqrt(19 * 10)
SIM_AR = 7 / math.sqrt(19 * 7)


def products(recs: list[recommend.Recommendation]) -> list[str]:
    return [r.product_id for r in recs]


def test_b_is_recommended_to_a_buyer_because_a_and_b_go_together() -> None:
    recs = recommend.recommend_for_member(planted(), "target", as_of=AS_OF)
    assert products(recs) == ["B", "R"]
    assert [r.rank for r in recs] == [1, 2]
    assert [r.because for r in recs] == ["A", "A"]
    assert [r.score for r in recs] == pytest.approx([SIM_AB, SIM_AR])


def test_a_just_bought_ordinary_product_is_not_recommended_again() -> None:
    recs = recommend.recommend_for_member(planted(), "recent_b", as_of=AS_OF)
    assert products(recs) == ["R"]  # B and A were bought this week


def test_a_just_bought_replenishment_item_is_kept() -> None:
    lines = planted()
    kept = recommend.recommend_for_member(lines, "recent_r", as_of=AS_OF,
                                          replenishable={"R"})
    assert products(kept) == ["B", "R"]
    dropped = recommend.recommend_for_member(lines, "recent_r", as_of=AS_OF)
    assert products(dropped) == ["B"]


def test_a_product_bought_long_ago_may_be_recommended_again() -> None:
    recs = recommend.recommend_for_member(planted(), "old_b", as_of=AS_OF)
    assert products(recs) == ["B", "R"]


def test_noise_refunds_and_old_history_are_never_recommended() -> None:
    table = recommend.recommendations(planted(), as_of=AS_OF,
                                      settings=RecommendSettings(top_n=5))
    rows = table.to_pyarrow().to_pylist()
    assert {r["product_id"] for r in rows} <= {"A", "B", "R"}
    assert not any(r["member_id"] in ("solo",) for r in rows)


def test_batch_gives_top_n_per_member_and_matches_the_single_member_call() -> None:
    lines = planted()
    table = recommend.recommendations(lines, as_of=AS_OF, replenishable={"R"},
                                      settings=RecommendSettings(top_n=1))
    rows = table.to_pyarrow().to_pylist()
    per_member: dict[str, list[str]] = {}
    for r in rows:
        per_member.setdefault(r["member_id"], []).append(r["product_id"])
    assert all(len(v) == 1 for v in per_member.values())
    assert per_member["target"] == ["B"]
    assert per_member["recent_b"] == ["R"]
    # a fan bought A and B in February: A and B score the same, A is more popular
    assert per_member["fan0"] == ["A"]
    for member in ("target", "recent_r", "old_b"):
        single = recommend.recommend_for_member(lines, member, as_of=AS_OF,
                                                replenishable={"R"},
                                                settings=RecommendSettings(top_n=1))
        assert products(single) == per_member[member]


def _picks(rows: list[dict[str, object]]) -> dict[object, list[tuple[object, ...]]]:
    out: dict[object, list[tuple[object, ...]]] = {}
    for r in sorted(rows, key=lambda r: (str(r["member_id"]), int(str(r["rank"])))):
        out.setdefault(r["member_id"], []).append(
            (r["rank"], r["product_id"], r["because"], r["score"]))
    return out


def _same_picks(fast: pa.Table, engine: ibis.Table) -> None:
    """The same picks, ranks and reasons; scores to the last bits (sums in another order)."""
    got, want = _picks(fast.to_pylist()), _picks(engine.to_pyarrow().to_pylist())
    assert {m: [p[:3] for p in v] for m, v in got.items()} == \
        {m: [p[:3] for p in v] for m, v in want.items()}
    for m, v in got.items():
        assert [p[3] for p in v] == pytest.approx([p[3] for p in want[m]], rel=1e-12)


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize(("chunk", "dense_up_to"), [(20_000, 4_000), (7, 0)])
def test_numpy_batch_equals_the_engine_query_on_a_random_history(
        seed: int, chunk: int, dense_up_to: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """``top_products`` (the nightly batch) against ``recommendations`` (the engine's
    query) on random baskets: few products, so ties in similarity, score and buyers are
    common; some purchases are recent, some products replenishable, some members alone.
    Also with members in chunks of 7 and ``because`` looked up in the sparse S."""
    monkeypatch.setattr(recommend, "MEMBER_CHUNK", chunk)
    monkeypatch.setattr(recommend, "DENSE_LOOKUP_PRODUCTS", dense_up_to)
    rng = random.Random(seed)
    catalogue = [f"p{k:02d}" for k in range(14)]
    sales: list[tuple[str | None, date, list[str]]] = []
    for i in range(60):
        for _ in range(rng.randint(1, 4)):
            day = AS_OF - timedelta(days=rng.randint(0, 400))
            sales.append((f"m{i:02d}", day, rng.sample(catalogue[: 4 + i % 10],
                                                       rng.randint(1, 3))))
    sales.append((None, AS_OF, ["p00", "p01"]))
    lines = lines_table(sales, refunded=frozenset({"p13"}))
    for settings in (RecommendSettings(top_n=5), RecommendSettings(
            top_n=3, recent_days=0, min_common=1, neighbours=2)):
        baskets = recommend.member_baskets(lines, as_of=AS_OF,
                                           history_days=settings.history_days)
        fast = recommend.top_products(baskets.to_pyarrow(), as_of=AS_OF,
                                      replenishable={"p02", "p05"}, settings=settings)
        engine = recommend.recommendations(lines, as_of=AS_OF, replenishable={"p02", "p05"},
                                           settings=settings)
        assert fast.num_rows > 100
        _same_picks(fast, engine)


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
@pytest.mark.parametrize("n_products", [50, 2 ** 60])
def test_top_in_groups_ranks_as_a_full_sort(seed: int, n_products: int) -> None:
    """The selection (and, with a key too wide for an int64, its fallback sort) picks and
    ranks what sorting every row by (group, units desc, popular asc) does, on tie-heavy
    random rows: units from a handful of values, groups of 1 to 12 rows."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 13, size=300)
    groups = np.repeat(np.arange(300, dtype=np.int64) * 3, sizes)
    units = rng.integers(0, 4, size=len(groups)).astype(np.int64) * 1_000_000_000
    popular = np.concatenate([rng.permutation(50)[:k] for k in sizes]).astype(np.int64)
    at, rank = recommend._top_in_groups(groups, units.copy(), popular, n_products, 5)
    order = sorted(range(len(groups)), key=lambda r: (groups[r], -units[r], popular[r]))
    expected: list[tuple[int, int]] = []
    for r in order:
        place = 1 if not expected or groups[expected[-1][0]] != groups[r] else \
            expected[-1][1] + 1
        expected.append((r, place))
    expected = [(r, place) for r, place in expected if place <= 5]
    assert list(zip(at.tolist(), rank.tolist(), strict=True)) == expected


def test_numpy_batch_names_the_smallest_of_equally_similar_reasons() -> None:
    """B is as close to A as to C (same buyers): ``because`` is A in both paths."""
    sales: list[tuple[str | None, date, list[str]]] = [
        (f"x{i}", OLD, ["A", "B", "C"]) for i in range(3)]
    sales += [("target", RECENT, ["C", "A"])]  # A and C just bought: not offered
    lines = lines_table(sales)
    baskets = recommend.member_baskets(lines, as_of=AS_OF, history_days=365)
    fast = recommend.top_products(baskets.to_pyarrow(), as_of=AS_OF)
    target = [r for r in fast.to_pylist() if r["member_id"] == "target"]
    assert [(r["product_id"], r["because"]) for r in target] == [("B", "A")]
    single = recommend.recommend_for_member(lines, "target", as_of=AS_OF)
    assert [(r.product_id, r.because) for r in single] == [("B", "A")]
    empty = recommend.top_products(baskets.to_pyarrow().slice(0, 0), as_of=AS_OF)
    assert empty.num_rows == 0 and empty.schema == recommend.PICKS_SCHEMA


def test_a_member_without_history_gets_nothing() -> None:
    assert recommend.recommend_for_member(planted(), "nobody", as_of=AS_OF) == []


def test_settings_are_validated_naming_the_field() -> None:
    with pytest.raises(ValidationFailed) as err:
        recommend.recommendations(planted(), as_of=AS_OF,
                                  settings=RecommendSettings(top_n=0, recent_days=-1))
    assert [p.field for p in err.value.problems] == ["top_n", "recent_days"]


def test_frequently_bought_together_by_hand() -> None:
    sales: list[tuple[str | None, date, list[str]]] = []
    sales += [(None, OLD, ["A", "B"])] * 8
    sales += [("m", OLD, ["A", "C"])] * 2
    sales += [(None, OLD, ["B"])] * 5
    sales += [(None, OLD, ["C"])] * 5
    lines = lines_table(sales)
    # 20 sales: A in 10, B in 13, C in 7; A with B 8 times, with C twice
    (b,) = recommend.frequently_bought_together(lines, "A", as_of=AS_OF)
    assert (b.product_id, b.together) == ("B", 8)
    assert b.support == pytest.approx(0.4)
    assert b.confidence == pytest.approx(0.8)
    assert b.lift == pytest.approx(0.8 / (13 / 20))
    # C comes with A less often than on its own (lift 0.57): shown only when asked
    both = recommend.frequently_bought_together(lines, "A", as_of=AS_OF, min_lift=0.0)
    assert [c.product_id for c in both] == ["B", "C"]
    assert both[1].lift == pytest.approx((2 / 10) / (7 / 20))


def test_frequently_bought_together_ignores_sales_outside_the_window() -> None:
    lines = lines_table([(None, date(2024, 1, 1), ["A", "B"])] * 3)
    assert recommend.frequently_bought_together(lines, "A", as_of=AS_OF) == []


def test_replenishable_products_come_from_categories_with_a_cycle() -> None:
    products_t = ibis.memtable({"product_id": ["p1", "p2", "p3"],
                                "category_id": ["coffee", "mugs", "coffee"]})
    categories = ibis.memtable({"category_id": ["coffee", "mugs"],
                                "replenish_days": [30, None]},
                               schema={"category_id": "string", "replenish_days": "int64"})
    assert recommend.replenishable_products(products_t, categories) == {"p1", "p3"}


# --- the nightly batch against its previous version -------------------------------------
#
# ``top_products`` as it was before members were numbered in id order (and keys came from
# one dictionary encoding), verbatim but for its name and the module's names it reads:
# the same picks, now in (member_id, rank) order.

PICKS_SCHEMA = recommend.PICKS_SCHEMA
DENSE_LOOKUP_PRODUCTS = recommend.DENSE_LOOKUP_PRODUCTS
MEMBER_CHUNK = recommend.MEMBER_CHUNK
_top_in_groups = recommend._top_in_groups
_round9_units = recommend._round9_units
_because = recommend._because


def _ref_top_products(baskets: pa.Table, *, as_of: date, replenishable: Collection[Id] = (),
                 settings: RecommendSettings | None = None) -> pa.Table:
    """``recommendations`` of every member, computed in NumPy/SciPy from the member
    baskets (``member_baskets``, as Arrow: member_id, product_id, last_on).

    Products and members become dense integer keys (products numbered in the order of
    their ids, so "the smaller id" is "the smaller key"); the baskets a sparse members ×
    products 0/1 matrix B. Then, as in the module docstring: co-occurrence BᵀB, the
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
    product_ids = pc.unique(baskets.column("product_id").cast(pa.string()))
    product_ids = product_ids.take(pc.array_sort_indices(product_ids))
    member_ids = pc.unique(baskets.column("member_id").cast(pa.string()))
    prod = pc.index_in(baskets.column("product_id").cast(pa.string()),
                       value_set=product_ids).to_numpy().astype(np.int64)
    memb = pc.index_in(baskets.column("member_id").cast(pa.string()),
                       value_set=member_ids).to_numpy().astype(np.int64)
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


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_numpy_batch_equals_its_previous_version_in_key_order(seed: int) -> None:
    """Random baskets (ids not in the order they are met, ties, recent purchases,
    replenishable products): the same rows, values and ranks as before, sorted by
    (member_id, rank); ``aggregates`` then writes them without sorting."""
    rng = random.Random(seed)
    catalogue = [f"p{rng.randint(0, 99):02d}" for _ in range(25)]
    sales: list[tuple[str | None, date, list[str]]] = []
    for _ in range(300):
        member = f"m{rng.randint(0, 10 ** 6):07d}"
        for _ in range(rng.randint(1, 3)):
            sales.append((member, AS_OF - timedelta(days=rng.randint(0, 400)),
                          rng.sample(catalogue, rng.randint(1, 4))))
    lines = lines_table(sales)
    for settings in (RecommendSettings(top_n=5), RecommendSettings(
            top_n=3, recent_days=0, min_common=1, neighbours=2)):
        baskets = recommend.member_baskets(lines, as_of=AS_OF,
                                           history_days=settings.history_days).to_pyarrow()
        baskets = baskets.take(pa.array(rng.sample(range(baskets.num_rows),
                                                   baskets.num_rows)))
        fast = recommend.top_products(baskets, as_of=AS_OF, replenishable={catalogue[0]},
                                      settings=settings)
        before = _ref_top_products(baskets, as_of=AS_OF, replenishable={catalogue[0]},
                                   settings=settings)
        assert fast.num_rows > 100
        in_order = before.sort_by([("member_id", "ascending"), ("rank", "ascending")])
        assert fast.equals(in_order)
        assert aggregates._in_key_order(fast)
        if fast.num_rows > 1:
            assert not aggregates._in_key_order(fast.take(pa.array(
                [*range(1, fast.num_rows), 0])))
