"""Member scores against values computed by hand: RFM, lifecycle, cycles, loyalty, bonds."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa
import pytest

from patron.analytics import lifecycle, rfm, scores, source
from patron.analytics.models.summary import TimeUnit, Transactions, summarise
from patron.core.db import Database
from tests.analytics.history import History, at

AS_OF = date(2026, 11, 22)
TZ = "Asia/Shanghai"
NOON = 4  # 04:00 UTC is noon in Shanghai: the UTC day is the local day


def days_before(n: int, hh: int = NOON) -> datetime:
    d = AS_OF - timedelta(days=n)
    return at(d.isoformat(), hh)


# ---------------------------------------------------------------- RFM rules


def test_quintiles_give_ties_one_score_and_best_fifth_five() -> None:
    values = [0, 0, 0, 1, 2, 3, 4, 5, 6, 7]
    assert rfm.quintile_scores(values).tolist() == [1, 1, 1, 2, 3, 3, 4, 4, 5, 5]
    # reversed, the three tied best values share the rank of the lowest of them (8th of 10)
    assert rfm.quintile_scores(values, higher_is_better=False).tolist() == \
        [4, 4, 4, 4, 3, 3, 2, 2, 1, 1]
    assert rfm.quintile_scores([3, 3, 3]).tolist() == [1, 1, 1]


@pytest.mark.parametrize(("r", "fm", "segment"), [
    (5, 5, "champions"), (5, 4, "champions"), (4, 5, "loyal"), (3, 4, "loyal"),
    (5, 2, "potential_loyalist"), (4, 3, "potential_loyalist"), (5, 1, "new"),
    (4, 1, "promising"), (3, 3, "needs_attention"), (3, 1, "about_to_sleep"),
    (2, 4, "at_risk"), (1, 3, "at_risk"), (1, 5, "cant_lose"), (2, 5, "cant_lose"),
    (2, 2, "hibernating"), (1, 1, "lost"), (1, 2, "lost"),
])
def test_segment_map(r: int, fm: int, segment: str) -> None:
    assert rfm.segments([r], [fm]).tolist() == [segment]


def test_every_segment_has_a_cell_and_fm_rounds_half_up() -> None:
    assert {s for row in rfm.SEGMENT_GRID for s in row} == set(rfm.SEGMENTS)
    assert rfm.fm_scores([5, 1, 2, 4], [4, 2, 3, 4]).tolist() == [5, 2, 3, 4]


# ---------------------------------------------------------------- lifecycle rules


def _stages(**overrides: Any) -> str:
    facts: dict[str, Any] = {"bought": True, "tenure_days": 200.0, "recency_days": 10.0,
                                 "joined_days": 200.0, "net_90": 1000.0, "net_prev_90": 1000.0,
                                 "p_alive": 0.9}
    facts |= overrides
    if facts["tenure_days"] >= 365:
        facts.setdefault("joined_days", facts["tenure_days"])
    out = lifecycle.stages(**{k: np.array([v]) for k, v in facts.items()})
    return str(out[0])


@pytest.mark.parametrize(("facts", "stage"), [
    ({"recency_days": 366.0, "tenure_days": 500.0}, "lost"),
    ({"recency_days": 365.0, "tenure_days": 500.0}, "lapsed"),
    ({"p_alive": 0.0999}, "lost"),
    ({"p_alive": 0.1}, "lapsed"),
    ({"recency_days": 181.0, "tenure_days": 300.0}, "lapsed"),
    ({"recency_days": 180.0, "tenure_days": 300.0, "net_90": 0.0}, "declining"),
    ({"p_alive": 0.4, "tenure_days": 89.0}, "new"),
    ({"tenure_days": 90.0}, "growing"),  # first year, spend not down
    ({"tenure_days": 400.0}, "mature"),  # a steady second year
    ({"tenure_days": 400.0, "net_90": 499.0}, "declining"),
    ({"tenure_days": 400.0, "net_90": 500.0}, "mature"),
    ({"tenure_days": 400.0, "net_90": 1250.0}, "growing"),
    ({"tenure_days": 400.0, "net_90": 1249.0}, "mature"),
    ({"tenure_days": 400.0, "net_90": 10.0, "net_prev_90": 0.0}, "growing"),
    ({"tenure_days": 200.0, "net_90": 999.0}, "mature"),  # first year, spend slightly down
    ({"p_alive": float("nan"), "recency_days": 100.0}, "growing"),  # no model: recency rules
    ({"bought": False, "joined_days": 30.0}, "new"),
    ({"bought": False, "joined_days": 90.0}, "lapsed"),
])
def test_lifecycle_thresholds(facts: dict[str, Any], stage: str) -> None:
    assert _stages(**facts) == stage


def test_next_purchase_from_the_mean_interval_or_the_expected_rate() -> None:
    offsets, from_last = lifecycle.next_purchase_offsets(
        frequency=np.array([2.0, 0.0, 0.0, np.nan]), t_x_days=np.array([31.0, 0.0, 0.0, np.nan]),
        expected_365=np.array([3.0, 0.5, 0.3, np.nan]))
    assert offsets[:2].tolist() == [16.0, 730.0]  # 15.5 rounds up; 365 / 0.5
    assert np.isnan(offsets[2]) and np.isnan(offsets[3])  # a wait over three years: none
    assert from_last.tolist() == [True, False, False, False]


# ---------------------------------------------------------------- loyalty and bonds


def test_loyalty_types_cross_satisfaction_with_repeat_behaviour() -> None:
    satisfied = np.array([1, 0, 1, 0, -1, -1], dtype=np.int8)
    repeating = np.array([True, True, False, False, True, False])
    words, kinds = scores.loyalty_types(satisfied, repeating)
    assert kinds.tolist() == ["trust", "inertia", "latent", "none", "inertia", "none"]
    assert words.tolist() == ["satisfied", "dissatisfied", "satisfied", "dissatisfied",
                              "unknown", "unknown"]


def _holdings(n: int, **columns: Any) -> scores.MemberHistory:
    """A history of ``n`` members who bought nothing, with bond inputs overridden."""
    nat = np.full(n, np.datetime64("NaT"), dtype="datetime64[us]")
    zeros = np.zeros(n, dtype=np.int64)
    base = scores.MemberHistory(
        member_id=pa.array([f"m{i}" for i in range(n)]), as_of=AS_OF,
        cutoff=source.cutoff_for(AS_OF, TZ),
        joined_at=np.full(n, np.datetime64("2026-11-01T00:00:00", "us")),
        purchases=zeros, first_at=nat, last_at=nat, first_on=nat.astype("datetime64[D]"),
        last_on=nat.astype("datetime64[D]"), first_net=zeros, total_net=zeros, net_90=zeros,
        net_prev_90=zeros, net_365=zeros, purchases_365=zeros,
        satisfied=np.full(n, -1, dtype=np.int8), replenishment_categories=zeros,
        points_available=zeros, wallet_minor=zeros, paid_membership=np.zeros(n, dtype=bool),
        unused_coupons=zeros, referrals_made=zeros, survey_replies=zeros,
        callback_calls=zeros, prepaid_packages=zeros, has_preferences=np.zeros(n, dtype=bool))
    return replace(base, **{k: np.asarray(v) for k, v in columns.items()})


def test_bond_strength_and_the_next_bond_worth_building() -> None:
    h = _holdings(
        5,
        # 0: nothing at all: every level 0, the cheapest level's cheapest action
        # 1: a coupon and points: financial is no longer the weakest, social is
        # 2: strong financially and socially: structural is the weakest
        # 3: weakest level (social) lacks only the callback
        # 4: everything present
        unused_coupons=[0, 1, 1, 1, 1], points_available=[0, 100, 100, 100, 100],
        wallet_minor=[0, 0, 500, 500, 500], paid_membership=[False, False, True, True, True],
        referrals_made=[0, 0, 1, 1, 1], survey_replies=[0, 0, 1, 1, 1],
        callback_calls=[0, 0, 1, 0, 1], has_preferences=[False, False, False, True, True],
        replenishment_categories=[0, 0, 0, 1, 1], prepaid_packages=[0, 0, 0, 1, 1],
        joined_at=np.array(["2026-11-01", "2026-11-01", "2026-11-01", "2020-01-01",
                            "2020-01-01"], dtype="datetime64[us]"),
    )
    b = scores.bonds(h)
    assert b.next_bond.tolist() == ["issue_coupon", "invite_survey", "record_preferences",
                                    "schedule_callback", None]
    # financial of member 1: points at the median balance → 1/2, coupon 1/2, wallet 0, paid 0
    assert b.financial[1] == pytest.approx((0.5 + 0.5) / 4)
    assert b.social[2] == pytest.approx(0.5)
    assert b.structural[4] == pytest.approx(1.0)  # six years of history count as full
    assert ((b.financial >= 0) & (b.financial <= 1)).all()


# ---------------------------------------------------------------- a hand-built history


@pytest.fixture
def scored(db: Database) -> dict[str, Any]:
    """Ten buyers whose segments are clear-cut, a same-day pair, category cycles."""
    with db.engine.begin() as conn:
        h = History(conn)
        shop = h.store("SH")
        coffee = h.product("coffee", 1000)
        ids: dict[str, Any] = {}

        def buyer(name: str, ago: list[int], amount: int) -> None:
            m = h.member(shop, days_before(max(ago) + 1))
            for n in ago:
                h.sale(m, shop, days_before(n), total=amount)
            ids[name] = m

        buyer("champ1", list(range(0, 300, 30)), 20000)  # ten purchases, the last today
        buyer("champ2", [1, 40, 80, 120, 160, 200, 240, 280], 15000)
        buyer("cant_lose", [300 + 10 * k for k in range(10)], 30000)
        buyer("lost1", [400], 1000)
        buyer("lost2", [380], 1200)
        buyer("mid1", [30, 90, 150], 5000)
        buyer("mid2", [60, 200], 4000)
        buyer("mid3", [90], 3000)
        buyer("newbie", [10], 2500)

        # same-day merge: 10:00 and 14:00 UTC are 18:00 and 22:00 in Shanghai (one day);
        # 17:00 UTC on the next day is already the day after that locally
        sameday = h.member(shop, days_before(60, 1))
        h.sale(sameday, shop, days_before(50, 10), total=3000)
        h.sale(sameday, shop, days_before(50, 14), total=2000)
        h.sale(sameday, shop, days_before(49, 10), total=4000)
        h.sale(sameday, shop, days_before(49, 17), total=1000)  # local day 48
        _, (refunded,) = h.sale(sameday, shop, days_before(20), total=7000)
        h.refund(shop, refunded, 1, days_before(19))  # fully refunded: not a purchase
        ids["sameday"] = sameday

        # coffee cycles: one member every 10 then 20 days (two same-day bags count once),
        # another once in 40 days
        c1, c2 = ids["mid1"], ids["mid2"]
        for n in (100, 90, 90, 70):
            h.sale(c1, shop, days_before(n, 5), [(coffee, 1, 1000)])
        for n in (140, 100):
            h.sale(c2, shop, days_before(n, 5), [(coffee, 1, 1000)])
        ids["coffee"] = h.category_of("coffee")
        ids["never"] = h.member(shop, days_before(5))
    with source.open_source(db, as_of=AS_OF, timezone=TZ) as src:
        history = scores.member_history(src)
        cycles = scores.category_cycles(src)
        sales = src.sales.to_pyarrow()
        inputs = scores.model_inputs(src)
    with source.open_source(db, as_of=AS_OF, timezone=TZ,
                            tables=["sales", "inactive_members"]) as src:
        lean = scores.model_inputs(src)  # as ``patron analytics fit`` reads
    fitted = scores.fit(history)
    table = scores.score(history, fitted)
    rows = {r["member_id"]: r for r in table.to_pylist()}
    return {"ids": ids, "rows": {k: rows[str(v)] for k, v in ids.items() if str(v) in rows},
            "history": history, "cycles": cycles.to_pylist(), "fit": fitted, "sales": sales,
            "inputs": inputs, "lean_inputs": lean}


def test_the_model_inputs_alone_are_the_history_s(scored: dict[str, Any]) -> None:
    """``model_inputs`` reads only the sales and the members (or, as ``patron analytics
    fit`` reads, only who is not active), and must give the buyers exactly what
    ``member_history`` gives them."""
    whole = scored["history"].model_inputs()
    for alone in (scored["inputs"], scored["lean_inputs"]):
        assert alone.member_id.to_pylist() == whole.member_id.to_pylist()
        assert len(alone) == int(scored["history"].bought.sum()) > 0
        for name in ("frequency", "t_x_days", "age_days", "repeat_monetary"):
            np.testing.assert_array_equal(getattr(alone, name), getattr(whole, name),
                                          err_msg=name)
        assert scores.fit(alone).params == scored["fit"].params


def test_predictions_on_several_threads_equal_one(scored: dict[str, Any],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    model = scored["fit"].model
    assert model is not None
    inputs = scored["inputs"]
    one = scores.predict(model, inputs)
    monkeypatch.setattr(scores, "PREDICT_PART", 2)
    monkeypatch.setattr(scores.os, "cpu_count", lambda: 3)
    several = scores.predict(model, inputs)
    for name in ("p_alive", "spend", "clv"):
        np.testing.assert_array_equal(getattr(one, name), getattr(several, name), err_msg=name)
    for t in scores.HORIZONS:
        np.testing.assert_array_equal(one.expected[t], several.expected[t])


def test_recency_frequency_monetary_by_hand(scored: dict[str, Any]) -> None:
    rows = scored["rows"]
    champ1 = rows["champ1"]
    assert (champ1["recency_days"], champ1["purchases"], champ1["frequency"]) == (0, 10, 9)
    assert champ1["monetary_minor"] == 20000 and champ1["tenure_days"] == 270
    assert champ1["first_purchase_on"] == AS_OF - timedelta(days=270)
    # same-day sales merge (18:00 + 22:00 local), 17:00 UTC is the next local day, and the
    # fully refunded sale is no purchase: days 50, 49 and 48 before as_of
    sd = rows["sameday"]
    assert (sd["purchases"], sd["frequency"], sd["recency_days"]) == (3, 2, 48)
    assert sd["total_net_minor"] == 3000 + 2000 + 4000 + 1000
    assert sd["monetary_minor"] == 3333  # 10000 / 3, rounded half up
    # BG/NBD times keep the seconds: first purchase 10:00 UTC on day 50, last 17:00 on 49
    assert sd["t_x_days"] == pytest.approx(1 + 7 / 24)
    cutoff = datetime(2026, 11, 22, 16, tzinfo=ZoneInfo("UTC"))
    assert sd["age_days"] == pytest.approx((cutoff - days_before(50, 10)).total_seconds()
                                           / 86400)
    never = rows["never"]
    assert never["purchases"] == 0 and never["rfm_segment"] is None
    assert never["recency_days"] is None and never["lifecycle_stage"] == "new"


def test_clear_cut_members_land_in_their_segments(scored: dict[str, Any]) -> None:
    rows = scored["rows"]
    assert (rows["champ1"]["r_score"], rows["champ1"]["f_score"],
            rows["champ1"]["m_score"]) == (5, 5, 5)
    assert rows["champ1"]["rfm_segment"] == "champions"
    assert rows["champ2"]["rfm_segment"] == "champions"
    assert rows["cant_lose"]["rfm_segment"] == "cant_lose"
    assert rows["lost1"]["rfm_segment"] == rows["lost2"]["rfm_segment"] == "lost"
    assert rows["lost1"]["lifecycle_stage"] == "lost"  # 400 days without a purchase
    assert rows["newbie"]["lifecycle_stage"] == "new"


def test_the_engine_summary_matches_the_reference_summary(scored: dict[str, Any]) -> None:
    """x, t_x, T and m equal ``models.summary.summarise`` on the same sales (local times)."""
    sales = scored["sales"].to_pylist()
    kept = [s for s in sales if s["member_id"] and s["net_minor"] > 0]
    local = [s["occurred_at"].astimezone(ZoneInfo(TZ)).replace(tzinfo=None) for s in kept]
    tx = Transactions.from_arrays([s["member_id"] for s in kept], np.array(local, dtype=object),
                                  [s["net_minor"] for s in kept])
    ref = summarise(tx, calibration_end=AS_OF, unit=TimeUnit.DAYS)
    h = scored["history"]
    order = {m: i for i, m in enumerate(h.member_id.to_pylist())}
    idx = np.array([order[str(c)] for c in ref.customer])
    assert h.frequency[idx].tolist() == ref.frequency.tolist()
    assert np.allclose(h.t_x_days[idx], ref.recency)
    # the reference measures T to 23:59:59 of as_of, the engine to the cutoff (1 s later)
    assert np.allclose(h.age_days[idx], ref.age + 1 / 86400)
    assert np.allclose(h.repeat_monetary[idx], ref.monetary)


def test_category_cycles_shrink_toward_the_category_median(scored: dict[str, Any]) -> None:
    ids = scored["ids"]
    cycles = {(str(c["member_id"]), str(c["category_id"])): c for c in scored["cycles"]}
    first = cycles[(str(ids["mid1"]), str(ids["coffee"]))]
    second = cycles[(str(ids["mid2"]), str(ids["coffee"]))]
    # intervals 10 and 20 (own median 15) and 40: the category median is 20
    assert (first["intervals"], first["own_median_days"]) == (2, 15.0)
    assert first["category_median_days"] == second["category_median_days"] == 20.0
    assert first["interval_days"] == pytest.approx(2 / 4 * 15 + 2 / 4 * 20)  # 17.5
    assert first["next_due_on"] == AS_OF - timedelta(days=70) + timedelta(days=18)
    assert second["interval_days"] == pytest.approx(1 / 3 * 40 + 2 / 3 * 20)
    assert second["next_due_on"] == AS_OF - timedelta(days=100) + timedelta(days=27)


def test_model_outputs_are_probabilities_or_left_empty(scored: dict[str, Any]) -> None:
    """Ten buyers cannot pin the models down (parameters at the edge of the search box, the
    hypergeometric series gives NaN): P(alive) is still there, undefined numbers are NULL,
    never NaN. ``test_demo_segments`` checks the predictions on a proper population."""
    fitted = scored["fit"]
    assert fitted.params["customers"] == 10 and fitted.params["unit"] == "days"
    rows = scored["rows"]
    assert rows["newbie"]["p_alive"] == 1.0  # BG/NBD: nobody leaves before a repeat purchase
    assert rows["champ1"]["p_alive"] > 0.5 > rows["cant_lose"]["p_alive"]
    for row in rows.values():
        values = [row[k] for k in ("p_alive", "expected_30", "expected_90", "expected_365",
                                   "expected_spend_minor", "clv_minor")]
        assert all(v is None or np.isfinite(v) for v in values)
        if not row["purchases"]:
            assert values == [None] * 6
        elif row["expected_30"] is not None:
            assert row["expected_30"] <= row["expected_90"] <= row["expected_365"]


# ---------------------------------------------------------------- the summaries, rewritten
#
# The reference: the summaries as they were before the category cycles dropped their
# DISTINCT (verbatim but for the ``_ref`` names and the materialized table's name, so both
# versions can run on one source). The rewritten ones must give the same MemberHistory,
# field by field, and the same category_cycles table, column by column.


def _ref_purchase_days(src: source.Source) -> Any:
    """One row per member and store-local day with a kept (positive-net) sale."""
    s = src.sales
    s = s.filter(s.member_id.notnull() & (s.net_minor > 0))
    return s.group_by(["member_id", "occurred_on"]).aggregate(
        at=s.occurred_at.min(), net=s.net_minor.sum())


def _ref_category_cycles_expr(src: source.Source) -> Any:
    """Ibis expression: per member and category with >= 2 purchase days, the shrunk cycle."""
    import ibis

    ln = src.lines
    ln = ln.filter(ln.member_id.notnull() & (ln.quantity > 0))
    days = ln.select("member_id", "category_id", "occurred_on").distinct()
    w = ibis.window(group_by=["member_id", "category_id"], order_by="occurred_on")
    days = days.mutate(prev_on=days.occurred_on.lag().over(w))
    gaps = days.filter(days.prev_on.notnull())
    gaps = gaps.mutate(gap=gaps.occurred_on.delta(gaps.prev_on, unit="day"))
    own = gaps.group_by(["member_id", "category_id"]).aggregate(
        intervals=gaps.count(), own_median_days=gaps.gap.median(),
        last_purchase_on=gaps.occurred_on.max())
    pooled = gaps.group_by("category_id").aggregate(category_median_days=gaps.gap.median())
    cycles = own.join(pooled, "category_id")
    n = cycles.intervals.cast("float64")
    weight = n / (n + scores.CYCLE_PRIOR_STRENGTH)
    return cycles.mutate(
        interval_days=weight * cycles.own_median_days
        + (1.0 - weight) * cycles.category_median_days,
    ).select("member_id", "category_id", "intervals", "own_median_days",
             "category_median_days", "interval_days", "last_purchase_on")


def _ref_category_cycles_table(src: source.Source) -> Any:
    """The cycles, computed once per source (``member_history`` and the snapshot share them)."""
    return src.materialize("reference_category_cycles", _ref_category_cycles_expr(src))


def _ref_category_cycles(src: source.Source) -> pa.Table:
    """The ``category_cycles`` rows (without as_of), in key order, with the due day."""
    table = _ref_category_cycles_table(src).order_by(["member_id", "category_id"]).to_pyarrow()
    last = table.column("last_purchase_on").to_numpy().astype("datetime64[D]")
    interval = table.column("interval_days").to_numpy()
    due = last + np.floor(interval + 0.5).astype("timedelta64[D]")
    return table.append_column("next_due_on", pa.array(due, type=pa.date32()))


def _ref_member_history(src: source.Source) -> scores.MemberHistory:
    """Summarise the source into one row per active member (see the module docstring)."""
    import ibis

    as_of = src.as_of
    d = _ref_purchase_days(src)
    day = d.occurred_on
    since_90 = ibis.literal(as_of - timedelta(days=90))
    since_180 = ibis.literal(as_of - timedelta(days=180))
    since_365 = ibis.literal(as_of - timedelta(days=365))
    per = d.group_by("member_id").aggregate(
        purchases=d.count(),
        first_at=d.at.min(), last_at=d.at.max(),
        first_on=day.min(), last_on=day.max(),
        first_net=d.net.argmin(d.at),
        total_net=d.net.sum(),
        net_90=d.net.sum(where=day > since_90),
        net_prev_90=d.net.sum(where=(day > since_180) & (day <= since_90)),
        net_365=d.net.sum(where=day > since_365),
        purchases_365=d.count(where=day > since_365),
    )
    sv = src.surveys
    sv = sv.mutate(ok=(sv.csat >= 4).fill_null(False) | (sv.nps >= 9).fill_null(False))
    latest = sv.group_by("member_id").aggregate(satisfied=sv.ok.argmax(sv.answered_at))
    cycles = _ref_category_cycles_table(src)
    habitual = cycles.filter(cycles.intervals >= scores.HABIT_INTERVALS)
    habits = habitual.group_by("member_id").aggregate(replenishment_categories=habitual.count())
    members = src.members
    members = members.filter(members.status == "active").select("member_id", "joined_at")
    joined = (members.left_join(per, "member_id").drop("member_id_right")
              .left_join(src.holdings, "member_id").drop("member_id_right")
              .left_join(latest, "member_id").drop("member_id_right")
              .left_join(habits, "member_id").drop("member_id_right")
              .order_by("member_id"))
    table = joined.to_pyarrow()

    def ints(name: str) -> np.ndarray[Any, np.dtype[np.int64]]:
        col = table.column(name)
        return np.asarray(col.fill_null(0).to_numpy(), dtype=np.int64)

    def bools(name: str) -> np.ndarray[Any, np.dtype[np.bool_]]:
        return np.asarray(table.column(name).fill_null(False).to_numpy(), dtype=bool)

    def times(name: str, unit: str) -> np.ndarray[Any, np.dtype[np.datetime64]]:
        col = table.column(name)
        if pa.types.is_timestamp(col.type):
            col = col.cast(pa.timestamp("us"))
        return np.asarray(col.to_numpy(zero_copy_only=False)).astype(f"datetime64[{unit}]")

    satisfied_col = table.column("satisfied")
    satisfied = np.where(satisfied_col.is_null().to_numpy(zero_copy_only=False), -1,
                         satisfied_col.fill_null(False).to_numpy(zero_copy_only=False)
                         .astype(np.int8)).astype(np.int8)
    return scores.MemberHistory(
        member_id=table.column("member_id").combine_chunks(),
        as_of=as_of, cutoff=src.cutoff,
        joined_at=times("joined_at", "us"),
        purchases=ints("purchases"),
        first_at=times("first_at", "us"), last_at=times("last_at", "us"),
        first_on=times("first_on", "D"), last_on=times("last_on", "D"),
        first_net=ints("first_net"), total_net=ints("total_net"),
        net_90=ints("net_90"), net_prev_90=ints("net_prev_90"), net_365=ints("net_365"),
        purchases_365=ints("purchases_365"),
        satisfied=satisfied,
        replenishment_categories=ints("replenishment_categories"),
        points_available=ints("points_available"), wallet_minor=ints("wallet_minor"),
        paid_membership=bools("paid_membership"), unused_coupons=ints("unused_coupons"),
        referrals_made=ints("referrals_made"), survey_replies=ints("survey_replies"),
        callback_calls=ints("callback_calls"), prepaid_packages=ints("prepaid_packages"),
        has_preferences=bools("has_preferences"),
    )


CANONICAL_COLUMNS: dict[str, str] = {  # the canonical tables the summaries read
    "sales": "sale_id UUID, member_id UUID, store_id UUID, occurred_at TIMESTAMPTZ, "
             "occurred_on DATE, gross_minor BIGINT, discount_minor BIGINT, "
             "refunded_minor BIGINT, net_minor BIGINT, coupon_used BOOLEAN, promoted BOOLEAN",
    "lines": "line_id UUID, sale_id UUID, member_id UUID, store_id UUID, product_id UUID, "
             "category_id UUID, occurred_at TIMESTAMPTZ, occurred_on DATE, quantity BIGINT, "
             "unit_price_minor BIGINT, discount_minor BIGINT, net_minor BIGINT",
    "members": "member_id UUID, joined_at TIMESTAMPTZ, home_store_id UUID, "
               "enrolled_store_id UUID, enrolled_by_id UUID, referred_by_id UUID, "
               "status VARCHAR, tier_code VARCHAR, has_preferences BOOLEAN",
    "surveys": "member_id UUID, store_id UUID, answered_at TIMESTAMPTZ, csat BIGINT, "
               "nps BIGINT",
    "holdings": "member_id UUID, points_available BIGINT, wallet_minor BIGINT, "
                "paid_membership BOOLEAN, unused_coupons BIGINT, referrals_made BIGINT, "
                "survey_replies BIGINT, callback_calls BIGINT, prepaid_packages BIGINT, "
                "has_preferences BOOLEAN",
}
# days before as_of that sit on the summaries' edges (the 90/180/365-day windows, today)
EDGE_DAYS = (0, 1, 2, 3, 5, 8, 89, 90, 91, 179, 180, 181, 364, 365, 366, 400, 700)


def _random_history(seed: int) -> dict[str, list[tuple[Any, ...]]]:
    """Canonical rows of a small tie-heavy history: same-day sales (one store-local day
    from stores in three zones), refunds that leave a sale's net at or below 0, sales and
    lines of walk-ins, returned lines, products without a category, members who bought
    nothing, left or have no holdings, and survey answers. Instants are unique, so the
    earliest sale of a member and the latest answer are never tied (the summaries take
    "the first" of them, which ties would leave to the engine)."""
    import random
    import uuid

    rng = random.Random(seed)
    ids = iter(uuid.UUID(int=rng.getrandbits(128)) for _ in range(100_000))
    cutoff = source.cutoff_for(AS_OF, TZ)
    stores = [(next(ids), hours) for hours in (8, 0, -5)]  # UTC offsets of their zones
    categories = [next(ids) for _ in range(rng.randint(1, 4))] + [None]
    products = [(next(ids), rng.choice(categories)) for _ in range(rng.randint(1, 6))]
    seconds = rng.sample(range(1, 86_400 * 3), 2_000)  # distinct instants within a day
    used = iter(seconds)
    rows: dict[str, list[tuple[Any, ...]]] = {k: [] for k in CANONICAL_COLUMNS}
    members = [next(ids) for _ in range(rng.randint(1, 25))]
    for m in members:
        status = rng.choice(["active"] * 6 + ["merged", "deleted"])
        joined = cutoff - timedelta(days=rng.choice([1, 30, 400, 800]))
        rows["members"].append((m, joined, None, None, None, None, status, None,
                                rng.random() < 0.3))
        if rng.random() < 0.7:
            rows["holdings"].append((m, *(rng.choice([0, 0, 1, 50]) for _ in range(2)),
                                     rng.random() < 0.3,
                                     *(rng.choice([0, 0, 1, 3]) for _ in range(5)),
                                     rng.random() < 0.3))
        days = rng.sample(EDGE_DAYS, rng.randint(1, 5))
        for _ in range(rng.choice([0, 1, 3, 6, 12])):
            store, hours = rng.choice(stores)
            day = rng.choice(days)
            # the local day's midnight, in UTC, then a distinct instant within ~3 days
            midnight = datetime.combine(AS_OF - timedelta(days=day), datetime.min.time(),
                                        tzinfo=cutoff.tzinfo) - timedelta(hours=hours)
            occurred_at = min(midnight + timedelta(seconds=next(used) % 86_400),
                              cutoff - timedelta(seconds=next(used)))
            occurred_on = (occurred_at + timedelta(hours=hours)).date()
            member = m if rng.random() < 0.9 else None
            net = rng.choice([-100, 0, 0, 100, 100, 250, 1000])
            sale = next(ids)
            rows["sales"].append((sale, member, store, occurred_at, occurred_on, 100, 0, 0,
                                  net, False, False))
            for _ in range(rng.randint(0, 3)):
                product, category = rng.choice(products)
                rows["lines"].append((next(ids), sale, member, store, product, category,
                                      occurred_at, occurred_on, rng.choice([-1, 0, 1, 1, 2]),
                                      100, 0, net))
        for _ in range(rng.choice([0, 0, 1, 3])):
            rows["surveys"].append((m, stores[0][0],
                                    cutoff - timedelta(seconds=next(used) * 97),
                                    rng.choice([None, 1, 3, 4, 5]),
                                    rng.choice([None, 0, 8, 9, 10])))
    return rows


def _source_of(rows: dict[str, list[tuple[Any, ...]]]) -> source.Source:
    """An in-memory DuckDB source holding ``rows`` as the canonical tables."""
    import ibis

    con = ibis.duckdb.connect()
    duck = con.con
    duck.execute("SET TimeZone = 'UTC'")
    for name, columns in CANONICAL_COLUMNS.items():
        duck.execute(f"CREATE TABLE {name} ({columns})")
        if rows[name]:
            marks = ", ".join("?" * len(rows[name][0]))
            duck.executemany(f"INSERT INTO {name} VALUES ({marks})", rows[name])
    return source.Source(con=con, as_of=AS_OF, cutoff=source.cutoff_for(AS_OF, TZ),
                         timezone=TZ, backend="duckdb", loaded=tuple(CANONICAL_COLUMNS))


def _assert_same_history(got: scores.MemberHistory, want: scores.MemberHistory) -> None:
    assert got.member_id.equals(want.member_id)
    assert (got.as_of, got.cutoff) == (want.as_of, want.cutoff)
    for name in scores.MemberHistory.__dataclass_fields__:
        if name in ("member_id", "as_of", "cutoff"):
            continue
        a, b = getattr(got, name), getattr(want, name)
        assert a.dtype == b.dtype, name
        if a.dtype.kind == "M":  # datetimes: NaT never equals itself, compare the ticks
            a, b = a.view(np.int64), b.view(np.int64)
        assert np.array_equal(a, b), name


@pytest.mark.parametrize("seed", range(40))
def test_summaries_equal_the_reference_on_random_histories(seed: int) -> None:
    rows = _random_history(seed)
    src = _source_of(rows)
    try:
        want_history, want_cycles = _ref_member_history(src), _ref_category_cycles(src)
        got_history, got_cycles = scores.member_history(src), scores.category_cycles(src)
        _assert_same_history(got_history, want_history)
        assert got_cycles.schema == want_cycles.schema
        assert got_cycles.equals(want_cycles)
        # the materialized table other analyses may read keeps its columns and types
        assert (src.table("member_category_cycles").schema()
                == src.table("reference_category_cycles").schema())
    finally:
        src.close()


def test_the_random_histories_reach_the_cases_that_matter() -> None:
    """The generator makes what the comparison above is about (guards against a generator
    that drifts into trivial histories)."""
    seen = {"same_day": 0, "net_le_0": 0, "no_purchase": 0, "survey": 0, "cycle": 0,
            "habit": 0, "same_day_lines": 0}
    for seed in range(40):
        rows = _random_history(seed)
        src = _source_of(rows)
        try:
            history, cycles = scores.member_history(src), scores.category_cycles(src)
        finally:
            src.close()
        kept = [s for s in rows["sales"] if s[1] is not None and s[8] > 0]
        days = {(s[1], s[4]) for s in kept}
        seen["same_day"] += len(kept) - len(days)
        seen["net_le_0"] += sum(1 for s in rows["sales"] if s[8] <= 0)
        seen["no_purchase"] += int((history.purchases == 0).sum())
        seen["survey"] += int((history.satisfied >= 0).sum())
        seen["cycle"] += cycles.num_rows
        seen["habit"] += int((history.replenishment_categories > 0).sum())
        triples = [(ln[2], ln[5], ln[7]) for ln in rows["lines"]
                   if ln[2] is not None and ln[8] > 0]
        seen["same_day_lines"] += len(triples) - len(set(triples))
    assert all(n >= 5 for n in seen.values()), seen
