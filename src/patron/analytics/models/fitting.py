"""Multi-start L-BFGS-B on log-parameters, shared by the model fits.

The likelihoods here are smooth but can be flat far from the optimum (a BG/NBD start with
the wrong dropout story wanders for a long time), so each fit is tried from a few
starting points. Starts are run in turn until two reach the same optimum, which in
practice means two runs, while a start stranded somewhere worse is outvoted by the rest.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import OptimizeResult, minimize

Objective = Callable[[NDArray[np.float64]], tuple[float, NDArray[np.float64]]]


def minimise_from_starts(objective: Objective, starts: Iterable[ArrayLike], *,
                         bounds: tuple[float, float]) -> OptimizeResult | None:
    """Best L-BFGS-B result over ``starts`` (given as log-parameters); None if all fail.

    ``objective`` returns the value and its gradient. Two results agree when their values
    differ by at most 1e-9 relative (the objectives are per-customer means, of order 1-10).
    """
    best: OptimizeResult | None = None
    for start in starts:
        u0 = np.clip(np.asarray(start, dtype=np.float64), *bounds)
        res = minimize(objective, u0, jac=True, method="L-BFGS-B",
                       bounds=[bounds] * u0.shape[0],
                       options={"maxiter": 2000, "ftol": 1e-15, "gtol": 1e-9})
        if not np.isfinite(res.fun):
            continue
        if best is not None and abs(res.fun - best.fun) <= 1e-9 * max(1.0, abs(best.fun)):
            return best if best.fun <= res.fun else res
        if best is None or res.fun < best.fun:
            best = res
    return best


def names_on_bounds(values: dict[str, float], bounds: tuple[float, float]) -> list[str]:
    """Parameters the optimiser left at an edge of its (log) box: the fit did not settle.

    This happens when the data cannot pin the model down (a handful of customers, or
    nobody who ever lapses), and the numbers then mean nothing.
    """
    lo, hi = bounds
    return [name for name, value in values.items()
            if not lo + 1e-6 < float(np.log(value)) < hi - 1e-6]
