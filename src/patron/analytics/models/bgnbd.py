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

The last term is ln(1 + e^D), a softplus. The fit maximises the weighted sum over compressed
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

Eq. 10 for a million customers: the Taylor grid
------------------------------------------------
Scoring evaluates eq. 10 at 15 horizons for every customer, and one ``hyp2f1`` costs
about 200 ns, so the direct formula spends some 3 s there. E[Y | alive], eq. 10 without
P(alive), depends on a customer only through x (a few hundred distinct values) and
q = t/(α+T) (z = q/(1+q)), so it is tabulated per distinct x on a grid in q and read
back from Taylor polynomials (``expected_if_alive``):

* Nodes sit at ln q = m · GRID_STEP (q 5 % apart), plus a node at z = 0 for every
  q < 0.0101 (z < 0.01). A value's node is rint(ln t/step − ln(α+T)/step), from the same
  logs wherever the range of cells is worked out, so every value's cell exists.
* At each node the coefficients are exact: d^k/dz^k ₂F₁(A, B; C; z) = (A)_k (B)_k /
  (C)_k · ₂F₁(A+k, B+k; C+k; z), times the binomial series of (1−z)^(a−1); the value at
  the node, 1 − tail, is summed without cancellation for z ≤ 1/2 (``_one_minus_tail``).
  Polynomials of order TAYLOR_ORDER = 8 are evaluated in v = (q − q_node)/(1+q) =
  (z − z_node)/(1 − z_node), which keeps a few ulps of relative accuracy both near z = 0
  and near the singularity at z = 1; nine ``take``s and a Horner pass cost about 15 ns
  a value.
* Error bound. A cell spans z_node ± h with h ≤ 2.5 % of 1 − z_node: the singularity at
  z = 1 is at least 40 half-widths away from every cell. The Lagrange remainder is at
  most max|tail^(9)| h^9 / 9!, and Leibniz's rule bounds tail^(9) by derivatives of
  (1−z)^(a−1) and of ₂F₁ that are monotone in z (₂F₁(A+k, B+k; C+k; ·) has positive
  series coefficients when A ≥ −1, i.e. r ≤ a + b), so by their values at the cell's two
  ends. E[Y | alive] grows with z, so its least value on the cell is at the lower end
  (the z = 0 cell compares with u times a lower bound of its slope instead). A cell is
  used only if the bound, doubled, is at most GRID_TOLERANCE = 1e-14 of that least value.
  Each cell is also checked against eq. 10 itself at its ends and quarter points (to
  1e-13, or the rounding of 1 − tail), which catches hyp2f1 being off, as it is for
  some shifted parameters with an integer C − A − B near z = 1.
* Everything else is computed directly: cells that fail, frequencies with too few
  values to repay their grid (a grid costs 21 ``hyp2f1`` calls a cell, and is built for
  an x only when that x has at least as many values), r > a + b, |a − 1| < 0.01 (eq. 10
  is then ill-conditioned in either form), non-finite or negative inputs, and small
  calls. On the reference base (1 M customers, fit r = 0.52, α = 16.6, a = 0.60,
  b = 2.38) 0.5 % (12 horizons) to 1.5 % (3 horizons) of the customers, those with rare
  frequencies, go direct, and no value falls in a cell that failed.

The values agree with the direct formula to its own rounding: measured within 1.3e-13
relative on the reference base, where the largest differences are the direct formula's
own cancellation in 1 − tail (against eq. 10 summed in 40 digits the grid is within
1e-15 there, the direct formula within 1e-13); tests compare over a broad sweep.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import betaln, binom, digamma, expit, gammaln, hyp2f1, poch

from patron.analytics.models.fitting import (
    SAMPLE_ROWS,
    Objective,
    factorise,
    minimise_from_starts,
    names_on_bounds,
    rows_objective,
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
        xs, index = factorise(data.frequency)
        return cls(x=data.frequency.astype(np.float64), t_x=data.recency, big_t=data.age,
                   w=data.weight, xs=xs, x_index=index)

    def part(self, rows: slice) -> _Rows:
        """Some of the rows (a sample for the starts); ``xs`` stays whole."""
        return _Rows(x=self.x[rows], t_x=self.t_x[rows], big_t=self.big_t[rows],
                     w=self.w[rows], xs=self.xs, x_index=self.x_index[rows])


@dataclass(frozen=True)
class _PerX:
    """The likelihood's terms of x alone at one θ, per distinct x (``_Rows.xs``)."""

    ll: FloatArray  # ln Γ(r+x) − ln Γ(r) + ln B(a, b+x) − ln B(a, b)
    ln_odds: FloatArray  # ln a − ln(b+x−1); −∞ when x = 0
    d_r: FloatArray | None  # the terms of the gradient (None without one)
    d_a: FloatArray | None
    d_b: FloatArray | None
    inv_b_x1: FloatArray | None  # 1/(b+x−1); 0 when x = 0

    @classmethod
    def of(cls, theta: tuple[float, float, float, float], xs: FloatArray, *,
           grad: bool) -> _PerX:
        r, _, a, b = theta
        repeat = xs > 0
        b_x1 = np.where(repeat, b + xs - 1.0, 1.0)
        with np.errstate(divide="ignore"):
            ln_odds = np.where(repeat, np.log(a) - np.log(b_x1), -np.inf)  # D = −∞ if x = 0
        ll = gammaln(r + xs) - gammaln(r) + betaln(a, b + xs) - betaln(a, b)
        if not grad:
            return cls(ll=ll, ln_odds=ln_odds, d_r=None, d_a=None, d_b=None, inv_b_x1=None)
        dab = digamma(a + b) - digamma(a + b + xs)
        return cls(ll=ll, ln_odds=ln_odds, d_r=digamma(r + xs) - digamma(r), d_a=dab,
                   d_b=dab + digamma(b + xs) - digamma(b),
                   inv_b_x1=np.where(repeat, 1.0 / b_x1, 0.0))


def _loglik_terms(theta: tuple[float, float, float, float], rows: _Rows, *,
                  grad: bool, per_x: _PerX | None = None) -> tuple[FloatArray, FloatArray | None]:
    """Per-row log-likelihood and, if asked, its (4, n) gradient w.r.t. (r, α, a, b).

    Terms of x alone (ln a − ln(b+x−1) among them) are taken per distinct x (``_PerX``,
    which a caller summing piece by piece makes once); the softplus ln(1 + e^D) and the
    sigmoid σ(D) share one ``exp`` (NumPy's ``logaddexp`` and SciPy's ``expit`` each cost
    as much as the rest of a pass over the rows).
    """
    r, alpha, a, _ = theta
    if per_x is None:
        per_x = _PerX.of(theta, rows.xs, grad=grad)
    x, t_x, big_t, ix = rows.x, rows.t_x, rows.big_t, rows.x_index
    rx = r + x
    ln_at = np.log(alpha + big_t)
    gap = ln_at - np.log(alpha + t_x)  # ln((α+T)/(α+t_x)) >= 0
    ll = per_x.ll[ix] + r * np.log(alpha) - rx * ln_at
    d = per_x.ln_odds[ix] + rx * gap
    e = np.exp(-np.abs(d))
    ll += np.maximum(d, 0.0) + np.log1p(e)  # ln(1 + e^D)
    if not grad:
        return ll, None
    assert per_x.d_r is not None
    assert per_x.d_a is not None
    assert per_x.d_b is not None
    assert per_x.inv_b_x1 is not None
    s = np.where(d > 0.0, 1.0, e) / (1.0 + e)  # σ(D); 0 where x == 0
    g = np.empty((4, x.shape[0]))
    g[0] = per_x.d_r[ix] + (np.log(alpha) - ln_at + s * gap)
    inv_at = 1.0 / (alpha + big_t)
    g[1] = r / alpha - rx * inv_at + s * rx * (inv_at - 1.0 / (alpha + t_x))
    g[2] = per_x.d_a[ix] + s / a
    g[3] = per_x.d_b[ix] - s * per_x.inv_b_x1[ix]
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
    """Mean negative log-likelihood per customer and its gradient, in log-parameters,
    summed piece by piece (``fitting.rows_objective``)."""
    return rows_objective(rows, _PerX.of, _loglik_terms)


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
                                   recency: ArrayLike, age: ArrayLike, *,
                                   alive: ArrayLike | None = None) -> FloatArray:
    """E[Y(t) | x, t_x, T]: expected purchases in the next ``t`` periods (eq. 10).

    Arguments broadcast against each other (a column of horizons against a row of
    customers gives a horizon × customer matrix). ``alive`` may pass P(alive) when the
    caller has it already. Many values come from the Taylor grid of the module docstring;
    they agree with :func:`conditional_expected_purchases_direct` to that formula's own
    rounding (1.3e-13 relative at most on the reference base).
    """
    if alive is None:
        alive = p_alive(params, frequency, recency, age)
    return _expected(params, t, frequency, age, np.asarray(alive, dtype=np.float64))


def conditional_expected_purchases_direct(params: BGNBDParams, t: ArrayLike,
                                          frequency: ArrayLike, recency: ArrayLike,
                                          age: ArrayLike) -> FloatArray:
    """Eq. 10 with one ``hyp2f1`` per horizon and customer: the reference for the grid."""
    x = np.asarray(frequency, dtype=np.float64)
    big_t = np.asarray(age, dtype=np.float64)
    expected = _direct_if_alive(params, np.asarray(t, dtype=np.float64), x, big_t)
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


# ---------------------------------------------------------------- eq. 10 on a Taylor grid
#: Order of the Taylor polynomials of the tail (see the module docstring).
TAYLOR_ORDER = 8
#: Grid step in ln q, q = t/(α+T): neighbouring nodes are 5 % apart in q.
GRID_STEP = 0.05
#: Below this z (q = z/(1−z)) the series at z = 0 serves; above it the lattice starts.
ZERO_CELL_Z = 0.01
#: Relative error bound every grid cell must prove, else its evaluations go direct.
GRID_TOLERANCE = 1e-14
#: An x gets a grid when it has at least this many evaluations per ₂F₁ call its grid costs.
GRID_WORTH = 1.0
#: Near a = 1 eq. 10 is ill-conditioned ((1 − tail)/(a − 1) with 1 − tail = O(a − 1)), so
#: rounding, not the grid, would set the accuracy: there every value is computed directly.
GRID_MIN_DISTANCE_A_1 = 0.01
#: Lattice cells beyond which a call goes direct (a horizon far beyond α+T).
GRID_MAX_SLOTS = 4096
#: Customers per block of the evaluation loop (the block's temporaries stay in cache).
GRID_CHUNK = 16_384
EPS = float(np.finfo(np.float64).eps)


def _direct_if_alive(params: BGNBDParams, horizon: FloatArray | float, x: FloatArray,
                     big_t: FloatArray) -> FloatArray:
    """(a+b+x−1)/(a−1) · [1 − tail]: eq. 10 without P(alive), one ``hyp2f1`` per value."""
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    z = horizon / (alpha + big_t + horizon)
    tail = (1.0 - z) ** (a - 1.0) * hyp2f1(a + b - 1.0 - r, a - 1.0, a + b + x - 1.0, z)
    return np.asarray((a + b + x - 1.0) / (a - 1.0) * (1.0 - tail), dtype=np.float64)


def _expected(params: BGNBDParams, t: ArrayLike, frequency: ArrayLike, age: ArrayLike,
              alive: FloatArray) -> FloatArray:
    """Eq. 10 (P(alive) given) for broadcast arguments, on the grid where that pays."""
    horizon = np.asarray(t, dtype=np.float64)
    x = np.asarray(frequency, dtype=np.float64)
    big_t = np.asarray(age, dtype=np.float64)
    customers = np.broadcast_shapes(x.shape, big_t.shape)
    shape = np.broadcast_shapes(horizon.shape, customers, alive.shape)
    lead = len(shape) - len(customers)
    padded = (1,) * (len(shape) - horizon.ndim) + horizon.shape
    if all(d == 1 for d in padded[lead:]):
        # horizons vary along the leading axes only: rows of horizons × customers
        rows: list[float | FloatArray] = [float(v) for v in np.broadcast_to(
            horizon.reshape(padded), shape[:lead] + (1,) * len(customers)).reshape(-1)]
        cust_x = np.broadcast_to(x, customers).reshape(-1)
        cust_t = np.broadcast_to(big_t, customers).reshape(-1)
        per_customer = np.broadcast_shapes(alive.shape, customers) == customers
        scale = np.broadcast_to(alive, customers).reshape(-1) if per_customer else None
    else:  # a horizon per customer: one row over every element
        rows = [np.broadcast_to(horizon, shape).reshape(-1)]
        cust_x = np.broadcast_to(x, shape).reshape(-1)
        cust_t = np.broadcast_to(big_t, shape).reshape(-1)
        scale = np.broadcast_to(alive, shape).reshape(-1)
    values = expected_if_alive(params, rows, cust_x, cust_t, scale=scale).reshape(shape)
    return values if scale is not None else np.asarray(values * alive, dtype=np.float64)


def expected_if_alive(params: BGNBDParams, horizons: Sequence[float | FloatArray],
                      frequency: FloatArray, age: FloatArray, *,
                      scale: FloatArray | None = None,
                      weights: FloatArray | None = None) -> FloatArray:
    """E[Y(t) | x, T, alive] = (a+b+x−1)/(a−1) · [1 − tail] for many customers.

    ``frequency`` and ``age`` are 1-d, one entry per customer; each horizon is a number
    or a 1-d array with one horizon per customer. Returns a (horizons × customers)
    matrix, each value times ``scale`` (per customer, e.g. P(alive)) if given; with
    ``weights`` (one per horizon) the weighted sum over the horizons instead, one value
    per customer, without the matrix. Values come from the Taylor grid where it proves
    its accuracy and pays for itself, otherwise from ``hyp2f1`` directly.
    """
    x = np.asarray(frequency, dtype=np.float64).reshape(-1)
    big_t = np.asarray(age, dtype=np.float64).reshape(-1)
    n = x.shape[0]
    out = np.zeros(n) if weights is not None else np.empty((len(horizons), n))
    grid = _grid_for(params, horizons, x, big_t)
    if grid is not None:
        _fill_from_grid(params, grid, horizons, x, big_t, out, scale=scale, weights=weights)
    direct = grid.direct if grid is not None else np.arange(n)
    if direct.size:  # customers whose x has no grid (or all customers)
        values = np.stack([_direct_if_alive(params, h if isinstance(h, float) else h[direct],
                                            x[direct], big_t[direct])
                           for h in horizons]).reshape(len(horizons), direct.size)
        if weights is not None:
            out[direct] = weighted_sum(values.T, weights)
        else:
            out[:, direct] = values * scale[direct] if scale is not None else values
    if weights is not None and scale is not None:
        out *= scale
    return out


def _fill_from_grid(params: BGNBDParams, grid: _Grid, horizons: Sequence[float | FloatArray],
                    x: FloatArray, big_t: FloatArray, out: FloatArray, *,
                    scale: FloatArray | None, weights: FloatArray | None) -> None:
    """The grid's values into ``out`` (as :func:`expected_if_alive` lays them out, without
    the final ``scale`` of a weighted sum), block of customers by block."""
    n = x.shape[0]
    for lo in range(0, n, GRID_CHUNK):
        hi = min(lo + GRID_CHUNK, n)
        buffers = (np.empty(hi - lo), np.empty(hi - lo), np.empty(hi - lo))
        for i, horizon in enumerate(horizons):
            h = horizon if isinstance(horizon, float) else horizon[lo:hi]
            lh = grid.log_horizons[i]
            values = grid.evaluate(h, lh if isinstance(lh, float) else lh[lo:hi], lo, hi,
                                   buffers)
            if math.isnan(float(values.sum())):  # a cell the bound did not prove
                missing = np.isnan(values)
                values[missing] = _direct_if_alive(
                    params, h if isinstance(h, float) else h[missing], x[lo:hi][missing],
                    big_t[lo:hi][missing])
            if weights is not None:
                values *= weights[i]
                out[lo:hi] += values
            elif scale is not None:
                np.multiply(values, scale[lo:hi], out=out[i, lo:hi])
            else:
                out[i, lo:hi] = values


@dataclass(frozen=True)
class _Grid:
    """Taylor coefficients of E[Y | alive] around the grid's nodes, per distinct x.

    Each x with a grid has a block of ``slots``: slot 0 is the node z = 0 (the cell
    below q_c), slot i ≥ 1 the node at ln q = (first − 1 + i) · step. ``coef[k]`` holds
    the k-th Taylor coefficient in powers of v = (q − q_node)/(1 + q) for every (block,
    slot), NaN where the cell is not proven; ``node_q`` is q_node per (block, slot). Per
    customer, ``inverse`` is 1/(α+T), ``offset`` turns ln t / step into the slot and
    ``block`` is the start of the customer's block (the last, all-zero block for the
    customers listed in ``direct``, whose x has no grid).
    """

    coef: FloatArray
    node_q: FloatArray
    slots: int
    log_horizons: list[float | FloatArray]
    inverse: FloatArray
    offset: FloatArray
    block: FloatArray
    direct: NDArray[np.intp]

    def evaluate(self, horizon: float | FloatArray, log_horizon: float | FloatArray,
                 lo: int, hi: int, buffers: tuple[FloatArray, FloatArray, FloatArray]
                 ) -> FloatArray:
        """Values for customers lo:hi at one horizon (NaN in unproven cells)."""
        q, v, tmp = buffers
        np.multiply(horizon, self.inverse[lo:hi], out=q)  # q = t / (α+T)
        np.add(q, 1.0, out=tmp)
        slot = np.rint(log_horizon - self.offset[lo:hi])
        np.maximum(slot, 0.0, out=slot)
        slot += self.block[lo:hi]
        index = slot.astype(np.intp)
        np.subtract(q, self.node_q.take(index, mode="clip"), out=v)
        v /= tmp  # (q − q_node)/(1 + q): to a few ulps relative, near z = 0 and z = 1
        coef = self.coef
        values: FloatArray = coef[-1].take(index, mode="clip")
        for k in range(coef.shape[0] - 2, -1, -1):
            values *= v
            values += coef[k].take(index, out=tmp, mode="clip")
        return values


def _grid_for(params: BGNBDParams, horizons: Sequence[float | FloatArray], x: FloatArray,
              big_t: FloatArray) -> _Grid | None:
    """The grid for these evaluations, or None when direct evaluation is as cheap or the
    grid's error bound does not apply (see the module docstring)."""
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    n = x.shape[0]
    if n == 0 or not horizons or abs(a - 1.0) < GRID_MIN_DISTANCE_A_1 or a + b - r < 0.0:
        return None
    low_h = min(float(np.min(h)) for h in horizons)
    high_h = max(float(np.max(h)) for h in horizons)
    if not (np.isfinite(low_h) and np.isfinite(high_h) and low_h >= 0.0 and high_h > 0.0):
        return None
    if not (np.isfinite(x).all() and np.isfinite(big_t).all()
            and float(x.min()) >= 0.0 and float(big_t.min()) >= 0.0):
        return None
    xs, group = factorise(x)
    counts = np.bincount(group, minlength=xs.shape[0])
    # The cell of a (horizon, customer) is rint(ln t/step − ln(α+T)/step), from exactly
    # these logs everywhere: subtraction and rounding are monotone, so the extreme cells
    # come from the extreme logs and every index stays inside its block.
    log_horizons = [_log_over_step(h) for h in horizons]
    log_age = np.log(alpha + big_t) / GRID_STEP
    lowest = float(np.rint(min(float(np.min(h)) for h in log_horizons) - float(log_age.max())))
    zero_cell = math.ceil(math.log(ZERO_CELL_Z / (1.0 - ZERO_CELL_Z)) / GRID_STEP + 0.5)
    first = max(float(zero_cell), lowest)
    offset = log_age + (first - 1.0)
    top = float(np.rint(max(float(np.max(h)) for h in log_horizons) - float(offset.min())))
    slots = int(max(top, 0.0)) + 1
    if slots > GRID_MAX_SLOTS:
        return None
    calls = slots * (2 * TAYLOR_ORDER + 5)  # ₂F₁ evaluations of one x's grid
    chosen = counts * len(horizons) >= GRID_WORTH * calls
    picked = np.flatnonzero(chosen)
    if picked.size == 0:
        return None
    q_node = np.concatenate([[0.0], np.exp((first + np.arange(slots - 1)) * GRID_STEP)])
    q_edge = np.concatenate([[0.0], np.exp((first - 0.5 + np.arange(slots)) * GRID_STEP)])
    coef = np.zeros((TAYLOR_ORDER + 1, picked.size + 1, slots))  # last block: no grid
    with np.errstate(all="ignore"):  # inf/NaN only mark cells the proof then rejects
        coef[:, :-1] = _grid_coefficients(params, xs[picked], q_node, q_edge)
    # in powers of v = (q − q_node)/(1 + q) = (z − z_node)/(1 − z_node)
    coef *= (1.0 / (1.0 + q_node)) ** np.arange(TAYLOR_ORDER + 1).reshape(-1, 1, 1)
    block_of = np.full(xs.shape[0], float(picked.size * slots))
    block_of[picked] = np.arange(picked.size, dtype=np.float64) * slots
    return _Grid(coef=coef.reshape(TAYLOR_ORDER + 1, -1),
                 node_q=np.tile(q_node, picked.size + 1), slots=slots,
                 log_horizons=log_horizons, inverse=1.0 / (alpha + big_t), offset=offset,
                 block=block_of[group], direct=np.flatnonzero(~chosen[group]))


def _log_over_step(horizon: float | FloatArray) -> float | FloatArray:
    """ln t / step; −inf for t = 0, which lands in the zero cell."""
    if isinstance(horizon, float):
        return math.log(horizon) / GRID_STEP if horizon > 0.0 else -math.inf
    with np.errstate(divide="ignore"):
        logs: FloatArray = np.log(horizon) / GRID_STEP
    return logs


def _grid_coefficients(params: BGNBDParams, xs: FloatArray, q_node: FloatArray,
                       q_edge: FloatArray) -> FloatArray:
    """(order + 1, len(xs), nodes) Taylor coefficients of E[Y | alive] in z − z_node at
    each node q_node (its cell runs between consecutive q_edge), NaN where the cell is
    not proven to ``GRID_TOLERANCE`` (see the module docstring)."""
    r, a, b = params.r, params.a, params.b
    order = TAYLOR_ORDER
    big_a, big_b = a + b - 1.0 - r, a - 1.0
    c = (a + b - 1.0 + xs).reshape(-1, 1)  # (x, 1)
    front = c / (a - 1.0)
    z_node, s_node = q_node / (1.0 + q_node), 1.0 / (1.0 + q_node)
    z_edge, s_edge = q_edge / (1.0 + q_edge), 1.0 / (1.0 + q_edge)
    k = np.arange(order + 2, dtype=np.float64)
    kk = k.reshape(-1, 1, 1)
    factorial = np.cumprod(np.concatenate([[1.0], k[1:]]))
    # hyp2f1 gives up (NaN), slowly, for some arguments (large C near z = 1): the other
    # orders and points are only asked for cells whose node value came out
    at_node = hyp2f1(big_a, big_b, c, z_node)
    usable = np.isfinite(at_node)
    at_edges = np.zeros((usable.shape[0], usable.shape[1] + 1), dtype=bool)
    at_edges[:, :-1] |= usable
    at_edges[:, 1:] |= usable
    # d^k/dz^k ₂F₁(A, B; C; z) = (A)_k (B)_k / (C)_k · ₂F₁(A+k, B+k; C+k; z)
    ratio = (poch(big_a, kk) * poch(big_b, kk) / poch(c[None], kk))  # (k, x, 1)
    f_node = _hyp2f1_where(usable, big_a + kk[1:order + 1], big_b + kk[1:order + 1],
                           c[None] + kk[1:order + 1], z_node)
    f_node = (ratio[:order + 1] / factorial[:order + 1].reshape(-1, 1, 1)
              * np.concatenate([at_node[None], f_node]))
    # (1 − z)^(a−1) = Σ_m (1−a)_m / m! · (1 − z_node)^(a−1−m) · u^m
    m = k[:order + 1].reshape(-1, 1)
    s_coef = poch(1.0 - a, m) / factorial[:order + 1].reshape(-1, 1) * s_node ** (a - 1.0 - m)
    tail = np.zeros_like(f_node)
    for n in range(order + 1):
        for i in range(n + 1):
            tail[n] += s_coef[n - i] * f_node[i]
    coef = -front * tail
    coef[0] = front * (1.0 - tail[0])
    near = np.flatnonzero(z_node <= 0.5)
    if near.size:
        coef[0][:, near] = front * _one_minus_tail(big_a, big_b, c, z_node[near])

    # Lagrange remainder: the (order+1)-th derivative of the tail is bounded on a cell by
    # Leibniz's rule over factors that are monotone in z, so by their values at the ends.
    f_edge = _hyp2f1_where(at_edges, big_a + kk, big_b + kk, c[None] + kk, z_edge)
    f_abs = np.abs(ratio) * np.abs(f_edge)
    f_max = np.maximum(f_abs[..., :-1], f_abs[..., 1:])  # (k, x, slots)

    def derivative_bound(n: int) -> FloatArray:
        total = np.zeros(f_max.shape[1:])
        for i in range(n + 1):
            e = a - 1.0 - (n - i)
            s_max = abs(float(poch(1.0 - a, n - i))) * np.maximum(s_edge[:-1] ** e,
                                                                   s_edge[1:] ** e)
            total += float(binom(n, i)) * s_max * f_max[i]
        return total

    half = np.maximum(z_node - z_edge[:-1], z_edge[1:] - z_node)
    bound = 2.0 * np.abs(front) * derivative_bound(order + 1) / factorial[order + 1]
    err = bound * half ** (order + 1)
    low = _horner(coef, z_edge[:-1] - z_node)
    with np.errstate(invalid="ignore"):
        proven = err <= GRID_TOLERANCE * (low - err)  # E[Y | alive] grows with z
        # the zero cell: E = 0 at z = 0, so its error bound M u^(order+1) is compared
        # with u times a lower bound of E/u = Σ_k≥1 coef_k u^(k−1) ± M u^order
        h = half[0]
        rest = sum(np.abs(coef[n][:, 0]) * h ** (n - 1) for n in range(2, order + 1))
        slope = coef[1][:, 0] - rest - bound[:, 0] * h ** order
        proven[:, 0] = bound[:, 0] * h ** order <= GRID_TOLERANCE * slope
    proven &= np.isfinite(coef).all(axis=0)
    # The bound trusts hyp2f1's derivatives. Where hyp2f1 is off (it can be, e.g. when
    # C − A − B − k is an integer, near z = 1) the polynomial misses eq. 10 itself, so
    # every cell is also checked against eq. 10 at its ends and halfway to them.
    quarter = np.concatenate([[q_edge[1] / 2.0], np.sqrt(q_node[1:] * q_edge[2:])])
    for q_check, known in ((q_edge[:-1], f_edge[0][:, :-1]), (q_edge[1:], f_edge[0][:, 1:]),
                           (np.sqrt(q_node * q_edge[:-1]), None), (quarter, None)):
        if known is None:
            known = _hyp2f1_where(usable, big_a, big_b, c, q_check / (1.0 + q_check))
        proven &= _matches_eq10(params, coef, c, q_node, q_check, known)
    return np.where(proven, coef, np.nan)


def _hyp2f1_where(mask: NDArray[np.bool_], a: ArrayLike, b: ArrayLike, c: ArrayLike,
                  z: ArrayLike) -> FloatArray:
    """₂F₁ at the broadcast arguments where ``mask`` (broadcast) holds, NaN elsewhere."""
    shape = np.broadcast_shapes(mask.shape, np.shape(a), np.shape(b), np.shape(c),
                                np.shape(z))
    where = np.broadcast_to(mask, shape)
    out = np.full(shape, np.nan)
    out[where] = hyp2f1(*(np.broadcast_to(v, shape)[where] for v in (a, b, c, z)))
    return out


def _horner(coef: FloatArray, u: FloatArray) -> FloatArray:
    value: FloatArray = coef[-1].copy()
    for n in range(coef.shape[0] - 2, -1, -1):
        value = value * u + coef[n]
    return value


def _matches_eq10(params: BGNBDParams, coef: FloatArray, c: FloatArray, q_node: FloatArray,
                  q_check: FloatArray, hyp: FloatArray) -> NDArray[np.bool_]:
    """Whether each cell's polynomial gives eq. 10 at q_check to 1e-13 relative (within
    the rounding of 1 − tail where eq. 10 itself cancels); ``hyp`` is ₂F₁(A, B; C; z)."""
    a, b, r = params.a, params.b, params.r
    big_a, big_b = a + b - 1.0 - r, a - 1.0
    z, s = q_check / (1.0 + q_check), 1.0 / (1.0 + q_check)
    value = _horner(coef, z - q_node / (1.0 + q_node))
    front = c / (a - 1.0)
    tail = s ** big_b * hyp
    exact = front * (1.0 - tail)
    near = np.flatnonzero(z <= 0.5)
    if near.size:
        exact[:, near] = front * _one_minus_tail(big_a, big_b, c, z[near])
    allowed = 1e-13 * np.abs(exact) + 4.0 * EPS * np.abs(front * tail)
    with np.errstate(invalid="ignore"):
        return np.asarray(np.abs(value - exact) <= allowed)


def _one_minus_tail(big_a: float, big_b: float, c: FloatArray, z: FloatArray) -> FloatArray:
    """1 − (1−z)^B ₂F₁(A, B; C; z) for z ≤ 1/2 without the cancellation of 1 − tail.

    (1−z)^B − 1 comes from ``expm1`` and ₂F₁ − 1 from its series, whose terms keep one
    sign (A ≥ −1, −1 < B), so the value is good to a few ulps even where tail ≈ 1.
    """
    term = np.ones((c.shape[0], z.shape[0]))
    series = np.zeros_like(term)
    for n in range(1, 2000):
        term = term * ((big_a + n - 1.0) * (big_b + n - 1.0) / n) / (c + n - 1.0) * z
        series += term
        if float(np.max(np.abs(term) - 1e-17 * np.abs(series))) <= 0.0:
            break
    power = np.expm1(big_b * np.log1p(-z))
    return np.asarray(-(power * (1.0 + series) + series), dtype=np.float64)
