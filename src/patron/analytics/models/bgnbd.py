"""BG/NBD purchase model: fit on compressed (x, t_x, T) and per-customer predictions.

Design overview
---------------
Fader, Hardie & Lee, "'Counting Your Customers' the Easy Way: An Alternative to the
Pareto/NBD Model", Marketing Science 24(2), 2005. While active, a customer buys as a
Poisson process with rate λ; after every *repeat* purchase they drop out for good with
probability p. Across customers λ ~ Gamma(r, α) (α is a time scale, in the summary's time
unit) and p ~ Beta(a, b).

Likelihood of one customer with x repeat purchases, the last at t_x, observed for T,
written in logs so nothing overflows at large x:

    ln L = ln Γ(r+x) − ln Γ(r) + r ln α + ln B(a, b+x) − ln B(a, b) − (r+x) ln(α+T)
           + ln(1 + 1{x>0} · exp(D)),
    D    = ln a − ln(b+x−1) + (r+x) [ln(α+T) − ln(α+t_x)]

The last term is ``logaddexp(0, D)``. The fit maximises the weighted sum over compressed
rows with L-BFGS-B on log-parameters (positivity for free, better scaling) using the
analytic gradient, from several starting points (``fitting``). Per customer,
1/(1 + exp(D)) is P(alive) and σ(D) is the weight of the "dropped out at t_x"
branch that appears in every partial derivative.

Conditional expectation (eq. 10) for the next t periods:

    E[Y(t) | x, t_x, T] = (a+b+x−1)/(a−1) · [1 − ((α+T)/(α+T+t))^(r+x) ·
                          ₂F₁(r+x, b+x; a+b+x−1; z)] · P(alive),  z = t/(α+T+t)

Euler's transformation ₂F₁(A, B; C; z) = (1−z)^(C−A−B) ₂F₁(C−A, C−B; C; z) turns the
bracketed product into (1−z)^(a−1) ₂F₁(a+b−1−r, a−1; a+b+x−1; z), whose upper parameters
do not grow with x, so it is well conditioned for heavy buyers. A new customer's E[X(t)]
is the same expression at x = t_x = T = 0. The formulas divide by a − 1 and need
a ≠ 1 (a fitted a is never exactly 1).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import betaln, digamma, expit, gammaln, hyp2f1

from patron.analytics.models.fitting import (
    SAMPLE_ROWS,
    Objective,
    minimise_from_starts,
    names_on_bounds,
    sample,
    weighted_sum,
)
from patron.analytics.models.summary import CompressedRFM, RFMSummary
from patron.core.errors import ValidationFailed

FloatArray = NDArray[np.float64]

# Bounds on log-parameters: wide enough for any real customer base, narrow enough that
# exp() never overflows while the optimiser explores.
LOG_BOUNDS = (float(np.log(1e-6)), float(np.log(1e6)))


@dataclass(frozen=True)
class BGNBDParams:
    """Fitted BG/NBD parameters; ``alpha`` is in the time unit of the data it was fitted on."""

    r: float
    alpha: float
    a: float
    b: float
    loglik: float
    n_customers: int

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)

    def unsettled(self) -> list[str]:
        """Parameters stuck at the edge of the search box (empty for a proper fit)."""
        return names_on_bounds({"r": self.r, "alpha": self.alpha, "a": self.a, "b": self.b},
                               LOG_BOUNDS)


def _theta(params: BGNBDParams | ArrayLike) -> tuple[float, float, float, float]:
    if isinstance(params, BGNBDParams):
        return params.r, params.alpha, params.a, params.b
    r, alpha, a, b = (float(v) for v in np.asarray(params, dtype=np.float64).reshape(4))
    return r, alpha, a, b


@dataclass(frozen=True)
class _Rows:
    """Compressed rows prepared for repeated likelihood evaluations.

    The special functions of the likelihood depend on a row only through x, which takes
    few distinct values, so they are evaluated once per distinct x (``xs``) and indexed
    back with ``x_index``.
    """

    x: FloatArray
    t_x: FloatArray
    big_t: FloatArray
    w: FloatArray
    xs: FloatArray
    x_index: NDArray[np.intp]

    @classmethod
    def of(cls, data: CompressedRFM) -> _Rows:
        xs, index = np.unique(data.frequency, return_inverse=True)
        return cls(x=data.frequency.astype(np.float64), t_x=data.recency, big_t=data.age,
                   w=data.weight, xs=xs.astype(np.float64),
                   x_index=index.reshape(-1).astype(np.intp))

    def part(self, rows: slice) -> _Rows:
        """Some of the rows (a sample for the starts); ``xs`` stays whole."""
        return _Rows(x=self.x[rows], t_x=self.t_x[rows], big_t=self.big_t[rows],
                     w=self.w[rows], xs=self.xs, x_index=self.x_index[rows])


def _loglik_terms(theta: tuple[float, float, float, float], rows: _Rows, *,
                  grad: bool) -> tuple[FloatArray, FloatArray | None]:
    """Per-row log-likelihood and, if asked, its (4, n) gradient w.r.t. (r, α, a, b)."""
    r, alpha, a, b = theta
    x, t_x, big_t, xs, ix = rows.x, rows.t_x, rows.big_t, rows.xs, rows.x_index
    rx = r + x
    ln_at = np.log(alpha + big_t)
    ln_atx = np.log(alpha + t_x)
    per_x = gammaln(r + xs) - gammaln(r) + betaln(a, b + xs) - betaln(a, b)
    ll = per_x[ix] + r * np.log(alpha) - rx * ln_at
    pos = x > 0
    b_x1 = np.where(pos, b + x - 1.0, 1.0)  # only read where x > 0
    d = np.where(pos, np.log(a) - np.log(b_x1) + rx * (ln_at - ln_atx), -np.inf)
    ll = ll + np.logaddexp(0.0, d)
    if not grad:
        return ll, None
    s = expit(d)  # 0 where x == 0
    dab = digamma(a + b) - digamma(a + b + xs)
    g = np.empty((4, x.shape[0]))
    g[0] = ((digamma(r + xs) - digamma(r))[ix] + np.log(alpha) - ln_at
            + s * (ln_at - ln_atx))
    g[1] = r / alpha - rx / (alpha + big_t) + s * rx * (1.0 / (alpha + big_t)
                                                        - 1.0 / (alpha + t_x))
    g[2] = dab[ix] + s / a
    g[3] = (dab + digamma(b + xs) - digamma(b))[ix] - s / b_x1
    return ll, g


def log_likelihood(params: BGNBDParams | ArrayLike, data: CompressedRFM) -> float:
    """Weighted BG/NBD log-likelihood of ``data`` at (r, α, a, b)."""
    rows = _Rows.of(data)
    ll, _ = _loglik_terms(_theta(params), rows, grad=False)
    return float(weighted_sum(ll, rows.w))


def log_likelihood_gradient(params: BGNBDParams | ArrayLike, data: CompressedRFM) -> FloatArray:
    """Analytic gradient of :func:`log_likelihood` w.r.t. (r, α, a, b)."""
    rows = _Rows.of(data)
    _, g = _loglik_terms(_theta(params), rows, grad=True)
    assert g is not None
    return weighted_sum(g, rows.w)


def _starts(rows: _Rows) -> list[tuple[float, float, float, float]]:
    """Starting points spread over plausible shapes, scaled to the data's purchase rate.

    With r/α equal to the observed repeat rate the Gamma part starts at the right scale; a
    and b range from "most customers stay" to "most leave soon", so at least one start is
    in the basin of the optimum whichever story the data tell.
    """
    rate = max(float(weighted_sum(rows.x, rows.w))
               / max(float(weighted_sum(rows.big_t, rows.w)), 1e-12), 1e-6)
    shapes = [(1.0, 1.0, 1.0), (0.25, 0.8, 2.5), (2.0, 0.5, 5.0), (0.5, 2.0, 1.0)]
    return [(r, r / rate, a, b) for r, a, b in shapes]


def _objective(rows: _Rows) -> Objective:
    """Mean negative log-likelihood per customer and its gradient, in log-parameters."""
    total = float(rows.w.sum())

    def objective(u: FloatArray) -> tuple[float, FloatArray]:
        theta = np.exp(u)
        ll, g = _loglik_terms((theta[0], theta[1], theta[2], theta[3]), rows, grad=True)
        assert g is not None
        return -float(weighted_sum(ll, rows.w)) / total, -weighted_sum(g, rows.w) * theta / total

    return objective


def fit(data: CompressedRFM | RFMSummary, *,
        start: tuple[float, float, float, float] | None = None,
        sample_rows: int = SAMPLE_ROWS) -> BGNBDParams:
    """Maximum-likelihood (r, α, a, b) for compressed (or per-customer) RFM data.

    Starts are tried in turn until two reach the same optimum (see ``fitting``); with
    more than 2 × ``sample_rows`` rows they are tried on a systematic sample of that many
    and the best is polished on all rows (0: always on all rows). Raises
    ``ValidationFailed`` when the data cannot identify the model (no customers, or no
    repeat purchases at all).
    """
    rows = _Rows.of(data.compress() if isinstance(data, RFMSummary) else data)
    total = float(rows.w.sum())
    if total <= 0:
        raise ValidationFailed("no customers to fit", "data")
    if float(weighted_sum(rows.x, rows.w)) <= 0:
        raise ValidationFailed("nobody made a repeat purchase: the model cannot be fitted",
                               "data")
    starts = [start] if start is not None else _starts(rows)
    some = sample(len(rows.x), sample_rows) if start is None else None
    rough = None
    if some is not None:
        part = rows.part(some)
        if float(weighted_sum(part.x, part.w)) > 0:
            rough = _objective(part)
    best = minimise_from_starts(_objective(rows), [np.log(s) for s in starts],
                                bounds=LOG_BOUNDS, rough=rough)
    if best is None:
        raise ValidationFailed("the BG/NBD fit did not converge", "data")
    r, alpha, a, b = (float(v) for v in np.exp(best.x))
    return BGNBDParams(r=r, alpha=alpha, a=a, b=b, loglik=-float(best.fun) * total,
                       n_customers=round(total))


def p_alive(params: BGNBDParams, frequency: ArrayLike, recency: ArrayLike,
            age: ArrayLike) -> FloatArray:
    """P(still active at T | x, t_x, T); 1 for customers with no repeat purchase."""
    x = np.asarray(frequency, dtype=np.float64)
    t_x = np.asarray(recency, dtype=np.float64)
    big_t = np.asarray(age, dtype=np.float64)
    pos = x > 0
    b_x1 = np.where(pos, params.b + x - 1.0, 1.0)
    d = np.where(pos, np.log(params.a) - np.log(b_x1)
                 + (params.r + x) * (np.log(params.alpha + big_t)
                                     - np.log(params.alpha + t_x)), -np.inf)
    return np.asarray(expit(-d), dtype=np.float64)


def conditional_expected_purchases(params: BGNBDParams, t: ArrayLike, frequency: ArrayLike,
                                   recency: ArrayLike, age: ArrayLike) -> FloatArray:
    """E[Y(t) | x, t_x, T]: expected purchases in the next ``t`` periods (eq. 10).

    Arguments broadcast against each other (a column of horizons against a row of
    customers gives a horizon × customer matrix).
    """
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    x = np.asarray(frequency, dtype=np.float64)
    big_t = np.asarray(age, dtype=np.float64)
    horizon = np.asarray(t, dtype=np.float64)
    z = horizon / (alpha + big_t + horizon)
    tail = (1.0 - z) ** (a - 1.0) * hyp2f1(a + b - 1.0 - r, a - 1.0, a + b + x - 1.0, z)
    expected = (a + b + x - 1.0) / (a - 1.0) * (1.0 - tail)
    return np.asarray(expected * p_alive(params, x, recency, big_t), dtype=np.float64)


def expected_purchases(params: BGNBDParams, t: ArrayLike) -> FloatArray:
    """E[X(t)]: expected repeat purchases of a customer in the ``t`` periods after joining."""
    zero = np.zeros_like(np.asarray(t, dtype=np.float64))
    return conditional_expected_purchases(params, t, zero, zero, zero)


def expected_cohort_repeat_purchases(params: BGNBDParams, t: ArrayLike,
                                     first_purchase: ArrayLike,
                                     weight: ArrayLike | None = None) -> FloatArray:
    """Expected cumulative repeat purchases of a cohort by each time in ``t``.

    ``first_purchase`` holds each customer's time 0 on the same axis as ``t`` (e.g. weeks
    since the cohort's start); a customer contributes E[X(t − s)] once t passes their s.
    This is the curve of the paper's tracking plot (Figure 3). Customers are grouped by
    first-purchase time first, so the cost is (distinct times) × len(t).
    """
    s = np.asarray(first_purchase, dtype=np.float64).reshape(-1)
    w = np.ones_like(s) if weight is None else np.asarray(weight, dtype=np.float64).reshape(-1)
    times, inverse = np.unique(s, return_inverse=True)
    counts = np.bincount(inverse.reshape(-1), weights=w, minlength=times.shape[0])
    horizon = np.asarray(t, dtype=np.float64)
    elapsed = np.maximum(horizon.reshape(-1, 1) - times.reshape(1, -1), 0.0)
    per_time = expected_purchases(params, elapsed)
    return weighted_sum(per_time, counts).reshape(horizon.shape)
