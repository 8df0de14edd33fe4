"""Draw customer bases from known BG/NBD and Gamma-Gamma parameters.

Used by the parameter-recovery tests and the benchmark: fitting data whose true
parameters are known is the direct check that the likelihoods and optimiser are right.

BG/NBD draws are exact, not stepped through time: with λ ~ Gamma(r, α) and
p ~ Beta(a, b), the number of repeat purchases before dropout is K ~ Geometric(p) (dropout
happens right after a repeat purchase, so K >= 1), the number of Poisson events in (0, T]
is N ~ Poisson(λT), and the customer shows x = min(N, K) of them. Given N = n events in
(0, T], their times are n uniform order statistics, so the x-th lies at T · Beta(x, n−x+1).
Spend: ν ~ Gamma(q, rate v) per customer, and the mean of x Gamma(p, rate ν) values is
Gamma(px, rate xν).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from patron.analytics.models.bgnbd import BGNBDParams
from patron.analytics.models.gamma_gamma import GammaGammaParams


def simulate_bgnbd(params: BGNBDParams, age: ArrayLike, rng: np.random.Generator, *,
                   ticks_per_unit: int | None = None
                   ) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """(frequency, recency) for customers observed for ``age`` periods each.

    ``ticks_per_unit`` records purchase times on a grid, as dates do (7 for day-resolution
    data in weeks): the first purchase falls at a uniform moment of its day and every
    purchase is recorded on the day it falls in, so recency is a difference of day
    numbers, unbiased on average. ``age`` should then be on the grid too.
    """
    big_t = np.asarray(age, dtype=np.float64).reshape(-1)
    n_customers = big_t.shape[0]
    lam = rng.gamma(params.r, 1.0 / params.alpha, n_customers)
    p = rng.beta(params.a, params.b, n_customers)
    k = rng.geometric(np.clip(p, 1e-12, 1.0))
    n = rng.poisson(lam * big_t)
    x = np.minimum(n, k).astype(np.int64)
    pos = x > 0
    recency = np.zeros(n_customers)
    recency[pos] = big_t[pos] * rng.beta(x[pos], n[pos] - x[pos] + 1)
    if ticks_per_unit is not None:
        moment = rng.uniform(0.0, 1.0, n_customers)
        recency = np.where(pos, np.floor(moment + recency * ticks_per_unit), 0.0)
        recency = np.minimum(recency / ticks_per_unit, big_t)
    return x, recency


def simulate_spend(params: GammaGammaParams, frequency: ArrayLike,
                   rng: np.random.Generator) -> NDArray[np.float64]:
    """Mean repeat-transaction value per customer (0 where frequency is 0)."""
    x = np.asarray(frequency, dtype=np.float64).reshape(-1)
    nu = rng.gamma(params.q, 1.0 / params.v, x.shape[0])
    pos = x > 0
    monetary = np.zeros_like(x)
    monetary[pos] = rng.gamma(params.p * x[pos], 1.0 / (x[pos] * nu[pos]))
    return monetary
