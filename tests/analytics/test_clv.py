"""CLV: BG/NBD purchases per month × Gamma-Gamma spend, discounted, for all customers."""

from __future__ import annotations

import numpy as np
import pytest

from patron.analytics.models import bgnbd, clv, gamma_gamma
from patron.analytics.models.bgnbd import BGNBDParams
from patron.analytics.models.clv import CLVModel
from patron.analytics.models.gamma_gamma import GammaGammaParams
from patron.analytics.models.summary import RFMSummary, TimeUnit
from patron.core.errors import ValidationFailed

MODEL = CLVModel(bgnbd=BGNBDParams(0.243, 4.414, 0.793, 2.426, -9582.4, 2357),
                 gamma_gamma=GammaGammaParams(6.25, 3.74, 15.44, 0.0, 946),
                 unit=TimeUnit.WEEKS)
HISTORY = {"frequency": np.array([0, 2, 2, 7]), "recency": np.array([0.0, 30.43, 5.0, 38.0]),
           "age": np.array([30.0, 38.86, 38.86, 38.5]),
           "monetary": np.array([0.0, 40.0, 40.0, 25.0])}


def _loop_clv(months: int, rate: float, margin: float) -> np.ndarray:
    """The lifetimes recipe, one customer and one month at a time."""
    month = clv.DAYS_PER_MONTH / 7
    out = []
    for x, t_x, big_t, m in zip(*HISTORY.values(), strict=True):
        spend = float(gamma_gamma.conditional_expected_spend(MODEL.gamma_gamma, x, m))
        total = 0.0
        for i in range(1, months + 1):
            bought = (bgnbd.conditional_expected_purchases(MODEL.bgnbd, i * month, x, t_x, big_t)
                      - bgnbd.conditional_expected_purchases(MODEL.bgnbd, (i - 1) * month, x,
                                                             t_x, big_t))
            total += margin * spend * float(bought) / (1 + rate) ** i
        out.append(total)
    return np.array(out)


@pytest.mark.parametrize(("months", "rate", "margin"), [(1, 0.0, 1.0), (12, 0.01, 0.3),
                                                        (36, 0.02, 0.5)])
def test_vectorised_clv_equals_the_month_by_month_sum(months: int, rate: float,
                                                      margin: float) -> None:
    got = clv.customer_lifetime_value(MODEL, **HISTORY, months=months,
                                      monthly_discount_rate=rate, margin=margin)
    assert got == pytest.approx(_loop_clv(months, rate, margin), rel=1e-10)


def test_undiscounted_clv_is_spend_times_expected_purchases() -> None:
    months = 6
    got = clv.customer_lifetime_value(MODEL, **HISTORY, months=months, monthly_discount_rate=0.0)
    purchases = bgnbd.conditional_expected_purchases(
        MODEL.bgnbd, months * clv.DAYS_PER_MONTH / 7, HISTORY["frequency"], HISTORY["recency"],
        HISTORY["age"])
    spend = gamma_gamma.conditional_expected_spend(MODEL.gamma_gamma, HISTORY["frequency"],
                                                   HISTORY["monetary"])
    assert got == pytest.approx(purchases * spend)


def test_longer_horizons_are_worth_more_and_discounting_less() -> None:
    short = clv.customer_lifetime_value(MODEL, **HISTORY, months=6)
    long = clv.customer_lifetime_value(MODEL, **HISTORY, months=24)
    steep = clv.customer_lifetime_value(MODEL, **HISTORY, months=24, monthly_discount_rate=0.05)
    assert (long > short).all() and (steep < long).all()
    recent, lapsed = long[1], long[2]  # same x and T, last purchase long ago
    assert recent > lapsed


def test_clv_for_every_customer_of_cdnow(cdnow_summary: RFMSummary) -> None:
    model = clv.fit_models(cdnow_summary)
    values = clv.summary_lifetime_value(model, cdnow_summary, months=12, margin=0.3)
    assert values.shape == (len(cdnow_summary),)
    assert np.isfinite(values).all() and (values > 0).all()
    assert values[cdnow_summary.frequency >= 5].mean() > values[cdnow_summary.frequency == 0].mean()


@pytest.mark.parametrize(("kwargs", "field"), [({"months": 0}, "months"),
                                               ({"margin": 1.5}, "margin"),
                                               ({"monthly_discount_rate": -0.1},
                                                "monthly_discount_rate")])
def test_bad_clv_settings_name_the_setting(kwargs: dict[str, float], field: str) -> None:
    with pytest.raises(ValidationFailed) as err:
        clv.customer_lifetime_value(MODEL, **HISTORY, **kwargs)  # type: ignore[arg-type]
    assert err.value.field == field


def test_a_known_p_alive_gives_the_same_clv() -> None:
    alive = bgnbd.p_alive(MODEL.bgnbd, HISTORY["frequency"], HISTORY["recency"], HISTORY["age"])
    assert (clv.customer_lifetime_value(MODEL, **HISTORY, months=12, alive=alive)
            == clv.customer_lifetime_value(MODEL, **HISTORY, months=12)).all()
