"""Parameter recovery: 50,000 customers drawn from known parameters are fitted back.

The population is chosen so that the parameters are well identified with 50,000
customers (two to five years of history, frequent buyers, a wide spread of dropout
chances): the standard errors are about 0.5-1.5 % (BG/NBD) and 1-2.3 % (Gamma-Gamma), so
the 5 % tolerance is two to ten standard errors, not luck. The seed fixes the draw.
"""

from __future__ import annotations

import numpy as np
import pytest

from patron.analytics.models import bgnbd, gamma_gamma
from patron.analytics.models.bgnbd import BGNBDParams
from patron.analytics.models.gamma_gamma import GammaGammaParams
from patron.analytics.models.simulate import simulate_bgnbd, simulate_spend
from patron.analytics.models.summary import compress

TRUE_BGNBD = BGNBDParams(r=0.5, alpha=2.0, a=0.3, b=0.8, loglik=0.0, n_customers=50_000)
TRUE_GG = GammaGammaParams(p=1.5, q=6.0, v=20.0, loglik=0.0, n_customers=0)
DAYS_PER_WEEK = 7


@pytest.fixture(scope="module")
def population() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(20051)
    age = np.round(rng.uniform(104, 260, TRUE_BGNBD.n_customers) * DAYS_PER_WEEK) / 7
    x, t_x = simulate_bgnbd(TRUE_BGNBD, age, rng, ticks_per_unit=DAYS_PER_WEEK)
    return x, t_x, age, simulate_spend(TRUE_GG, x, rng)


def test_bgnbd_recovers_each_parameter_within_five_percent(population: tuple) -> None:
    x, t_x, age, _ = population
    data = compress(x, t_x, age)
    assert len(data) < len(x)  # day resolution folds some customers together
    fitted = bgnbd.fit(data)
    for name in ("r", "alpha", "a", "b"):
        assert getattr(fitted, name) == pytest.approx(getattr(TRUE_BGNBD, name), rel=0.05), name


def test_gamma_gamma_recovers_each_parameter_within_five_percent(population: tuple) -> None:
    x, _, _, monetary = population
    fitted = gamma_gamma.fit(x, monetary)
    assert fitted.n_customers == int((x > 0).sum())
    for name in ("p", "q", "v"):
        assert getattr(fitted, name) == pytest.approx(getattr(TRUE_GG, name), rel=0.05), name
