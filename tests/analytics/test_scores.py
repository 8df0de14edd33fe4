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
    fitted = scores.fit(history)
    table = scores.score(history, fitted)
    rows = {r["member_id"]: r for r in table.to_pylist()}
    return {"ids": ids, "rows": {k: rows[str(v)] for k, v in ids.items() if str(v) in rows},
            "history": history, "cycles": cycles.to_pylist(), "fit": fitted, "sales": sales}


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
