"""Customer lifetime value from BG/NBD (how often) × Gamma-Gamma (how much).

Design overview
---------------
For each month m = 1..H of the horizon, the expected number of purchases a customer makes
in that month is E[Y(m·L)] − E[Y((m−1)·L)] given their history (BG/NBD eq. 10, L the
month length in the model's time unit); each purchase is worth the Gamma-Gamma posterior
mean spend. Discounting each month's value at the monthly rate d, at the month's end:

    CLV = margin · E[M | x, m] · Σ_m (E[Y(m L)] − E[Y((m−1) L)]) / (1 + d)^m

This is what lifetimes' ``customer_lifetime_value`` computes, done for all customers at
once. Summed by parts (E[Y(0)] = 0), the purchases term is
P(alive) · Σ_m E[Y(mL) | alive] · (1/(1+d)^m − 1/(1+d)^(m+1)) (the last month's weight
is 1/(1+d)^H), so the month ends are read off BG/NBD's Taylor grid
(``bgnbd.expected_if_alive``) and summed per customer, without a months × customers
matrix or a grouping of identical rows (with customers timed to the second nearly none
repeat, and sorting them cost more than the evaluation). Spend and purchases are treated
as independent, as the Gamma-Gamma model assumes. A month is 365.25/12 days unless told
otherwise (lifetimes uses 30). The result is in the currency unit of the amounts the
spend model was fitted on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from patron.analytics.models import bgnbd, gamma_gamma
from patron.analytics.models.bgnbd import BGNBDParams
from patron.analytics.models.gamma_gamma import GammaGammaParams
from patron.analytics.models.summary import RFMSummary, TimeUnit
from patron.core.errors import ValidationFailed

DAYS_PER_MONTH = 365.25 / 12


@dataclass(frozen=True)
class CLVModel:
    """The two fitted models and the time unit their parameters are in."""

    bgnbd: BGNBDParams
    gamma_gamma: GammaGammaParams
    unit: TimeUnit

    @property
    def n_customers(self) -> int:
        return self.bgnbd.n_customers


def fit_models(summary: RFMSummary) -> CLVModel:
    """Fit BG/NBD on the compressed summary and Gamma-Gamma on its repeat buyers."""
    return CLVModel(bgnbd=bgnbd.fit(summary.compress()),
                    gamma_gamma=gamma_gamma.fit(summary.frequency, summary.monetary),
                    unit=summary.unit)


def discounted_expected_purchases(params: BGNBDParams, *, frequency: ArrayLike,
                                  recency: ArrayLike, age: ArrayLike, months: int,
                                  monthly_discount_rate: float, month_length: float,
                                  alive: ArrayLike | None = None) -> NDArray[np.float64]:
    """Σ_m (E[Y(mL)] − E[Y((m−1)L)]) / (1+d)^m per customer (see the module docstring).

    ``alive`` may pass P(alive) per customer when the caller has it already.
    """
    x = np.asarray(frequency, dtype=np.float64).reshape(-1)
    t_x = np.asarray(recency, dtype=np.float64).reshape(-1)
    big_t = np.asarray(age, dtype=np.float64).reshape(-1)
    if x.shape[0] == 0:
        return np.zeros(0)
    discount = (1.0 + monthly_discount_rate) ** -np.arange(1, months + 1, dtype=np.float64)
    # summation by parts with E[Y(0)] = 0: Σ_m E[Y(mL)] · (discount_m − discount_{m+1})
    weights = discount - np.append(discount[1:], 0.0)
    horizons = [month_length * m for m in range(1, months + 1)]
    scale = (bgnbd.p_alive(params, x, t_x, big_t) if alive is None
             else np.broadcast_to(np.asarray(alive, dtype=np.float64), x.shape))
    return bgnbd.expected_if_alive(params, horizons, x, big_t, weights=weights, scale=scale)


def customer_lifetime_value(model: CLVModel, *, frequency: ArrayLike, recency: ArrayLike,
                            age: ArrayLike, monetary: ArrayLike, months: int = 12,
                            margin: float = 1.0, monthly_discount_rate: float = 0.01,
                            days_per_month: float = DAYS_PER_MONTH,
                            alive: ArrayLike | None = None) -> NDArray[np.float64]:
    """Discounted expected margin over the next ``months`` months, per customer.

    ``recency`` and ``age`` are in the model's time unit, ``monetary`` the mean repeat
    value (as in :class:`RFMSummary`). ``margin`` is the share of spend kept as profit.
    ``alive`` may pass P(alive) per customer (``bgnbd.p_alive``) when the caller has it.
    """
    if months < 1:
        raise ValidationFailed("the horizon must be at least one month", "months")
    if not 0.0 <= margin <= 1.0:
        raise ValidationFailed("margin is a share of spend, between 0 and 1", "margin")
    if monthly_discount_rate < 0.0:
        raise ValidationFailed("the discount rate cannot be negative", "monthly_discount_rate")
    if days_per_month <= 0.0:
        raise ValidationFailed("a month must last a positive number of days", "days_per_month")
    purchases = discounted_expected_purchases(
        model.bgnbd, frequency=frequency, recency=recency, age=age, months=months,
        monthly_discount_rate=monthly_discount_rate,
        month_length=days_per_month / model.unit.days, alive=alive)
    spend = gamma_gamma.conditional_expected_spend(model.gamma_gamma, frequency, monetary)
    return np.asarray(margin * spend.reshape(-1) * purchases, dtype=np.float64)


def summary_lifetime_value(model: CLVModel, summary: RFMSummary, *, months: int = 12,
                           margin: float = 1.0, monthly_discount_rate: float = 0.01
                           ) -> NDArray[np.float64]:
    """:func:`customer_lifetime_value` for every customer of a summary (same order)."""
    if summary.unit is not model.unit:
        raise ValidationFailed(f"the model is in {model.unit}, the summary in {summary.unit}",
                               "unit")
    return customer_lifetime_value(model, frequency=summary.frequency,
                                   recency=summary.recency, age=summary.age,
                                   monetary=summary.monetary, months=months, margin=margin,
                                   monthly_discount_rate=monthly_discount_rate)
