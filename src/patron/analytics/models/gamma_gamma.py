"""Gamma-Gamma spend model: what a customer's transactions are worth on average.

Design overview
---------------
Fader, Hardie & Lee, "RFM and CLV: Using Iso-Value Curves for Customer Base Analysis",
Journal of Marketing Research 42(4), 2005, after Colombo & Jiang (1999). A customer's
transaction values are i.i.d. Gamma(p, ν); across customers ν ~ Gamma(q, γ) (``v`` here,
as in lifetimes). Spend is assumed independent of the purchase process, which is why this
model sits beside BG/NBD rather than inside it.

Only customers with at least one repeat transaction inform it, through x and their mean
repeat value m (the summary's ``monetary``). The mean of x Gamma(p, ν) values is
Gamma(px, xν), and integrating ν out gives the likelihood of one customer

    ln L = ln Γ(px+q) − ln Γ(px) − ln Γ(q) + q ln v + (px−1) ln m + px ln x
           − (px+q) ln(v + x m)

with partial derivatives

    ∂/∂p = x [ψ(px+q) − ψ(px) + ln(x m / (v + x m))]
    ∂/∂q = ψ(px+q) − ψ(q) + ln(v / (v + x m))
    ∂/∂v = q/v − (px+q)/(v + x m)

The weighted sum is maximised with L-BFGS-B on log-parameters from several starts
(``fitting``). The posterior mean spend shrinks a customer's observed mean towards the
population mean p v/(q−1) (finite only for q > 1), the more so the fewer transactions
they have:

    E[M | x, m] = (q−1)/(px+q−1) · p v/(q−1) + px/(px+q−1) · m = p (v + x m)/(px + q − 1)

Values are in the currency unit of the input amounts.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import digamma, gammaln

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
from patron.core.errors import ValidationFailed

FloatArray = NDArray[np.float64]
LOG_BOUNDS = (float(np.log(1e-6)), float(np.log(1e8)))


@dataclass(frozen=True)
class GammaGammaParams:
    """Fitted Gamma-Gamma parameters; ``n_customers`` counts the repeat buyers used."""

    p: float
    q: float
    v: float
    loglik: float
    n_customers: int

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)

    def unsettled(self) -> list[str]:
        """Parameters stuck at the edge of the search box (empty for a proper fit)."""
        return names_on_bounds({"p": self.p, "q": self.q, "v": self.v}, LOG_BOUNDS)

    @property
    def mean_spend(self) -> float:
        """Population mean transaction value p v / (q − 1); infinite when q <= 1."""
        return self.p * self.v / (self.q - 1.0) if self.q > 1.0 else float("inf")


@dataclass(frozen=True)
class _Rows:
    """Repeat buyers prepared for repeated likelihood evaluations.

    Only customers with x > 0 and a positive mean value count (refunds can net a mean to
    0). Special functions of px are evaluated once per distinct x (``xs``, indexed back
    with ``x_index``); ln m and ln(x m) do not depend on the parameters.
    """

    x: FloatArray
    m: FloatArray
    w: FloatArray
    xs: FloatArray
    x_index: NDArray[np.intp]
    ln_m: FloatArray
    ln_xm: FloatArray

    @classmethod
    def of(cls, frequency: ArrayLike, monetary: ArrayLike, weight: ArrayLike | None) -> _Rows:
        x = np.asarray(frequency, dtype=np.float64).reshape(-1)
        m = np.asarray(monetary, dtype=np.float64).reshape(-1)
        w = (np.ones_like(x) if weight is None
             else np.asarray(weight, dtype=np.float64).reshape(-1))
        if not (m.shape == x.shape and w.shape == x.shape):
            raise ValidationFailed("frequency, monetary and weight must have equal length",
                                   "monetary")
        keep = (x > 0) & (m > 0) & np.isfinite(m)
        x, m, w = x[keep], m[keep], w[keep]
        xs, index = factorise(x)
        return cls(x=x, m=m, w=w, xs=xs, x_index=index, ln_m=np.log(m),
                   ln_xm=np.log(x * m))

    def part(self, rows: slice | NDArray[np.intp]) -> _Rows:
        """Some of the rows (a sample for the starts); ``xs`` stays whole."""
        return _Rows(x=self.x[rows], m=self.m[rows], w=self.w[rows], xs=self.xs,
                     x_index=self.x_index[rows], ln_m=self.ln_m[rows], ln_xm=self.ln_xm[rows])


@dataclass(frozen=True)
class _PerX:
    """The likelihood's terms of x alone at one θ, per distinct x (``_Rows.xs``)."""

    ll: FloatArray  # ln Γ(px+q) − ln Γ(px) − ln Γ(q) + px ln x
    d_p: FloatArray | None  # ψ(px+q) − ψ(px) (None without a gradient)
    d_q: FloatArray | None  # ψ(px+q) − ψ(q)

    @classmethod
    def of(cls, theta: tuple[float, float, float], xs: FloatArray, *, grad: bool) -> _PerX:
        p, q, _ = theta
        pxs = p * xs
        ll = gammaln(pxs + q) - gammaln(pxs) - gammaln(q) + pxs * np.log(xs)
        if not grad:
            return cls(ll=ll, d_p=None, d_q=None)
        psi_pq = digamma(pxs + q)
        return cls(ll=ll, d_p=psi_pq - digamma(pxs), d_q=psi_pq - digamma(q))


def _loglik_terms(theta: tuple[float, float, float], rows: _Rows, *,
                  grad: bool, per_x: _PerX | None = None) -> tuple[FloatArray, FloatArray | None]:
    """Per-row log-likelihood and, if asked, its (3, n) gradient w.r.t. (p, q, v); the
    terms of x alone come per distinct x (``_PerX``, made once by a caller summing piece
    by piece)."""
    p, q, v = theta
    if per_x is None:
        per_x = _PerX.of(theta, rows.xs, grad=grad)
    x, ix = rows.x, rows.x_index
    px = p * x
    ln_vxm = np.log(v + x * rows.m)
    ll = per_x.ll[ix] + q * np.log(v) + (px - 1.0) * rows.ln_m - (px + q) * ln_vxm
    if not grad:
        return ll, None
    assert per_x.d_p is not None
    assert per_x.d_q is not None
    g = np.empty((3, x.shape[0]))
    g[0] = x * (per_x.d_p[ix] + rows.ln_xm - ln_vxm)
    g[1] = per_x.d_q[ix] + np.log(v) - ln_vxm
    g[2] = q / v - (px + q) / (v + x * rows.m)
    return ll, g


def log_likelihood(params: GammaGammaParams | ArrayLike, frequency: ArrayLike,
                   monetary: ArrayLike, weight: ArrayLike | None = None) -> float:
    """Weighted Gamma-Gamma log-likelihood over the repeat buyers among the rows given."""
    rows = _Rows.of(frequency, monetary, weight)
    ll, _ = _loglik_terms(_theta(params), rows, grad=False)
    return float(weighted_sum(ll, rows.w))


def log_likelihood_gradient(params: GammaGammaParams | ArrayLike, frequency: ArrayLike,
                            monetary: ArrayLike, weight: ArrayLike | None = None) -> FloatArray:
    """Analytic gradient of :func:`log_likelihood` w.r.t. (p, q, v)."""
    rows = _Rows.of(frequency, monetary, weight)
    _, g = _loglik_terms(_theta(params), rows, grad=True)
    assert g is not None
    return weighted_sum(g, rows.w)


def _theta(params: GammaGammaParams | ArrayLike) -> tuple[float, float, float]:
    if isinstance(params, GammaGammaParams):
        return params.p, params.q, params.v
    p, q, v = (float(t) for t in np.asarray(params, dtype=np.float64).reshape(3))
    return p, q, v


def _objective(rows: _Rows) -> Objective:
    """Mean negative log-likelihood per customer and its gradient, in log-parameters,
    summed piece by piece (``fitting.rows_objective``)."""
    return rows_objective(rows, _PerX.of, _loglik_terms)


def fit(frequency: ArrayLike, monetary: ArrayLike, weight: ArrayLike | None = None, *,
        start: tuple[float, float, float] | None = None,
        sample_rows: int = SAMPLE_ROWS) -> GammaGammaParams:
    """Maximum-likelihood (p, q, v) from per-customer x and mean repeat value.

    Customers with x = 0 (or a non-positive mean, e.g. fully refunded) carry no
    information about spend and are skipped; ``n_customers`` says how many were used.
    With more than 2 × ``sample_rows`` of them the starts are tried on a systematic sample
    (ordered by x and ln m, ``_stratified_order``) and the best is polished on all
    (``fitting``; 0: all rows always).
    """
    rows = _Rows.of(frequency, monetary, weight)
    total = float(rows.w.sum())
    if total <= 0:
        raise ValidationFailed("no repeat buyers with a positive spend: the spend model "
                               "cannot be fitted", "data")

    # Starts: shapes from "spend varies little within a customer" (large p) to "a lot"
    # (small p), each scaled so the implied population mean p v/(q−1) is the observed one.
    mean = float(weighted_sum(rows.m, rows.w)) / total
    starts = [start] if start is not None else [
        (p0, q0, mean * (q0 - 1.0) / p0) for p0, q0 in ((1.0, 2.0), (5.0, 4.0), (0.5, 1.5),
                                                         (20.0, 10.0))]
    some = sample(len(rows.x), sample_rows) if start is None else None
    rough = None
    if some is not None:
        rough = _objective(rows.part(_stratified_order(rows)[some]))
    best = minimise_from_starts(_objective(rows), [np.log(s) for s in starts],
                                bounds=LOG_BOUNDS, rough=rough)
    if best is None:
        raise ValidationFailed("the Gamma-Gamma fit did not converge", "data")
    p, q, v = (float(t) for t in np.exp(best.x))
    return GammaGammaParams(p=p, q=q, v=v, loglik=-float(best.fun) * total,
                            n_customers=round(total))


def _stratified_order(rows: _Rows, bins: int = 256) -> NDArray[np.intp]:
    """Rows ordered by x, then by m in ``bins`` equal steps of ln m, for a stratified sample.

    The sample's Hessian steers the polish on all rows, so it must see the spread of m
    within each x (a sample stratified by x alone took 20 evaluations on all rows to
    polish instead of 4). A radix sort of one small key costs a fraction of the lexsort
    on (x, m) it replaces.
    """
    low, high = float(rows.ln_m.min()), float(rows.ln_m.max())
    step = (high - low) / bins if high > low else 1.0
    level = np.minimum(((rows.ln_m - low) / step).astype(np.intp), bins - 1)
    key = rows.x_index * bins + level
    if int(key.max()) < 1 << 16:
        key = key.astype(np.uint16)
    return np.argsort(key, kind="stable").astype(np.intp)


def conditional_expected_spend(params: GammaGammaParams, frequency: ArrayLike,
                               monetary: ArrayLike) -> FloatArray:
    """E[mean transaction value | x, m] per customer; the population mean when x = 0."""
    x = np.asarray(frequency, dtype=np.float64)
    m = np.where(x > 0, np.asarray(monetary, dtype=np.float64), 0.0)
    p, q, v = params.p, params.q, params.v
    return np.asarray(p * (v + x * m) / (p * x + q - 1.0), dtype=np.float64)
