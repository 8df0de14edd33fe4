"""Uplift statistics of a campaign against its holdout: pure functions, no database.

Design overview
---------------
A campaign is a randomised experiment: reachable members of the segment are split by a
seeded draw into a *treatment* arm (messaged) and a *control* arm (held out). Both arms are
measured the same way over the same attribution window, and analysed as assigned
(intention to treat): a treated member whose message the gate suppressed stays in the
treatment arm, so the comparison is between two random halves of the same population and
the estimate is the effect of *running the campaign*, not of the message reaching someone.

Two outcomes per member:

* **conversion** (bought at least once in the window): the difference of two proportions
  ``p_t - p_c`` with **Newcombe's hybrid score interval** (Newcombe 1998, "Interval
  estimation for the difference between independent proportions", method 10), built from
  the Wilson score interval of each arm. Unlike the Wald interval it keeps its coverage
  for small arms and for rates near 0 or 1 (typical of campaigns: a few per cent convert)
  and never leaves [-1, 1]. The relative uplift ``p_t / p_c - 1`` uses the Katz log
  interval of the risk ratio (undefined when an arm has no conversions).
* **revenue per member** (net of refunds, zero for members who did not buy): the
  difference of means with **Welch's t interval** (unequal variances, Welch-Satterthwaite
  degrees of freedom). Revenue is skewed, but with hundreds of members per arm the mean is
  close to normal; the simulation in tests/campaigns shows the coverage. The relative
  uplift ``m_t / m_c - 1`` uses the delta method on ``log(m_t / m_c)``.

All intervals are two-sided at ``confidence`` (default 95 %). A result whose interval
includes zero is reported as **no measurable effect yet**, never as a success: see
:func:`verdict`.

Economics (:func:`economics`): incremental revenue = the difference in revenue per member x
the treatment arm's size (its interval scales the same way); incremental margin = that x
the margin %; cost = messages x unit price per channel (SMS per billed segment) + coupon
discounts given; ROI = (incremental margin - cost) / cost, with the interval that follows
from the margin's (cost is known, not estimated). Amounts are in minor units; means and
intervals are floats (estimates, not money moved), totals are rounded to whole minor units.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy import stats as scipy_stats

MIN_ARM = 2  # fewer members than this in an arm: no interval at all
FloatArray = npt.NDArray[np.float64]
VerdictCode = Literal["positive", "negative", "no_measurable_effect", "insufficient_data"]


@dataclass(frozen=True)
class Interval:
    """An estimate with its two-sided confidence interval."""

    estimate: float
    low: float
    high: float

    def includes_zero(self) -> bool:
        return self.low <= 0.0 <= self.high

    def scaled(self, factor: float) -> Interval:
        ends = sorted((self.low * factor, self.high * factor))
        return Interval(self.estimate * factor, ends[0], ends[1])


@dataclass(frozen=True)
class Verdict:
    """What the result allows one to say: a stable code and a sentence."""

    code: VerdictCode
    text: str


def _z(confidence: float) -> float:
    return float(scipy_stats.norm.ppf(0.5 + confidence / 2))


def wilson(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval of a proportion (Wilson 1927)."""
    if n <= 0:
        return 0.0, 1.0
    z = _z(confidence)
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def newcombe_difference(x_t: int, n_t: int, x_c: int, n_c: int,
                        confidence: float = 0.95) -> Interval:
    """``p_t - p_c`` with Newcombe's hybrid score interval (method 10): each arm's Wilson
    interval ``(l, u)``, combined as ``d - sqrt((p_t - l_t)^2 + (u_c - p_c)^2)`` and
    ``d + sqrt((u_t - p_t)^2 + (p_c - l_c)^2)``."""
    p_t, p_c = x_t / n_t, x_c / n_c
    l_t, u_t = wilson(x_t, n_t, confidence)
    l_c, u_c = wilson(x_c, n_c, confidence)
    d = p_t - p_c
    return Interval(d, d - math.sqrt((p_t - l_t) ** 2 + (u_c - p_c) ** 2),
                    d + math.sqrt((u_t - p_t) ** 2 + (p_c - l_c) ** 2))


def risk_ratio_uplift(x_t: int, n_t: int, x_c: int, n_c: int,
                      confidence: float = 0.95) -> Interval | None:
    """``p_t / p_c - 1`` with the Katz log interval of the risk ratio; None when either
    arm has no conversions (the ratio or its variance is undefined)."""
    if x_t == 0 or x_c == 0:
        return None
    ratio = (x_t / n_t) / (x_c / n_c)
    se = math.sqrt(1 / x_t - 1 / n_t + 1 / x_c - 1 / n_c)
    z = _z(confidence)
    return Interval(ratio - 1, ratio * math.exp(-z * se) - 1, ratio * math.exp(z * se) - 1)


@dataclass(frozen=True)
class WelchResult:
    difference: Interval
    relative: Interval | None
    df: float | None


def welch(mean_t: float, var_t: float, n_t: int, mean_c: float, var_c: float, n_c: int,
          confidence: float = 0.95) -> WelchResult:
    """``m_t - m_c`` with Welch's t interval, and ``m_t / m_c - 1`` by the delta method on
    the log ratio (None unless both means are positive). Variances are the sample
    variances (``ddof=1``)."""
    a, b = var_t / n_t, var_c / n_c
    se = math.sqrt(a + b)
    d = mean_t - mean_c
    if se == 0.0:  # no spread at all: the difference is what it is
        return WelchResult(Interval(d, d, d), None if mean_c <= 0 or mean_t <= 0 else
                           Interval(mean_t / mean_c - 1, mean_t / mean_c - 1,
                                    mean_t / mean_c - 1), None)
    df = (a + b) ** 2 / ((a * a / (n_t - 1) if n_t > 1 else 0.0)
                         + (b * b / (n_c - 1) if n_c > 1 else 0.0))
    t = float(scipy_stats.t.ppf(0.5 + confidence / 2, df))
    relative = None
    if mean_t > 0 and mean_c > 0:
        se_log = math.sqrt(a / mean_t ** 2 + b / mean_c ** 2)
        ratio = mean_t / mean_c
        relative = Interval(ratio - 1, ratio * math.exp(-t * se_log) - 1,
                            ratio * math.exp(t * se_log) - 1)
    return WelchResult(Interval(d, d - t * se, d + t * se), relative, df)


@dataclass(frozen=True)
class ArmSummary:
    """One arm's outcomes over the attribution window."""

    members: int
    converted: int
    revenue_minor: int
    revenue_sd_minor: float  # sample standard deviation of revenue per member

    @property
    def conversion_rate(self) -> float:
        return self.converted / self.members if self.members else 0.0

    @property
    def revenue_per_member_minor(self) -> float:
        return self.revenue_minor / self.members if self.members else 0.0


def summarise(converted: npt.ArrayLike, revenue_minor: npt.ArrayLike) -> ArmSummary:
    """An arm from per-member outcomes (bought in the window: bool; revenue: minor units)."""
    bought = np.asarray(converted, dtype=bool)
    revenue = np.asarray(revenue_minor, dtype=np.float64)
    n = int(revenue.size)
    return ArmSummary(members=n, converted=int(bought.sum()), revenue_minor=int(revenue.sum()),
                      revenue_sd_minor=float(revenue.std(ddof=1)) if n > 1 else 0.0)


@dataclass(frozen=True)
class Comparison:
    """Treatment against control: absolute and relative uplift of both outcomes."""

    treatment: ArmSummary
    control: ArmSummary
    confidence: float
    conversion_uplift: Interval | None  # percentage points as a fraction (0.021 = 2.1 pt)
    conversion_relative: Interval | None
    revenue_uplift_minor: Interval | None  # per member
    revenue_relative: Interval | None
    revenue_df: float | None

    @property
    def enough_data(self) -> bool:
        return self.treatment.members >= MIN_ARM and self.control.members >= MIN_ARM


def compare(treatment: ArmSummary, control: ArmSummary,
            confidence: float = 0.95) -> Comparison:
    """Uplift of ``treatment`` over ``control`` (see the module docstring for the methods);
    intervals are None when an arm has fewer than :data:`MIN_ARM` members."""
    if treatment.members < MIN_ARM or control.members < MIN_ARM:
        return Comparison(treatment, control, confidence, None, None, None, None, None)
    conversion = newcombe_difference(treatment.converted, treatment.members,
                                     control.converted, control.members, confidence)
    relative = risk_ratio_uplift(treatment.converted, treatment.members,
                                 control.converted, control.members, confidence)
    revenue = welch(treatment.revenue_per_member_minor, treatment.revenue_sd_minor ** 2,
                    treatment.members, control.revenue_per_member_minor,
                    control.revenue_sd_minor ** 2, control.members, confidence)
    return Comparison(treatment, control, confidence, conversion, relative,
                      revenue.difference, revenue.relative, revenue.df)


def compare_outcomes(treatment_converted: npt.ArrayLike, treatment_revenue: npt.ArrayLike,
                     control_converted: npt.ArrayLike, control_revenue: npt.ArrayLike,
                     confidence: float = 0.95) -> Comparison:
    """:func:`compare` from per-member outcomes."""
    return compare(summarise(treatment_converted, treatment_revenue),
                   summarise(control_converted, control_revenue), confidence)


@dataclass(frozen=True)
class Economics:
    """What the campaign earned and cost, in minor units."""

    incremental_revenue_minor: Interval | None
    incremental_margin_minor: Interval | None
    message_cost_minor: int
    coupon_cost_minor: int
    roi: Interval | None  # (incremental margin - cost) / cost; None when nothing was spent

    @property
    def cost_minor(self) -> int:
        return self.message_cost_minor + self.coupon_cost_minor


def economics(comparison: Comparison, *, margin_pct: float, message_cost_minor: int,
              coupon_cost_minor: int) -> Economics:
    """Incremental revenue and margin of the treatment arm, the cost and the ROI."""
    uplift = comparison.revenue_uplift_minor
    n = comparison.treatment.members
    revenue = uplift.scaled(n) if uplift is not None else None
    margin = revenue.scaled(margin_pct / 100) if revenue is not None else None
    cost = message_cost_minor + coupon_cost_minor
    roi = None
    if margin is not None and cost > 0:
        roi = Interval((margin.estimate - cost) / cost, (margin.low - cost) / cost,
                       (margin.high - cost) / cost)
    return Economics(revenue, margin, message_cost_minor, coupon_cost_minor, roi)


def verdict(interval: Interval | None, *, what: str, unit: str = "",
            scale: float = 1.0, confidence: float = 0.95) -> Verdict:
    """``positive`` / ``negative`` only when the interval excludes zero; otherwise ``no
    measurable effect yet`` (or ``insufficient_data`` without an interval), with a
    sentence quoting the interval in ``unit`` after multiplying by ``scale``."""
    level = f"{confidence * 100:g} %"
    if interval is None:
        return Verdict("insufficient_data",
                       f"Not enough members in one of the arms to estimate the {what}.")
    low, high, mid = interval.low * scale, interval.high * scale, interval.estimate * scale
    quoted = f"{mid:+.2f}{unit} ({level} interval {low:+.2f}{unit} to {high:+.2f}{unit})"
    if interval.low > 0:
        return Verdict("positive", f"The campaign raised the {what}: {quoted}.")
    if interval.high < 0:
        return Verdict("negative", f"The campaign lowered the {what}: {quoted}.")
    return Verdict("no_measurable_effect",
                   f"No measurable effect yet on the {what}: {quoted} includes zero.")
