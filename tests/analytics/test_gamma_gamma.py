"""Gamma-Gamma: the published CDNOW fit, the gradient, and posterior mean spend."""

from __future__ import annotations

import numpy as np
import pytest

from patron.analytics.models import fitting, gamma_gamma
from patron.analytics.models.gamma_gamma import GammaGammaParams
from patron.analytics.models.simulate import simulate_spend
from patron.analytics.models.summary import RFMSummary
from patron.core.errors import ValidationFailed


def test_cdnow_fit_reproduces_the_published_estimates(cdnow_summary: RFMSummary) -> None:
    """Fader, Hardie & Lee (2005, "RFM and CLV"): p=6.25, q=3.74, γ=15.44 on 946 buyers."""
    fitted = gamma_gamma.fit(cdnow_summary.frequency, cdnow_summary.monetary)
    assert fitted.n_customers == 946
    assert fitted.p == pytest.approx(6.25, abs=5e-3)
    assert fitted.q == pytest.approx(3.74, abs=5e-3)
    assert fitted.v == pytest.approx(15.44, abs=5e-3)


@pytest.mark.parametrize("theta", [(6.25, 3.74, 15.44), (0.7, 1.5, 2.0), (20.0, 12.0, 300.0)])
def test_gradient_matches_finite_differences(cdnow_summary: RFMSummary,
                                             theta: tuple[float, float, float]) -> None:
    x, m = cdnow_summary.frequency, cdnow_summary.monetary
    analytic = gamma_gamma.log_likelihood_gradient(theta, x, m)
    numeric = np.empty(3)
    for i in range(3):
        h = 1e-6 * theta[i]
        up, down = np.array(theta), np.array(theta)
        up[i] += h
        down[i] -= h
        numeric[i] = (gamma_gamma.log_likelihood(up, x, m)
                      - gamma_gamma.log_likelihood(down, x, m)) / (2 * h)
    assert analytic == pytest.approx(numeric, rel=1e-5, abs=1e-4)


def test_weights_count_as_repeated_customers() -> None:
    x = np.array([1, 3, 2, 5])
    m = np.array([10.0, 25.0, 12.0, 40.0])
    w = np.array([3, 1, 2, 4])
    theta = (2.0, 3.0, 10.0)
    assert gamma_gamma.log_likelihood(theta, x, m, w) == pytest.approx(
        gamma_gamma.log_likelihood(theta, np.repeat(x, w), np.repeat(m, w)))


def test_expected_spend_shrinks_towards_the_population_mean() -> None:
    params = GammaGammaParams(p=6.25, q=3.74, v=15.44, loglik=0.0, n_customers=946)
    assert gamma_gamma.conditional_expected_spend(params, 0, 0.0) == pytest.approx(
        params.mean_spend)
    heavy = gamma_gamma.conditional_expected_spend(params, np.array([1, 5, 50, 5000]), 100.0)
    assert (np.diff(heavy) > 0).all()  # more transactions, more weight on their own mean
    assert params.mean_spend < heavy[0] and heavy[-1] == pytest.approx(100.0, rel=1e-3)


def test_fit_refuses_data_without_repeat_buyers() -> None:
    with pytest.raises(ValidationFailed, match="no repeat buyers"):
        gamma_gamma.fit([0, 0, 2], [0.0, 0.0, -5.0])


def test_starting_on_a_sample_reaches_the_full_data_optimum() -> None:
    rng = np.random.default_rng(1999)
    truth = GammaGammaParams(p=1.5, q=6.0, v=20.0, loglik=0.0, n_customers=0)
    x = rng.integers(1, 30, 60_000)
    monetary = simulate_spend(truth, x, rng)
    assert int((x > 0).sum()) > 2 * fitting.SAMPLE_ROWS  # large enough to start on a sample
    sampled = gamma_gamma.fit(x, monetary)  # starts on a sample, polished on every row
    full = gamma_gamma.fit(x, monetary, sample_rows=0)  # every start on every row
    assert (sampled.p, sampled.q, sampled.v) == pytest.approx((full.p, full.q, full.v),
                                                              rel=1e-5)
    assert sampled.loglik == pytest.approx(full.loglik, rel=1e-12)
    ordered = np.lexsort((monetary, x))[fitting.sample(x.shape[0]) or slice(None)]
    alone = gamma_gamma.fit(x[ordered], monetary[ordered], sample_rows=0)
    assert alone.v != pytest.approx(full.v, rel=1e-4)  # the polish is what makes it exact


def test_the_start_sample_is_stratified_by_x_then_spend() -> None:
    rng = np.random.default_rng(4)
    x = rng.integers(1, 40, 30_000)
    monetary = simulate_spend(GammaGammaParams(1.5, 6.0, 20.0, 0.0, 0), x, rng)
    rows = gamma_gamma._Rows.of(x, monetary, None)
    order = gamma_gamma._stratified_order(rows)
    assert sorted(order.tolist()) == list(range(rows.x.shape[0]))
    ranked_x = rows.x[order]
    assert (np.diff(ranked_x) >= 0).all()
    width = float(np.ptp(rows.ln_m)) / 256  # a bin of ln m
    for value in (1.0, 7.0, 39.0):  # within an x, spend rises bin by bin
        ln_m = rows.ln_m[order][ranked_x == value]
        assert (np.diff(ln_m) >= -width * (1 + 1e-9)).all()
        assert ln_m[-1] - ln_m[0] > 100 * width
