"""BG/NBD: the published CDNOW fit, the gradient, compression, and the predictions."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import hyp2f1

from patron.analytics.models import bgnbd, fitting
from patron.analytics.models.bgnbd import BGNBDParams
from patron.analytics.models.simulate import simulate_bgnbd
from patron.analytics.models.summary import CompressedRFM, RFMSummary, compress
from patron.core.errors import ValidationFailed

# Fader, Hardie & Lee (2005), CDNOW sample, weeks, calibration through 1997-09-30.
PUBLISHED = BGNBDParams(r=0.243, alpha=4.414, a=0.793, b=2.426, loglik=-9582.4,
                        n_customers=2357)


def test_cdnow_fit_reproduces_the_published_estimates(cdnow_summary: RFMSummary) -> None:
    fitted = bgnbd.fit(cdnow_summary.compress())
    # Every published digit: within half a unit of the last digit shown.
    assert fitted.r == pytest.approx(PUBLISHED.r, abs=5e-4)
    assert fitted.alpha == pytest.approx(PUBLISHED.alpha, abs=5e-4)
    assert fitted.a == pytest.approx(PUBLISHED.a, abs=5e-4)
    assert fitted.b == pytest.approx(PUBLISHED.b, abs=5e-4)
    assert fitted.loglik == pytest.approx(PUBLISHED.loglik, abs=0.05)
    assert fitted.n_customers == 2357
    for ours, theirs in [(fitted.r, 0.243), (fitted.alpha, 4.414), (fitted.a, 0.793),
                         (fitted.b, 2.426), (fitted.loglik, -9582.4)]:
        assert f"{ours:.3g}" == f"{theirs:.3g}"


def test_each_start_reaches_the_same_cdnow_optimum(cdnow_summary: RFMSummary) -> None:
    data = cdnow_summary.compress()
    best = bgnbd.fit(data)
    for start in [(1.0, 1.0, 1.0, 1.0), (5.0, 100.0, 5.0, 0.2), (0.05, 0.5, 0.1, 10.0)]:
        other = bgnbd.fit(data, start=start)
        assert other.loglik == pytest.approx(best.loglik, abs=1e-4)
        assert other.alpha == pytest.approx(best.alpha, rel=1e-3)


def test_compressed_and_per_customer_rows_give_the_same_likelihood(
        cdnow_summary: RFMSummary) -> None:
    s = cdnow_summary
    per_customer = CompressedRFM(frequency=s.frequency, recency=s.recency, age=s.age,
                                 weight=np.ones(len(s)))
    compressed = s.compress()
    assert len(compressed) < len(per_customer) / 2
    for theta in [(0.243, 4.414, 0.793, 2.426), (1.0, 10.0, 2.0, 0.5)]:
        assert bgnbd.log_likelihood(theta, compressed) == pytest.approx(
            bgnbd.log_likelihood(theta, per_customer), rel=1e-12)
        assert bgnbd.log_likelihood_gradient(theta, compressed) == pytest.approx(
            bgnbd.log_likelihood_gradient(theta, per_customer), rel=1e-9)
    a, b = bgnbd.fit(compressed), bgnbd.fit(per_customer)
    assert (a.r, a.alpha, a.a, a.b) == pytest.approx((b.r, b.alpha, b.a, b.b), rel=1e-6)


@pytest.mark.parametrize("theta", [(0.243, 4.414, 0.793, 2.426), (2.0, 30.0, 0.3, 5.0),
                                   (0.8, 1.5, 3.0, 0.7)])
def test_gradient_matches_finite_differences(cdnow_summary: RFMSummary,
                                             theta: tuple[float, float, float, float]) -> None:
    data = cdnow_summary.compress()
    analytic = bgnbd.log_likelihood_gradient(theta, data)
    numeric = np.empty(4)
    for i in range(4):
        h = 1e-6 * theta[i]
        up, down = np.array(theta), np.array(theta)
        up[i] += h
        down[i] -= h
        numeric[i] = (bgnbd.log_likelihood(up, data) - bgnbd.log_likelihood(down, data)) / (2 * h)
    assert analytic == pytest.approx(numeric, rel=1e-5, abs=1e-4)


def test_conditional_expectation_matches_hardies_worked_example() -> None:
    """Fader, Hardie & Lee's note: x=2, t_x=30.43, T=38.86 expects 1.226 in 39 weeks."""
    got = bgnbd.conditional_expected_purchases(PUBLISHED, 39.0, 2, 30.43, 38.86)
    assert float(got) == pytest.approx(1.226, abs=5e-4)


def _paper_eq10(p: BGNBDParams, t: float, x: int, t_x: float, big_t: float) -> float:
    """Eq. 10 exactly as printed (no Euler transformation)."""
    r, alpha, a, b = p.r, p.alpha, p.a, p.b
    z = t / (alpha + big_t + t)
    head = (a + b + x - 1) / (a - 1) * (1 - ((alpha + big_t) / (alpha + big_t + t)) ** (r + x)
                                        * hyp2f1(r + x, b + x, a + b + x - 1, z))
    alive = 1 + (x > 0) * a / (b + x - 1) * ((alpha + big_t) / (alpha + t_x)) ** (r + x)
    return float(head / alive)


@pytest.mark.parametrize(("t", "x", "t_x", "big_t"), [
    (39, 0, 0.0, 30.0), (39, 1, 5.0, 38.0), (10, 7, 35.0, 36.0), (52, 15, 20.0, 38.0),
    (1, 3, 2.0, 3.0)])
def test_euler_form_agrees_with_the_printed_formula(t: float, x: int, t_x: float,
                                                    big_t: float) -> None:
    for p in [PUBLISHED, BGNBDParams(1.3, 9.0, 2.5, 4.0, 0.0, 0)]:
        ours = float(bgnbd.conditional_expected_purchases(p, t, x, t_x, big_t))
        assert ours == pytest.approx(_paper_eq10(p, t, x, t_x, big_t), rel=1e-9)


def test_heavy_buyers_get_finite_increasing_predictions() -> None:
    x = np.array([50, 100, 200, 400])
    got = bgnbd.conditional_expected_purchases(PUBLISHED, 39.0, x, 38.0, 38.5)
    assert np.isfinite(got).all()
    assert (np.diff(got) > 0).all()


def test_p_alive_is_one_without_repeats_and_falls_with_silence() -> None:
    assert bgnbd.p_alive(PUBLISHED, 0, 0.0, 30.0) == 1.0
    silent_for = np.array([0.0, 5.0, 15.0, 30.0])
    alive = bgnbd.p_alive(PUBLISHED, 3, 30.0 - silent_for, 30.0)
    assert ((alive > 0) & (alive <= 1)).all()
    assert (np.diff(alive) < 0).all()


def test_new_customer_expectation_is_the_zero_history_case() -> None:
    t = np.array([0.0, 1.0, 39.0, 78.0])
    new = bgnbd.expected_purchases(PUBLISHED, t)
    assert new[0] == 0.0
    assert (np.diff(new) > 0).all()
    assert new == pytest.approx([_paper_eq10(PUBLISHED, float(v), 0, 0.0, 0.0) if v else 0.0
                                 for v in t])


def test_cohort_curve_sums_new_customer_curves_from_each_first_purchase() -> None:
    first = np.array([0.0, 0.0, 3.5, 10.0])
    t = np.array([0.0, 5.0, 20.0])
    got = bgnbd.expected_cohort_repeat_purchases(PUBLISHED, t, first)
    brute = [sum(float(bgnbd.expected_purchases(PUBLISHED, max(v - s, 0.0))) for s in first)
             for v in t]
    assert got == pytest.approx(brute)


def test_fit_refuses_data_without_repeat_purchases() -> None:
    with pytest.raises(ValidationFailed, match="repeat purchase"):
        bgnbd.fit(compress([0, 0], [0.0, 0.0], [3.0, 4.0]))


@pytest.fixture(scope="module")
def many_distinct_rows() -> CompressedRFM:
    """60,000 customers timed to the second, as the refresh fits them: no two share a row."""
    rng = np.random.default_rng(2005)
    truth = BGNBDParams(r=0.5, alpha=15.0, a=0.6, b=2.4, loglik=0.0, n_customers=0)
    age = rng.uniform(1.0, 730.0, 60_000)
    x, t_x = simulate_bgnbd(truth, age, rng)
    data = compress(x, t_x, age)
    assert len(data) > 2 * fitting.SAMPLE_ROWS  # large enough to start on a sample
    return data


def test_starting_on_a_sample_reaches_the_full_data_optimum(
        many_distinct_rows: CompressedRFM) -> None:
    data = many_distinct_rows
    sampled = bgnbd.fit(data)  # starts on a sample, polished on every row
    full = bgnbd.fit(data, sample_rows=0)  # every start on every row
    assert (sampled.r, sampled.alpha, sampled.a, sampled.b) == pytest.approx(
        (full.r, full.alpha, full.a, full.b), rel=1e-6)
    assert sampled.loglik == pytest.approx(full.loglik, rel=1e-12)
    # the sample alone lands near, not on, the optimum: the polish is what makes it exact
    part = bgnbd._Rows.of(data).part(fitting.sample(len(data)) or slice(None))
    rough = CompressedRFM(frequency=part.x.astype(np.int64), recency=part.t_x,
                          age=part.big_t, weight=part.w)
    alone = bgnbd.fit(rough, sample_rows=0)
    assert alone.alpha != pytest.approx(full.alpha, rel=1e-4)


def test_polishing_from_an_unrepresentative_sample_still_finds_the_optimum(
        many_distinct_rows: CompressedRFM) -> None:
    data = many_distinct_rows
    rows = bgnbd._Rows.of(data)
    lopsided = rows.part(slice(0, 5_000))  # the lightest buyers only
    start = np.log(np.array(bgnbd._starts(rows)[0]))
    rough = bgnbd._objective(lopsided)
    found = fitting.minimise_from_starts(rough, [start], bounds=bgnbd.LOG_BOUNDS)
    assert found is not None
    polished = fitting.polish(bgnbd._objective(rows), rough, found.x, bounds=bgnbd.LOG_BOUNDS)
    full = bgnbd.fit(data, sample_rows=0)
    assert np.exp(polished.x) == pytest.approx([full.r, full.alpha, full.a, full.b], rel=1e-6)


def _textbook_terms(theta: tuple[float, float, float, float], data: CompressedRFM
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Per-row ln L and gradient written as in the module docstring (logaddexp, expit)."""
    from scipy.special import betaln, digamma, expit, gammaln

    r, alpha, a, b = theta
    x, t_x, big_t = data.frequency.astype(float), data.recency, data.age
    pos = x > 0
    b_x1 = np.where(pos, b + x - 1.0, 1.0)
    d = np.where(pos, np.log(a) - np.log(b_x1) + (r + x) * (np.log(alpha + big_t)
                                                           - np.log(alpha + t_x)), -np.inf)
    ll = (gammaln(r + x) - gammaln(r) + betaln(a, b + x) - betaln(a, b) + r * np.log(alpha)
          - (r + x) * np.log(alpha + big_t) + np.logaddexp(0.0, d))
    s = expit(d)
    dab = digamma(a + b) - digamma(a + b + x)
    gap = np.log(alpha + big_t) - np.log(alpha + t_x)
    g = np.stack([digamma(r + x) - digamma(r) + np.log(alpha) - np.log(alpha + big_t) + s * gap,
                  r / alpha - (r + x) / (alpha + big_t)
                  + s * (r + x) * (1.0 / (alpha + big_t) - 1.0 / (alpha + t_x)),
                  dab + s / a,
                  dab + digamma(b + x) - digamma(b) - np.where(pos, s / b_x1, 0.0)])
    return ll, g


@pytest.mark.parametrize("theta", [(0.243, 4.414, 0.793, 2.426), (2.0, 30.0, 0.3, 5.0),
                                   (0.05, 0.5, 6.0, 0.2)])
def test_likelihood_terms_match_the_textbook_form(cdnow_summary: RFMSummary,
                                                  many_distinct_rows: CompressedRFM,
                                                  theta: tuple[float, float, float, float]
                                                  ) -> None:
    """The softplus and sigmoid share one exp and x-only terms are per distinct x; the
    values are those of the formula as written."""
    for data in (cdnow_summary.compress(), many_distinct_rows):
        ll, g = bgnbd._loglik_terms(theta, bgnbd._Rows.of(data), grad=True)
        assert g is not None
        ref_ll, ref_g = _textbook_terms(theta, data)
        assert ll == pytest.approx(ref_ll, rel=1e-13, abs=1e-12)
        assert np.allclose(g, ref_g, rtol=1e-9, atol=1e-12 * float(np.abs(ref_g).max()))


def test_a_known_p_alive_can_be_passed_in() -> None:
    x, t_x, age = np.array([0, 2, 9]), np.array([0.0, 20.0, 30.0]), np.array([35.0, 38.0, 39.0])
    t = np.array([[4.0], [52.0]])
    alive = bgnbd.p_alive(PUBLISHED, x, t_x, age)
    assert (bgnbd.conditional_expected_purchases(PUBLISHED, t, x, t_x, age, alive=alive)
            == bgnbd.conditional_expected_purchases(PUBLISHED, t, x, t_x, age)).all()


def test_polish_is_not_handed_to_lbfgsb_by_rounding_noise() -> None:
    """At the optimum an objective summed over a million rows moves by rounding only; a
    Newton step that shrinks the gradient while the value rises by a few ulps is progress,
    not a failure that hands the polish to L-BFGS-B."""
    hessian = np.array([[2.0, 0.3, 0.0], [0.3, 1.0, 0.1], [0.0, 0.1, 0.5]])
    target = np.array([0.2, -0.4, 0.7])

    def noisy(u: np.ndarray) -> tuple[float, np.ndarray]:
        e = u - target
        value = 9.0 + 0.5 * float(e @ hessian @ e)
        wobble = 3e-15 * value * ((hash(u.tobytes()) % 1000) / 1000.0)
        return value + wobble, hessian @ e

    def rough(u: np.ndarray) -> tuple[float, np.ndarray]:  # a sample's curvature, 3 % off
        e = u - target
        return 9.0 + 0.5 * float(e @ (1.03 * hessian) @ e), 1.03 * hessian @ e

    found = fitting.polish(noisy, rough, target + 0.05, bounds=bgnbd.LOG_BOUNDS)
    assert found.message.startswith("Newton steps")
    assert float(np.max(np.abs(found.jac))) <= fitting.GTOL
    assert found.nfev <= 12
