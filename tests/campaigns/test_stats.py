"""The uplift statistics, without a database: known values, simulated campaigns with and
without an effect, and the economics on a hand-built example."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from patron.campaigns import stats


def test_wilson_interval_matches_the_published_example() -> None:
    # Newcombe (1998), table I: 81/263 -> 0.2553 to 0.3662
    low, high = stats.wilson(81, 263)
    assert low == pytest.approx(0.2553, abs=5e-4)
    assert high == pytest.approx(0.3662, abs=5e-4)


def test_newcombe_difference_matches_the_published_examples() -> None:
    # Newcombe (1998), table II, method 10: 56/70 - 48/80 -> 0.0524 to 0.3339
    d = stats.newcombe_difference(56, 70, 48, 80)
    assert d.estimate == pytest.approx(0.2)
    assert d.low == pytest.approx(0.0524, abs=5e-4)
    assert d.high == pytest.approx(0.3339, abs=5e-4)
    # 9/10 - 3/10 -> 0.1705 to 0.8090
    d = stats.newcombe_difference(9, 10, 3, 10)
    assert (d.low, d.high) == (pytest.approx(0.1705, abs=5e-4), pytest.approx(0.8090, abs=5e-4))
    # no conversions at all: the interval still has width and includes zero
    d = stats.newcombe_difference(0, 50, 0, 50)
    assert d.low < 0 < d.high


def test_welch_interval_agrees_with_scipy() -> None:
    rng = np.random.default_rng(1)
    a = rng.gamma(0.5, 4000, 300)
    b = rng.gamma(0.5, 3000, 120)
    result = stats.welch(a.mean(), a.var(ddof=1), a.size, b.mean(), b.var(ddof=1), b.size)
    reference = scipy_stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert result.difference.low == pytest.approx(reference.low)
    assert result.difference.high == pytest.approx(reference.high)
    assert result.relative is not None
    assert result.relative.estimate == pytest.approx(a.mean() / b.mean() - 1)


def test_relative_uplift_of_proportions_is_katz() -> None:
    rel = stats.risk_ratio_uplift(30, 200, 10, 100)
    assert rel is not None
    se = math.sqrt(1 / 30 - 1 / 200 + 1 / 10 - 1 / 100)
    assert rel.estimate == pytest.approx(0.5)
    assert rel.low == pytest.approx(1.5 * math.exp(-1.959964 * se) - 1, rel=1e-5)
    assert stats.risk_ratio_uplift(3, 100, 0, 100) is None


def _simulate(rng: np.random.Generator, n_t: int, n_c: int, p_t: float, p_c: float,
              spend_t: float, spend_c: float) -> stats.Comparison:
    """Members buy with probability p; a buyer's revenue is gamma distributed (skewed)."""
    def arm(n: int, p: float, spend: float) -> tuple[np.ndarray, np.ndarray]:
        bought = rng.random(n) < p
        revenue = np.where(bought, rng.gamma(1.5, spend / 1.5, n).round(), 0.0)
        return bought, revenue
    return stats.compare_outcomes(*arm(n_t, p_t, spend_t), *arm(n_c, p_c, spend_c))


def test_an_a_a_campaign_shows_no_effect_in_at_least_90_percent_of_runs() -> None:
    """50 seeded A/A campaigns (treatment = control): the 95 % intervals include zero in
    at least 90 % of runs, for conversion and for revenue per member."""
    conversion_hits = revenue_hits = 0
    for seed in range(50):
        rng = np.random.default_rng(seed)
        result = _simulate(rng, 1800, 200, 0.08, 0.08, 12_000, 12_000)
        assert result.conversion_uplift is not None
        assert result.revenue_uplift_minor is not None
        conversion_hits += result.conversion_uplift.includes_zero()
        revenue_hits += result.revenue_uplift_minor.includes_zero()
        verdict = stats.verdict(result.revenue_uplift_minor, what="revenue per member")
        assert verdict.code in ("no_measurable_effect", "positive", "negative")
        if result.revenue_uplift_minor.includes_zero():
            assert verdict.code == "no_measurable_effect"
            assert "No measurable effect yet" in verdict.text
    assert conversion_hits >= 45
    assert revenue_hits >= 45


def test_a_real_effect_is_found_and_its_interval_excludes_zero() -> None:
    result = _simulate(np.random.default_rng(7), 9000, 1000, 0.12, 0.06, 15_000, 12_000)
    assert result.conversion_uplift is not None and result.conversion_uplift.low > 0
    assert result.revenue_uplift_minor is not None and result.revenue_uplift_minor.low > 0
    assert stats.verdict(result.conversion_uplift, what="conversion").code == "positive"


def test_an_arm_too_small_gives_no_interval_and_says_so() -> None:
    result = stats.compare(stats.summarise([True], [100]), stats.summarise([False] * 5, [0] * 5))
    assert result.conversion_uplift is None and not result.enough_data
    assert stats.verdict(result.conversion_uplift, what="conversion").code == \
        "insufficient_data"


def test_economics_on_a_hand_built_example() -> None:
    """Treatment: 4 members spending 0, 100, 200, 300 (mean 150); control: 2 members
    spending 0 and 100 (mean 50). Uplift 100 per member; x 4 treated = 400 incremental
    revenue; 30 % margin = 120; cost 40 (messages) + 20 (coupons) = 60; ROI = (120-60)/60 = 1."""
    treatment = stats.summarise([False, True, True, True], [0, 100, 200, 300])
    control = stats.summarise([False, True], [0, 100])
    assert (treatment.members, treatment.converted, treatment.revenue_minor) == (4, 3, 600)
    assert treatment.revenue_per_member_minor == 150
    assert treatment.revenue_sd_minor == pytest.approx(np.std([0, 100, 200, 300], ddof=1))
    comparison = stats.compare(treatment, control)
    assert comparison.conversion_uplift is not None
    assert comparison.conversion_uplift.estimate == pytest.approx(0.25)
    money = stats.economics(comparison, margin_pct=30, message_cost_minor=40,
                            coupon_cost_minor=20)
    assert money.incremental_revenue_minor is not None
    assert money.incremental_revenue_minor.estimate == pytest.approx(400)
    assert money.incremental_margin_minor is not None
    assert money.incremental_margin_minor.estimate == pytest.approx(120)
    assert money.cost_minor == 60
    assert money.roi is not None and money.roi.estimate == pytest.approx(1.0)
    # the intervals scale with the uplift's: 4 x and 0.3 x 4 x
    uplift = comparison.revenue_uplift_minor
    assert uplift is not None
    assert money.incremental_revenue_minor.low == pytest.approx(uplift.low * 4)
    assert money.roi.low == pytest.approx((uplift.low * 4 * 0.3 - 60) / 60)
    assert stats.economics(comparison, margin_pct=30, message_cost_minor=0,
                           coupon_cost_minor=0).roi is None
