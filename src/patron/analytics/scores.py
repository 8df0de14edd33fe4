"""Per-member scores as of one day: RFM, purchase models, CLV, lifecycle, loyalty, bonds.

Design overview
---------------
Three steps, each vectorised over all members (no per-member Python):

1. :func:`member_history` and :func:`category_cycles` summarise the canonical tables of a
   ``source.Source`` with Ibis expressions (they run in DuckDB here, and would run on any
   Ibis backend) into one row per active member, and one per member and category.
2. :func:`fit` fits BG/NBD and Gamma-Gamma (``analytics.models``) on the whole history's
   compressed sufficient statistics, time in days.
3. :func:`score` turns history and models into the ``member_scores`` columns with NumPy.

Purchases: a member's sales with a positive net (what the shop kept after refunds booked
before the cutoff) grouped by the store-local day: several sales on one day are one
purchase, valued at their sum, timed at the first (the CDNOW convention of
``models.summary``). For the models, t_x and T keep the data's resolution (seconds, shown
in days) and T runs to the cutoff.

What each score means, and its rule:

* recency_days, frequency (= purchases − 1), monetary_minor (mean net per purchase) and
  the RFM scores and segment: ``rfm``.
* p_alive, expected_30/90/365 (purchases in the next 30/90/365 days): BG/NBD;
  expected_spend_minor: Gamma-Gamma's posterior mean value of a purchase; clv_minor: the
  discounted expected margin over ``ScoreConfig.clv_months`` (default 12 months, margin
  0.3, monthly discount 0.01): ``models.clv``.
* lifecycle_stage and next_purchase_on: ``lifecycle``.
* satisfaction and loyalty_type (Dick & Basu's attitude × behaviour grid):
  satisfaction is that of the member's latest survey answer (satisfied when CSAT ≥ 4 or
  NPS ≥ 9, else dissatisfied; unknown without an answer). A member is *repeating* when
  they made at least two purchases in the last 365 days. Then trust = satisfied and
  repeating, inertia = repeating but dissatisfied, latent = satisfied but not repeating,
  none = neither. Without a survey the attitude is unknown and behaviour alone decides:
  repeating members are counted as inertia (repeat patronage with no measured attachment
  is what the grid calls inertia), the others as none; ``satisfaction`` = unknown tells
  them apart from measured inertia.
* category cycles: per member and category with at least two purchase days, the median
  of the member's own intervals shrunk toward the category's median interval (over all
  members' intervals) with weight n / (n + 2), n = the member's intervals (as
  ``care.replenishment`` shrinks toward the configured cycle); next due = last purchase
  day + the interval. A category with n ≥ 3 (three or more repeat purchases) is a
  replenishment habit.
* bonds, Berry & Parasuraman's three levels of retention marketing, each the mean of its
  components in [0, 1]:

  - financial: points balance and stored-value balance, each v / (v + h) with h the
    median positive balance among members (half way at a typical balance, scale-free);
    a paid membership or paid tier (0/1); unused coupons n / (n + 1);
  - social: referrals made, survey replies, callback calls logged, each n / (n + 1);
  - structural: an active prepaid package (0/1), a replenishment habit (0/1), saved
    preferences (0/1), years of history (since joining or the first purchase, whichever
    is earlier) / 3, capped at 1.

  ``next_bond`` names the cheapest missing action of the weakest level (ties go to the
  cheaper level: financial, social, structural); if that level lacks nothing the next
  weakest is tried; none when nothing is missing. Actions per level, cheapest first:
  financial issue_coupon, award_points, offer_wallet_topup, offer_paid_membership;
  social invite_survey, invite_referral, schedule_callback; structural
  record_preferences, suggest_replenishment, offer_prepaid_package.

Money comes out as integer minor units, estimates rounded half up.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
from numpy.typing import NDArray

from patron.analytics import lifecycle, rfm
from patron.analytics.models import bgnbd, clv, gamma_gamma
from patron.analytics.models.summary import TimeUnit, compress
from patron.analytics.source import Source
from patron.analytics.warehouse import GAPS, PAIRS, TOTALS
from patron.core.errors import ValidationFailed

SECONDS_PER_DAY = 86_400.0
HORIZONS = (30, 90, 365)
REPEATING_PURCHASES_365 = 2  # purchases in the last year to count as repeating
HABIT_INTERVALS = 3  # repeat purchases in a category to call it a habit
CYCLE_PRIOR_STRENGTH = 2.0  # k in n / (n + k)
HISTORY_FULL_YEARS = 3.0

ACTIONS: tuple[tuple[str, str], ...] = (  # (level, action), cheapest first within a level
    ("financial", "issue_coupon"), ("financial", "award_points"),
    ("financial", "offer_wallet_topup"), ("financial", "offer_paid_membership"),
    ("social", "invite_survey"), ("social", "invite_referral"),
    ("social", "schedule_callback"),
    ("structural", "record_preferences"), ("structural", "suggest_replenishment"),
    ("structural", "offer_prepaid_package"),
)
LEVELS = ("financial", "social", "structural")

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class ScoreConfig:
    """Knobs of a scoring run: CLV horizon, margin, discounting, lifecycle thresholds."""

    clv_months: int = 12
    margin: float = 0.3
    monthly_discount: float = 0.01
    thresholds: lifecycle.Thresholds = field(default_factory=lifecycle.Thresholds)

    def __post_init__(self) -> None:
        if self.clv_months < 1:
            raise ValidationFailed("the CLV horizon is at least one month", "clv_months")
        if not 0.0 <= self.margin <= 1.0:
            raise ValidationFailed("margin is a share of spend, between 0 and 1", "margin")
        if self.monthly_discount < 0:
            raise ValidationFailed("the discount rate cannot be negative", "monthly_discount")


# ---------------------------------------------------------------- 1. summaries (Ibis)


def _purchase_days(sales: Any) -> Any:
    """One row per member and store-local day with a kept (positive-net) sale, from the
    canonical ``sales``."""
    s = sales.filter(sales.member_id.notnull() & (sales.net_minor > 0))
    return s.group_by(["member_id", "occurred_on"]).aggregate(
        at=s.occurred_at.min(), net=_bigint(s.net_minor.sum()))


def _bigint(total: Any) -> Any:
    """A sum of BIGINTs (never NULL) as a BIGINT. DuckDB widens such a sum to HUGEINT,
    which Arrow receives as decimal128 (0.3-0.4 s a column at a million members, and as
    much again into NumPy); a member's money fits a BIGINT. Ibis drops a cast to the type
    it believes the sum already has, so the cast names the non-null type."""
    return total.cast("!int64")


def purchase_totals_expr(sales: Any) -> Any:
    """Per member with a kept purchase, what does not depend on the day scored: number of
    purchases, first and last purchase (time and local day), the first purchase's net and
    the total net, from the canonical ``sales`` (an Ibis table). The warehouse keeps this
    table between nights and updates only the members whose sales changed
    (``analytics.warehouse``); ``member_history`` and ``model_inputs`` read it from there
    when the source has it."""
    d = _purchase_days(sales)
    return d.group_by("member_id").aggregate(
        purchases=d.count(), first_at=d.at.min(), last_at=d.at.max(),
        first_on=d.occurred_on.min(), last_on=d.occurred_on.max(),
        first_net=d.net.argmin(d.at), total_net=_bigint(d.net.sum()))


def category_gaps_expr(lines: Any) -> Any:
    """Ibis expression: every gap in days between consecutive purchase days of a member in
    a category (with the later day), from the canonical ``lines``."""
    import ibis

    ln = lines.filter(lines.member_id.notnull() & (lines.quantity > 0))
    # The gaps between a pair's consecutive purchase days, without a DISTINCT first: over
    # the lines sorted by day, a line whose predecessor is on an earlier day starts a new
    # day and its gap is that of the distinct days; later lines of the same day have gap 0
    # and the pair's first line none. Keeping gap > 0 gives exactly the distinct days'
    # gaps (dropping the DISTINCT of the 10 M lines saved a third of this query's CPU).
    ln = ln.select("member_id", "category_id", "occurred_on")
    w = ibis.window(group_by=["member_id", "category_id"], order_by="occurred_on")
    ln = ln.mutate(prev_on=ln.occurred_on.lag().over(w))
    ln = ln.mutate(gap=ln.occurred_on.delta(ln.prev_on, unit="day"))
    return ln.filter(ln.gap > 0).select("member_id", "category_id", "occurred_on", "gap")


def pair_cycles_expr(gaps: Any) -> Any:
    """Ibis expression: per member and category with a gap, the member's own figures."""
    return gaps.group_by(["member_id", "category_id"]).aggregate(
        intervals=gaps.count(), own_median_days=gaps.gap.median(),
        last_purchase_on=gaps.occurred_on.max())


def category_cycles_expr(src: Source) -> Any:
    """Ibis expression: per member and category with >= 2 purchase days, the shrunk cycle.

    The gaps and each pair's own figures depend only on that member's lines, so the
    warehouse keeps them and updates only the members whose sales changed; then only the
    pooled medians and the shrinking are computed here."""
    if GAPS in src.loaded and PAIRS in src.loaded:
        gaps, own = src.table(GAPS), src.table(PAIRS)
    else:
        gaps = category_gaps_expr(src.lines)
        own = pair_cycles_expr(gaps)
    pooled = gaps.group_by("category_id").aggregate(category_median_days=gaps.gap.median())
    cycles = own.join(pooled, "category_id")
    n = cycles.intervals.cast("float64")
    weight = n / (n + CYCLE_PRIOR_STRENGTH)
    return cycles.mutate(
        interval_days=weight * cycles.own_median_days
        + (1.0 - weight) * cycles.category_median_days,
    ).select("member_id", "category_id", "intervals", "own_median_days",
             "category_median_days", "interval_days", "last_purchase_on")


def category_cycles_table(src: Source) -> Any:
    """The cycles, computed once per source (``member_history`` and the snapshot share them)."""
    return src.materialize("member_category_cycles", category_cycles_expr(src))


def category_cycles(src: Source) -> pa.Table:
    """The ``category_cycles`` rows (without as_of), in key order, with the due day."""
    table = category_cycles_table(src).order_by(["member_id", "category_id"]).to_pyarrow()
    last = table.column("last_purchase_on").to_numpy().astype("datetime64[D]")
    interval = table.column("interval_days").to_numpy()
    due = last + np.floor(interval + 0.5).astype("timedelta64[D]")
    return table.append_column("next_due_on", pa.array(due, type=pa.date32()))


@dataclass(frozen=True)
class MemberHistory:
    """One entry per active member (joined by the cutoff), parallel arrays.

    Purchase fields are 0 / NaT for members without a purchase. ``satisfied`` is 1, 0 or
    -1 (no survey answer).
    """

    member_id: pa.Array  # UUID text, hyphenated
    as_of: date
    cutoff: datetime
    joined_at: NDArray[np.datetime64]
    purchases: NDArray[np.int64]
    first_at: NDArray[np.datetime64]
    last_at: NDArray[np.datetime64]
    first_on: NDArray[np.datetime64]
    last_on: NDArray[np.datetime64]
    first_net: NDArray[np.int64]
    total_net: NDArray[np.int64]
    net_90: NDArray[np.int64]
    net_prev_90: NDArray[np.int64]
    net_365: NDArray[np.int64]
    purchases_365: NDArray[np.int64]
    satisfied: NDArray[np.int8]
    replenishment_categories: NDArray[np.int64]
    points_available: NDArray[np.int64]
    wallet_minor: NDArray[np.int64]
    paid_membership: NDArray[np.bool_]
    unused_coupons: NDArray[np.int64]
    referrals_made: NDArray[np.int64]
    survey_replies: NDArray[np.int64]
    callback_calls: NDArray[np.int64]
    prepaid_packages: NDArray[np.int64]
    has_preferences: NDArray[np.bool_]

    def __len__(self) -> int:
        return int(self.purchases.shape[0])

    @property
    def bought(self) -> NDArray[np.bool_]:
        return np.asarray(self.purchases > 0)

    @property
    def frequency(self) -> NDArray[np.int64]:
        """Repeat purchases (0 for non-buyers too; mask with ``bought``)."""
        return np.maximum(self.purchases - 1, 0)

    @property
    def t_x_days(self) -> FloatArray:
        """BG/NBD recency: last purchase time − first, in days (seconds resolution)."""
        t = (_seconds_of(self.last_at) - _seconds_of(self.first_at)) / SECONDS_PER_DAY
        return np.where(self.bought, t, np.nan)

    @property
    def age_days(self) -> FloatArray:
        """BG/NBD T: cutoff − first purchase time, in days."""
        t = (_cutoff_seconds(self.cutoff) - _seconds_of(self.first_at)) / SECONDS_PER_DAY
        return np.where(self.bought, t, np.nan)

    @property
    def repeat_monetary(self) -> FloatArray:
        """Mean net of the repeat purchases (Gamma-Gamma's m), 0 without any."""
        x = self.frequency
        return np.where(x > 0, (self.total_net - self.first_net) / np.maximum(x, 1), 0.0)

    def model_inputs(self) -> ModelInputs:
        """The buyers' model inputs (``fit`` and ``predict``)."""
        b = self.bought
        return ModelInputs(member_id=self.member_id.filter(pa.array(b)),
                           frequency=self.frequency[b], t_x_days=self.t_x_days[b],
                           age_days=self.age_days[b], repeat_monetary=self.repeat_monetary[b])


@dataclass(frozen=True)
class ModelInputs:
    """What BG/NBD and Gamma-Gamma see of each buyer, time in days at the data's
    resolution: x (repeat purchases), t_x, T and the mean net of the repeat purchases."""

    member_id: pa.Array  # the buyers, in member id order
    frequency: NDArray[np.int64]
    t_x_days: FloatArray
    age_days: FloatArray
    repeat_monetary: FloatArray

    def __len__(self) -> int:
        return int(self.frequency.shape[0])

    def part(self, start: int, stop: int) -> ModelInputs:
        return ModelInputs(member_id=self.member_id.slice(start, stop - start),
                           frequency=self.frequency[start:stop],
                           t_x_days=self.t_x_days[start:stop],
                           age_days=self.age_days[start:stop],
                           repeat_monetary=self.repeat_monetary[start:stop])


def _seconds_of(at: NDArray[np.datetime64]) -> FloatArray:
    return at.astype("datetime64[s]").astype(np.int64).astype(np.float64)


def _cutoff_seconds(cutoff: datetime) -> float:
    return float(int(np.datetime64(cutoff.replace(tzinfo=None), "s").astype(np.int64)))


def _int64s(column: pa.ChunkedArray) -> NDArray[np.int64]:
    """An integer column as int64 NumPy. DuckDB widens a BIGINT sum to HUGEINT, which
    reaches Arrow as decimal128 and NumPy, unconverted, as Python ``Decimal`` objects (some
    0.3-0.4 s a column at a million members); Arrow's cast is vectorised, and refuses a
    value that does not fit."""
    if not pa.types.is_int64(column.type):
        column = column.cast(pa.int64())
    return np.asarray(column.to_numpy(), dtype=np.int64)


def _days_between(later: np.datetime64 | NDArray[np.datetime64],
                  earlier: NDArray[np.datetime64]) -> FloatArray:
    """Whole days from ``earlier`` to ``later`` as floats, NaN where a date is missing."""
    delta = (np.asarray(later).astype("datetime64[D]")
             - earlier.astype("datetime64[D]")).astype("timedelta64[D]")
    out: FloatArray = delta.astype(np.float64)
    out[np.isnat(delta)] = np.nan
    return out


def _purchase_figures(src: Source) -> Any:
    """Per member with a kept purchase: the purchase fields of ``MemberHistory`` (Ibis).

    With the purchase totals kept by the warehouse, only the windows of the last year are
    summed from the sales; otherwise everything is, in one pass.
    """
    import ibis

    as_of = src.as_of
    since_90 = ibis.literal(as_of - timedelta(days=90))
    since_180 = ibis.literal(as_of - timedelta(days=180))
    since_365 = ibis.literal(as_of - timedelta(days=365))
    sales = src.sales
    kept = TOTALS in src.loaded
    d = _purchase_days(sales.filter(sales.occurred_on > since_365) if kept else sales)
    day = d.occurred_on
    windows = {
        "net_90": _bigint(d.net.sum(where=day > since_90).fill_null(0)),
        "net_prev_90": _bigint(d.net.sum(where=(day > since_180) & (day <= since_90))
                               .fill_null(0)),
        "net_365": _bigint(d.net.sum(where=day > since_365).fill_null(0)),
        "purchases_365": d.count(where=day > since_365),
    }
    if kept:
        recent = d.group_by("member_id").aggregate(**windows)
        return (src.table(TOTALS).left_join(recent, "member_id")
                .drop("member_id_right"))
    return d.group_by("member_id").aggregate(
        purchases=d.count(),
        first_at=d.at.min(), last_at=d.at.max(),
        first_on=day.min(), last_on=day.max(),
        first_net=d.net.argmin(d.at),
        total_net=_bigint(d.net.sum()),
        **windows,
    )


def _active_members(src: Source) -> Any:
    members = src.members
    return members.filter(members.status == "active").select("member_id", "joined_at")


def member_history(src: Source) -> MemberHistory:
    """Summarise the source into one row per active member (see the module docstring)."""
    as_of = src.as_of
    per = _purchase_figures(src)
    sv = src.surveys
    sv = sv.mutate(ok=(sv.csat >= 4).fill_null(False) | (sv.nps >= 9).fill_null(False))
    latest = sv.group_by("member_id").aggregate(satisfied=sv.ok.argmax(sv.answered_at))
    cycles = category_cycles_table(src)
    habitual = cycles.filter(cycles.intervals >= HABIT_INTERVALS)
    habits = habitual.group_by("member_id").aggregate(replenishment_categories=habitual.count())
    joined = (_active_members(src).left_join(per, "member_id").drop("member_id_right")
              .left_join(src.holdings, "member_id").drop("member_id_right")
              .left_join(latest, "member_id").drop("member_id_right")
              .left_join(habits, "member_id").drop("member_id_right")
              .order_by("member_id"))
    table = joined.to_pyarrow()

    def ints(name: str) -> NDArray[np.int64]:
        return _int64s(table.column(name).fill_null(0))

    def bools(name: str) -> NDArray[np.bool_]:
        return np.asarray(table.column(name).fill_null(False).to_numpy(), dtype=bool)

    def times(name: str, unit: str) -> NDArray[np.datetime64]:
        col = table.column(name)
        if pa.types.is_timestamp(col.type):
            col = col.cast(pa.timestamp("us"))
        return np.asarray(col.to_numpy(zero_copy_only=False)).astype(f"datetime64[{unit}]")

    satisfied_col = table.column("satisfied")
    satisfied = np.where(satisfied_col.is_null().to_numpy(zero_copy_only=False), -1,
                         satisfied_col.fill_null(False).to_numpy(zero_copy_only=False)
                         .astype(np.int8)).astype(np.int8)
    return MemberHistory(
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


def model_inputs(src: Source) -> ModelInputs:
    """The active members' model inputs straight from the sales, without the rest of
    ``member_history`` (surveys, holdings, category cycles, the windows): what
    ``patron analytics fit`` needs, the same figures ``member_history`` gives."""
    kept = TOTALS in src.loaded
    per = src.table(TOTALS) if kept else purchase_totals_expr(src.sales)
    if "inactive_members" in src.loaded:  # every buyer is a member: all but these
        buyers = per.anti_join(src.table("inactive_members"), "member_id")
    else:
        buyers = per.join(_active_members(src).select("member_id"), "member_id")
    table = (buyers.order_by("member_id")
             .select("member_id", "purchases", "first_at", "last_at", "first_net", "total_net")
             .to_pyarrow())

    def ints(name: str) -> NDArray[np.int64]:
        return _int64s(table.column(name))

    def seconds(name: str) -> FloatArray:
        col = table.column(name).cast(pa.timestamp("us"))
        return _seconds_of(np.asarray(col.to_numpy(zero_copy_only=False)))

    first, last = seconds("first_at"), seconds("last_at")
    x = ints("purchases") - 1
    repeat = np.where(x > 0, (ints("total_net") - ints("first_net")) / np.maximum(x, 1), 0.0)
    return ModelInputs(member_id=table.column("member_id").combine_chunks(), frequency=x,
                       t_x_days=(last - first) / SECONDS_PER_DAY,
                       age_days=(_cutoff_seconds(src.cutoff) - first) / SECONDS_PER_DAY,
                       repeat_monetary=repeat)


# ---------------------------------------------------------------- 2. models


@dataclass(frozen=True)
class Fit:
    """The fitted models (None when the history cannot identify them) and what they saw."""

    model: clv.CLVModel | None
    params: dict[str, Any]


def fit(history: MemberHistory | ModelInputs, *, unit: TimeUnit = TimeUnit.DAYS) -> Fit:
    """BG/NBD on the buyers' compressed (x, t_x, T); Gamma-Gamma on the repeat buyers.

    Scores use days (the default); ``unit`` only rescales time (and so alpha) for people
    who read parameters in weeks.
    """
    inputs = history.model_inputs() if isinstance(history, MemberHistory) else history
    x = inputs.frequency
    t_x = inputs.t_x_days / unit.days
    age = inputs.age_days / unit.days
    params: dict[str, Any] = {"unit": unit.value, "customers": len(inputs),
                              "repeat_buyers": int((x > 0).sum())}
    try:
        rows = compress(x, t_x, age)
        params["rows"] = len(rows)
        bg = bgnbd.fit(rows)
        gg = gamma_gamma.fit(x, inputs.repeat_monetary)
    except ValidationFailed as exc:
        params["error"] = exc.message
        return Fit(model=None, params=params)
    params.update({"r": bg.r, "alpha": bg.alpha, "a": bg.a, "b": bg.b, "loglik": bg.loglik,
                   "p": gg.p, "q": gg.q, "v": gg.v, "gamma_gamma_loglik": gg.loglik,
                   "gamma_gamma_customers": gg.n_customers})
    unsettled = [f"bgnbd.{n}" for n in bg.unsettled()] + [f"gamma_gamma.{n}"
                                                           for n in gg.unsettled()]
    if unsettled:
        params["unsettled"] = unsettled
    return Fit(model=clv.CLVModel(bgnbd=bg, gamma_gamma=gg, unit=unit), params=params)


# ---------------------------------------------------------------- 3. scores (NumPy)


def _round_half_up(values: FloatArray) -> NDArray[np.int64]:
    return np.floor(values + 0.5).astype(np.int64)


def _saturate(values: NDArray[np.int64], half: float) -> FloatArray:
    v = np.maximum(values.astype(np.float64), 0.0)
    return v / (v + half)


def _typical(values: NDArray[np.int64]) -> float:
    positive = values[values > 0]
    return float(np.median(positive)) if positive.size else 1.0


def loyalty_types(satisfied: NDArray[np.int8], repeating: NDArray[np.bool_]
                  ) -> tuple[NDArray[np.object_], NDArray[np.object_]]:
    """(satisfaction word, loyalty type) per member; see the module docstring."""
    satisfaction = np.select([satisfied == 1, satisfied == 0],
                             ["satisfied", "dissatisfied"], "unknown").astype(object)
    sat = satisfied == 1
    kind = np.select([sat & repeating, repeating, sat], ["trust", "inertia", "latent"], "none")
    return satisfaction, kind.astype(object)


@dataclass(frozen=True)
class Bonds:
    financial: FloatArray
    social: FloatArray
    structural: FloatArray
    next_bond: NDArray[np.object_]  # None where nothing is missing


def bonds(history: MemberHistory) -> Bonds:
    """Bond strength at the three retention levels and the next bond worth building."""
    h = history
    coupons = h.unused_coupons.astype(np.float64)
    financial = np.stack([_saturate(h.points_available, _typical(h.points_available)),
                          _saturate(h.wallet_minor, _typical(h.wallet_minor)),
                          h.paid_membership.astype(np.float64),
                          coupons / (coupons + 1.0)]).mean(axis=0)
    counts = [h.referrals_made, h.survey_replies, h.callback_calls]
    social = np.stack([c / (c + 1.0) for c in (v.astype(np.float64) for v in counts)]
                      ).mean(axis=0)
    start = h.joined_at.astype("datetime64[D]")
    first = h.first_on.astype("datetime64[D]")
    earliest = np.where(~np.isnat(first) & (first < start), first, start)
    years = _days_between(np.datetime64(h.as_of, "D"), earliest) / 365.25
    history_part = np.clip(np.nan_to_num(years, nan=0.0) / HISTORY_FULL_YEARS, 0.0, 1.0)
    structural = np.stack([(h.prepaid_packages > 0).astype(np.float64),
                           (h.replenishment_categories > 0).astype(np.float64),
                           h.has_preferences.astype(np.float64), history_part]).mean(axis=0)

    missing = np.stack([h.unused_coupons == 0, h.points_available <= 0, h.wallet_minor <= 0,
                        ~h.paid_membership,
                        h.survey_replies == 0, h.referrals_made == 0, h.callback_calls == 0,
                        ~h.has_preferences, h.replenishment_categories == 0,
                        h.prepaid_packages == 0], axis=1)
    level_scores = np.stack([financial, social, structural], axis=1)
    # rank of each level for each member: weakest first, ties to the cheaper level
    order = np.argsort(level_scores, axis=1, kind="stable")
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(3)[None, :].repeat(len(h), axis=0), axis=1)
    level_of = np.array([LEVELS.index(level) for level, _ in ACTIONS])
    key = rank[:, level_of] * len(ACTIONS) + np.arange(len(ACTIONS))[None, :]
    key = np.where(missing, key, np.iinfo(np.int64).max)
    best = np.argmin(key, axis=1)
    names = np.array([action for _, action in ACTIONS] + [None], dtype=object)
    best = np.where(missing.any(axis=1), best, len(ACTIONS))
    return Bonds(financial=financial, social=social, structural=structural,
                 next_bond=np.asarray(names[best], dtype=object))


def _float_col(values: FloatArray) -> pa.Array:
    return pa.array(values, type=pa.float64(), mask=np.isnan(values))


def _int_col(values: FloatArray, *, small: bool = False) -> pa.Array:
    """Integers from floats (NaN → NULL), rounded half up."""
    mask = np.isnan(values)
    ints = _round_half_up(np.where(mask, 0.0, values))
    return pa.array(ints, type=pa.int16() if small else pa.int64(), mask=mask)


def _date_col(values: NDArray[np.datetime64]) -> pa.Array:
    days = values.astype("datetime64[D]")
    mask = np.isnat(days)
    return pa.array(np.where(mask, np.datetime64(0, "D"), days).astype("datetime64[D]"),
                    type=pa.date32(), mask=mask)


def _text_col(values: NDArray[np.object_]) -> pa.Array:
    """Strings (None → NULL) straight from the object array: no Python list in between."""
    return pa.array(values, type=pa.string())


@dataclass(frozen=True)
class Predictions:
    """The model columns of ``ModelInputs``' buyers, parallel to them. A degenerate fit
    (too few buyers) can make the series undefined: those values are NaN (stored as
    NULL)."""

    p_alive: FloatArray
    expected: dict[int, FloatArray]  # purchases in the next 30/90/365 days
    spend: FloatArray  # Gamma-Gamma's expected value of a purchase
    clv: FloatArray


#: Buyers per thread of ``predict``; fewer than two parts' worth run on this thread.
PREDICT_PART = 200_000


def predict(model: clv.CLVModel, inputs: ModelInputs,
            config: ScoreConfig = ScoreConfig()) -> Predictions:
    """P(alive), expected purchases, expected spend and CLV of every buyer of ``inputs``.

    The special functions (₂F₁ above all) are most of a night's scoring CPU and release
    the GIL, so a large base is cut into parts scored on one thread per core.
    """
    n = len(inputs)
    parts = max(1, min(os.cpu_count() or 1, n // PREDICT_PART))
    if parts == 1:
        return _predict_part(model, inputs, config)
    edges = [n * i // parts for i in range(parts + 1)]
    with ThreadPoolExecutor(max_workers=parts) as pool:
        done = list(pool.map(lambda i: _predict_part(model, inputs.part(edges[i], edges[i + 1]),
                                                     config), range(parts)))
    return Predictions(p_alive=np.concatenate([d.p_alive for d in done]),
                       expected={t: np.concatenate([d.expected[t] for d in done])
                                 for t in HORIZONS},
                       spend=np.concatenate([d.spend for d in done]),
                       clv=np.concatenate([d.clv for d in done]))


def _predict_part(model: clv.CLVModel, inputs: ModelInputs,
                  config: ScoreConfig) -> Predictions:
    x, t_x, age = inputs.frequency, inputs.t_x_days, inputs.age_days
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        p_alive = bgnbd.p_alive(model.bgnbd, x, t_x, age)
        horizons = np.array(HORIZONS, dtype=np.float64).reshape(-1, 1)
        cond = bgnbd.conditional_expected_purchases(model.bgnbd, horizons, x, t_x, age,
                                                    alive=p_alive)
        spend = gamma_gamma.conditional_expected_spend(model.gamma_gamma, x,
                                                       inputs.repeat_monetary)
        value = clv.customer_lifetime_value(
            model, frequency=x, recency=t_x, age=age, monetary=inputs.repeat_monetary,
            months=config.clv_months, margin=config.margin,
            monthly_discount_rate=config.monthly_discount, alive=p_alive)
    out = Predictions(p_alive=p_alive, expected={t: cond[i] for i, t in enumerate(HORIZONS)},
                      spend=np.asarray(spend, dtype=np.float64), clv=value)
    for column in (out.p_alive, out.spend, out.clv, *out.expected.values()):
        column[~np.isfinite(column)] = np.nan
    return out


def score(history: MemberHistory, fitted: Fit, config: ScoreConfig = ScoreConfig()) -> pa.Table:
    """The ``member_scores`` columns (without as_of) for every member of ``history``."""
    h = history
    n = len(h)
    b = h.bought
    x = h.frequency
    t_x = h.t_x_days
    age = h.age_days
    as_of = np.datetime64(h.as_of, "D")
    recency = np.where(b, np.maximum(_days_between(as_of, h.last_on), 0.0), np.nan)
    tenure = np.where(b, np.maximum(_days_between(as_of, h.first_on), 0.0), np.nan)
    joined_days = _days_between(as_of, h.joined_at)
    monetary = np.where(b, h.total_net / np.maximum(h.purchases, 1), np.nan)

    r = np.full(n, np.nan)
    f = np.full(n, np.nan)
    m = np.full(n, np.nan)
    fm = np.full(n, np.nan)
    segment = np.full(n, None, dtype=object)
    if b.any():
        rb, fb, mb, fmb, sb = rfm.score(recency[b], x[b], monetary[b])
        r[b], f[b], m[b], fm[b] = rb, fb, mb, fmb
        segment[b] = sb

    p_alive = np.full(n, np.nan)
    expected = {t: np.full(n, np.nan) for t in HORIZONS}
    spend = np.full(n, np.nan)
    value = np.full(n, np.nan)
    model = fitted.model
    if model is not None and model.unit is not TimeUnit.DAYS:
        raise ValidationFailed("scores need the models fitted in days", "unit")
    if model is not None and b.any():
        predicted = predict(model, h.model_inputs(), config)
        p_alive[b], spend[b], value[b] = predicted.p_alive, predicted.spend, predicted.clv
        for t in HORIZONS:
            expected[t][b] = predicted.expected[t]

    stage = lifecycle.stages(bought=b, tenure_days=tenure, recency_days=recency,
                             joined_days=joined_days, net_90=h.net_90,
                             net_prev_90=h.net_prev_90, p_alive=p_alive,
                             thresholds=config.thresholds)
    offset, from_last = lifecycle.next_purchase_offsets(
        frequency=np.where(b, x, np.nan), t_x_days=t_x, expected_365=expected[365])
    base = np.where(from_last, h.last_on.astype("datetime64[D]"), as_of)
    has_offset = ~np.isnan(offset)
    next_on = np.where(has_offset, base + np.nan_to_num(offset).astype("timedelta64[D]"),
                       np.datetime64("NaT", "D"))

    repeating = b & (h.purchases_365 >= REPEATING_PURCHASES_365)
    satisfaction, loyalty = loyalty_types(h.satisfied, repeating)
    bond = bonds(h)

    nan_if_none = np.where(b, 1.0, np.nan)
    return pa.table({
        "member_id": h.member_id,
        "purchases": pa.array(h.purchases, type=pa.int64()),
        "frequency": _int_col(x.astype(np.float64) * nan_if_none),
        "first_purchase_on": _date_col(h.first_on),
        "last_purchase_on": _date_col(h.last_on),
        "recency_days": _int_col(recency),
        "tenure_days": _int_col(tenure),
        "t_x_days": _float_col(t_x),
        "age_days": _float_col(age),
        "monetary_minor": _int_col(monetary),
        "total_net_minor": pa.array(h.total_net, type=pa.int64()),
        "net_90_minor": pa.array(h.net_90, type=pa.int64()),
        "net_prev_90_minor": pa.array(h.net_prev_90, type=pa.int64()),
        "net_365_minor": pa.array(h.net_365, type=pa.int64()),
        "r_score": _int_col(r, small=True),
        "f_score": _int_col(f, small=True),
        "m_score": _int_col(m, small=True),
        "fm_score": _int_col(fm, small=True),
        "rfm_segment": _text_col(segment),
        "p_alive": _float_col(p_alive),
        "expected_30": _float_col(expected[30]),
        "expected_90": _float_col(expected[90]),
        "expected_365": _float_col(expected[365]),
        "expected_spend_minor": _int_col(spend),
        "clv_minor": _int_col(value),
        "lifecycle_stage": _text_col(stage),
        "next_purchase_on": _date_col(next_on),
        "satisfaction": _text_col(satisfaction),
        "loyalty_type": _text_col(loyalty),
        "replenishment_categories": pa.array(h.replenishment_categories, type=pa.int64()),
        "bond_financial": pa.array(bond.financial, type=pa.float64()),
        "bond_social": pa.array(bond.social, type=pa.float64()),
        "bond_structural": pa.array(bond.structural, type=pa.float64()),
        "next_bond": _text_col(bond.next_bond),
    })
