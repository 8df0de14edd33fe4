"""The fast paths of the models give the answers of the direct ones.

* Eq. 10 on the Taylor grid (``bgnbd.conditional_expected_purchases``) against one
  ``hyp2f1`` per value (``conditional_expected_purchases_direct``) over a broad sweep of
  parameters, frequencies up to a few hundred, ages from 0 to three years and horizons
  from 1 to 3650 days; and against eq. 10 summed in 40-digit decimal arithmetic.
* The discounted CLV purchases without the month × customer matrix.

The direct formula computes 1 − tail with tail ≈ 1 when the horizon is short against
α + T, so its own rounding error there is a few ulps of (a+b+x−1)/(a−1) · tail · P(alive),
which can exceed 1e-15 in absolute terms; the comparison allows that much on top of the
1e-12 relative (1e-15 absolute) agreement, and the decimal test shows the grid is the
more accurate of the two in exactly those places.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal, getcontext

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import hyp2f1

from patron.analytics.models import bgnbd, clv
from patron.analytics.models.bgnbd import BGNBDParams

EPS = float(np.finfo(np.float64).eps)
DAYS_3Y = 3 * 365.25
# the fit on the 1 M member reference base (days) and CDNOW's (weeks, as days)
TYPICAL = [BGNBDParams(0.5152, 16.59, 0.6013, 2.3847, 0.0, 0),
           BGNBDParams(0.243, 4.414 * 7, 0.793, 2.426, 0.0, 0)]


@pytest.fixture
def grid_for_every_x() -> Iterator[None]:
    """A grid for every frequency, however few customers have it (the default builds one
    only where it saves ``hyp2f1`` calls), so the sweep exercises the grid everywhere."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(bgnbd, "GRID_WORTH", 0.0)
        yield


def _customers(rng: np.random.Generator, n: int, *, few_x: bool = False
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """x from 0 to a few hundred (mostly small), T in [0, 3 years] (some exactly 0), t_x ≤ T."""
    x = np.where(rng.random(n) < 0.8, rng.geometric(0.3, n) - 1, rng.integers(0, 400, n))
    if few_x:  # a dozen distinct values, from 0 to 350
        x = rng.choice(np.array([0, 1, 2, 3, 4, 6, 9, 15, 30, 70, 150, 350]), n)
    age = rng.uniform(0.0, DAYS_3Y, n)
    age[: n // 50] = 0.0
    recency = np.where(x > 0, age * rng.random(n), 0.0)
    return x, recency, age


def _horizons(rng: np.random.Generator) -> np.ndarray:
    return np.concatenate([[1.0, 3650.0], rng.uniform(1.0, 3650.0, 4),
                           np.exp(rng.uniform(0.0, np.log(3650.0), 4))]).reshape(-1, 1)


def _params(rng: np.random.Generator) -> BGNBDParams:
    def draw(lo: float, hi: float) -> float:
        return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))

    return BGNBDParams(r=draw(0.05, 5.0), alpha=draw(0.5, 200.0), a=draw(0.1, 5.0),
                       b=draw(0.1, 10.0), loglik=0.0, n_customers=0)


def _assert_agrees_with_direct(p: BGNBDParams, t: np.ndarray, x: np.ndarray,
                               recency: np.ndarray, age: np.ndarray) -> None:
    fast = bgnbd.conditional_expected_purchases(p, t, x, recency, age)
    direct = bgnbd.conditional_expected_purchases_direct(p, t, x, recency, age)
    z = t / (p.alpha + age + t)
    tail = (1.0 - z) ** (p.a - 1.0) * hyp2f1(p.a + p.b - 1.0 - p.r, p.a - 1.0,
                                              p.a + p.b + x - 1.0, z)
    own_rounding = 8 * EPS * np.abs((p.a + p.b + x - 1.0) / (p.a - 1.0) * tail) \
        * bgnbd.p_alive(p, x, recency, age)
    allowed = 1e-12 * np.abs(direct) + 1e-15 + own_rounding
    finite = np.isfinite(direct)  # hyp2f1 gives up for some extreme arguments
    assert (np.isfinite(fast) == finite).all()
    excess = np.where(finite, np.abs(fast - direct) - allowed, -np.inf)
    worst = np.unravel_index(np.argmax(excess), fast.shape)
    assert (excess <= 0.0).all(), (
        p, float(t[worst[0], 0]), x[worst[1]], age[worst[1]], fast[worst], direct[worst])


@pytest.mark.usefixtures("grid_for_every_x")
@pytest.mark.parametrize("seed", range(4))
def test_grid_agrees_with_direct_eq10_over_a_broad_sweep(seed: int) -> None:
    rng = np.random.default_rng(seed)
    for _ in range(8):
        p = _params(rng)
        _assert_agrees_with_direct(p, _horizons(rng), *_customers(rng, 2000))


@settings(max_examples=40, deadline=None)
@given(r=st.floats(0.02, 5.0), alpha=st.floats(0.5, 500.0), a=st.floats(0.05, 5.0),
       b=st.floats(0.05, 10.0), seed=st.integers(0, 2**32 - 1))
def test_grid_agrees_with_direct_eq10_for_any_parameters(r: float, alpha: float, a: float,
                                                          b: float, seed: int) -> None:
    if abs(a - 1.0) < 1e-3:  # eq. 10 divides by a − 1
        a += 2e-3
    rng = np.random.default_rng(seed)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(bgnbd, "GRID_WORTH", 0.0)
        _assert_agrees_with_direct(BGNBDParams(r, alpha, a, b, 0.0, 0), _horizons(rng),
                                   *_customers(rng, 400, few_x=True))


def _eq10_in_decimal(p: BGNBDParams, t: float, x: int, age: float) -> float:
    """E[Y(t) | alive] by summing ₂F₁'s series in 40 significant digits."""
    getcontext().prec = 40
    r, alpha, a, b, h, big_t = (Decimal(v) for v in (p.r, p.alpha, p.a, p.b, t, age))
    big_a, big_b, c, z = a + b - 1 - r, a - 1, a + b + x - 1, h / (alpha + big_t + h)
    term = total = Decimal(1)
    n = 0
    while abs(term) > Decimal("1e-30") * abs(total) or n < 10:
        term *= (big_a + n) * (big_b + n) / ((c + n) * (n + 1)) * z
        total += term
        n += 1
    tail = ((1 - z).ln() * big_b).exp() * total
    return float(c / big_b * (1 - tail))


@pytest.mark.usefixtures("grid_for_every_x")
@pytest.mark.parametrize("p", [*TYPICAL, BGNBDParams(0.152, 1.49, 0.734, 6.432, 0.0, 0),
                               BGNBDParams(2.0, 40.0, 2.5, 4.0, 0.0, 0)])
def test_grid_is_within_1e13_of_eq10_in_decimal_arithmetic(p: BGNBDParams) -> None:
    """Short horizons on long histories (where 1 − tail cancels) and long horizons on new
    customers (z near 1) included; the direct formula is shown no better."""
    rng = np.random.default_rng(7)
    x = np.concatenate([[0, 1, 50, 300], rng.integers(0, 300, 12)])
    age = np.concatenate([[1000.0, 800.0, 1000.0, 0.0], rng.uniform(0.0, DAYS_3Y, 12)])
    t = np.concatenate([[1.0, 1.0, 1.0, 3650.0], np.exp(rng.uniform(0, np.log(3650), 12))])
    many = np.repeat(np.arange(x.shape[0]), 200)  # enough customers for a grid
    fast = bgnbd.expected_if_alive(p, [t[many]], x[many].astype(float), age[many])[0][::200]
    direct = bgnbd._direct_if_alive(p, t, x.astype(float), age)
    exact = np.array([_eq10_in_decimal(p, float(ti), int(xi), float(ai))
                      for ti, xi, ai in zip(t, x, age, strict=True)])
    fast_error = np.abs(fast - exact) / np.abs(exact)
    assert fast_error.max() <= 1e-13
    assert fast_error.max() <= max(float((np.abs(direct - exact) / np.abs(exact)).max()), 1e-15)


@pytest.mark.parametrize("p", TYPICAL)
def test_typical_fits_take_the_grid_for_nearly_every_value(p: BGNBDParams) -> None:
    """With the default settings, on a customer base shaped like the nightly one."""
    rng = np.random.default_rng(3)
    n = 200_000
    x = rng.geometric(0.25, n) - 1
    age = rng.uniform(0.0, 2 * 365.25, n)
    horizons = [30.0, 90.0, 365.0] + [365.25 / 12 * m for m in range(1, 13)]
    grid = bgnbd._grid_for(p, horizons, x.astype(float), age)
    assert grid is not None
    assert grid.direct.size <= 0.01 * n  # only the rare frequencies go direct
    buffers = (np.empty(n), np.empty(n), np.empty(n))
    values = np.stack([grid.evaluate(h, grid.log_horizons[i], 0, n, buffers)
                       for i, h in enumerate(horizons)])
    values[:, grid.direct] = 0.0
    assert np.isnan(values).mean() <= 1e-4  # and the grid proves nearly every cell


def test_small_calls_are_evaluated_directly_and_unchanged() -> None:
    p = TYPICAL[1]
    x, recency, age = np.array([0, 2, 7]), np.array([0.0, 30.0, 200.0]), np.array([50.0,
                                                                                  60.0, 210.0])
    t = np.array([[7.0], [91.0]])
    assert (bgnbd.conditional_expected_purchases(p, t, x, recency, age)
            == bgnbd.conditional_expected_purchases_direct(p, t, x, recency, age)).all()


@pytest.mark.usefixtures("grid_for_every_x")
@pytest.mark.parametrize(("t_shape", "customer_shape", "recency_shape"), [
    ((), (3000,), (3000,)), ((4, 1), (3000,), (3000,)), ((2, 2, 1), (3000,), (3000,)),
    ((3000,), (3000,), (3000,)), ((4, 1), (3000,), (2, 1, 3000)), ((1, 3000), (3000,), ())])
def test_any_broadcast_gives_the_direct_values(t_shape: tuple[int, ...],
                                               customer_shape: tuple[int, ...],
                                               recency_shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(11)
    p = TYPICAL[0]
    x, _, age = _customers(rng, customer_shape[0])
    t = rng.uniform(1.0, 400.0, t_shape)
    recency = np.minimum(rng.uniform(0.0, DAYS_3Y, recency_shape), age)
    recency = np.where(x > 0, recency, 0.0)
    fast = bgnbd.conditional_expected_purchases(p, t, x, recency, age)
    direct = bgnbd.conditional_expected_purchases_direct(p, t, x, recency, age)
    assert fast.shape == direct.shape
    assert fast == pytest.approx(direct, rel=1e-12, abs=1e-15)


@pytest.mark.usefixtures("grid_for_every_x")
def test_a_zero_horizon_expects_exactly_nothing() -> None:
    rng = np.random.default_rng(5)
    x, recency, age = _customers(rng, 3000)
    t = np.array([[0.0], [30.0]])
    got = bgnbd.conditional_expected_purchases(TYPICAL[0], t, x, recency, age)
    assert (got[0] == 0.0).all()
    assert got[1] == pytest.approx(bgnbd.conditional_expected_purchases_direct(
        TYPICAL[0], t, x, recency, age)[1], rel=1e-12, abs=1e-15)


def test_discounted_purchases_equal_the_month_by_month_direct_sum() -> None:
    rng = np.random.default_rng(13)
    p = TYPICAL[0]
    x, recency, age = _customers(rng, 50_000)
    months, rate, length = 24, 0.015, clv.DAYS_PER_MONTH
    got = clv.discounted_expected_purchases(p, frequency=x, recency=recency, age=age,
                                            months=months, monthly_discount_rate=rate,
                                            month_length=length)
    ends = length * np.arange(0, months + 1, dtype=np.float64).reshape(-1, 1)
    cumulative = bgnbd.conditional_expected_purchases_direct(p, ends, x, recency, age)
    discount = (1.0 + rate) ** -np.arange(1, months + 1, dtype=np.float64)
    assert got == pytest.approx(discount @ np.diff(cumulative, axis=0), rel=1e-12, abs=1e-15)


# ---------------------------------------------------------------- the fits' objectives


@pytest.mark.parametrize("n", [10, 100_003])
def test_objectives_summed_by_pieces_equal_one_pass(n: int) -> None:
    """The fits sum their objectives piece by piece, on threads: the value and gradient are
    those of one pass over all rows (to rounding), the same at every call."""
    from patron.analytics.models import gamma_gamma
    from patron.analytics.models.summary import compress

    rng = np.random.default_rng(7)
    x, recency, age = _customers(rng, n)
    rows = bgnbd._Rows.of(compress(x, recency, age))
    theta = np.array([0.5, 16.0, 0.6, 2.4])
    objective = bgnbd._objective(rows)
    value, grad = objective(np.log(theta))
    ll, g = bgnbd._loglik_terms(tuple(theta), rows, grad=True)
    total = rows.w.sum()
    assert value == pytest.approx(-(ll * rows.w).sum() / total, rel=1e-12)
    assert grad == pytest.approx(-(g * rows.w).sum(axis=1) * theta / total, rel=1e-10)
    again = objective(np.log(theta))
    assert again[0] == value and (again[1] == grad).all()

    m = rng.gamma(4.0, 50.0, n)
    spend = gamma_gamma._Rows.of(x, m, None)
    phi = np.array([1.5, 40.0, 2000.0])
    value, grad = gamma_gamma._objective(spend)(np.log(phi))
    ll, g = gamma_gamma._loglik_terms(tuple(phi), spend, grad=True)
    total = spend.w.sum()
    assert value == pytest.approx(-(ll * spend.w).sum() / total, rel=1e-12)
    assert grad == pytest.approx(-(g * spend.w).sum(axis=1) * phi / total, rel=1e-10)
