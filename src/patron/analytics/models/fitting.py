"""Multi-start L-BFGS-B on log-parameters, shared by the model fits.

The likelihoods here are smooth but can be flat far from the optimum (a BG/NBD start with
the wrong dropout story wanders for a long time), so each fit is tried from a few
starting points. Starts are run in turn until two reach the same optimum, which in
practice means two runs, while a start stranded somewhere worse is outvoted by the rest.

Cost: every evaluation is a pass over the rows, and a start takes some 15-40 of them. On
a large customer base (per-second recency and age make nearly every customer a distinct
row) the starts are therefore run on a systematic sample of the rows (``sample``), to a
looser gradient tolerance (``ROUGH_GTOL``), which finds the optimum's basin and lands
within a few per cent of it. The sample's optimum is then polished on all rows by Newton
steps that use the sample's Hessian (central differences of the analytic gradient, cheap
on the sample): the sample's curvature is the full data's to a few per cent, so each
step gains one to two digits and some five evaluations on all rows reach the stopping
rule L-BFGS-B uses, a largest gradient component <= 1e-9. Near the optimum the objective
changes by less than its own rounding, so there a step also counts when the value stays
within 1e-12 and the gradient shrinks. Should a step not improve or leave the box,
L-BFGS-B takes over from the best point reached. The answer is the full data's
maximum-likelihood estimate, to the optimiser's tolerance, whatever the sample; only the
work shrinks.

An objective over many rows is summed piece by piece (``PIECE_ROWS``, ``sum_pieces``):
the dozen temporaries of a piece stay in the core's cache where those of a million rows
go to memory and back (and were page-faulted in afresh by the first evaluation), and the
pieces are shared among a thread per core, NumPy letting go of the GIL for their loops.
The pieces are fixed by the row count and summed in order, so a fit gives the same
numbers whatever the threads do.

BLAS runs single-threaded while fitting, and weighted sums over rows use ``einsum``, not
``@``: every BLAS call of a fit is tiny (L-BFGS-B's algebra on four parameters) or a
vector reduction, and OpenBLAS wakes its threads for each, which then spin: on two busy
cores that cost ten times the CPU of the work itself (0.7 ms against 0.05 ms per L-BFGS-B
iteration; 8 ms against 0.05 ms per weighted sum over 100,000 rows).
"""

from __future__ import annotations

import concurrent.futures
import os
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol, TypeVar

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import OptimizeResult, minimize

Objective = Callable[[NDArray[np.float64]], tuple[float, NDArray[np.float64]]]

#: Rows the starts are run on when there are more than twice as many (see the docstring).
SAMPLE_ROWS = 20_000

GTOL = 1e-9  # largest gradient component at the optimum (L-BFGS-B's pgtol)
_OPTIONS = {"maxiter": 2000, "ftol": 1e-15, "gtol": GTOL}
#: The starts on a sample only need the basin and the sample's optimum to a few digits
#: (the polish on all rows does the rest): stopping at 1e-6 halves their evaluations.
ROUGH_GTOL = 1e-6
_ROUGH_OPTIONS = {**_OPTIONS, "gtol": ROUGH_GTOL}
NEWTON_STEPS = 12  # polish steps before L-BFGS-B takes over
HESSIAN_STEP = 1e-4  # central-difference step in log-parameters
#: Relative rounding of an objective that sums a million rows. Near the optimum a Newton
#: step changes the value by less than that, so within it a step counts as progress when
#: the gradient shrinks (without this, a step that is a few ulps "worse" handed the
#: polish to L-BFGS-B, which then spent 15 evaluations on rounding noise).
ROUNDING = 1e-12


#: Rows per piece of an objective's sum: some fifteen float64 temporaries of this many
#: rows (about 2 MB) stay in a core's L2 cache.
PIECE_ROWS = 16_384
#: Fewer pieces than this are summed in the calling thread (a pool's hand-over costs more).
_THREADED_PIECES = 4

_P = TypeVar("_P")
_pool: concurrent.futures.ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def pieces(n: int, size: int = PIECE_ROWS) -> list[slice]:
    """``n`` rows as consecutive slices of at most ``size``."""
    return [slice(start, min(start + size, n)) for start in range(0, n, size)] or [slice(0, 0)]


def sum_pieces(term: Callable[[_P], tuple[float, NDArray[np.float64]]],
               parts: Sequence[_P]) -> tuple[float, NDArray[np.float64]]:
    """Σ of ``term(part)`` (a value and a gradient) over ``parts``, in their order, the
    parts shared among a thread per core when there are enough of them."""
    if len(parts) < _THREADED_PIECES:
        done = [term(part) for part in parts]
    else:
        done = list(_threads().map(term, parts))
    value = 0.0
    grad = np.zeros_like(done[0][1])
    for v, g in done:
        value += v
        grad += g
    return value, grad


class PieceRows(Protocol):
    """Rows a model's objective sums over: per-row x and weight, the distinct x, and a
    slice of the rows that keeps ``xs`` whole."""

    @property
    def x(self) -> NDArray[np.float64]: ...

    @property
    def w(self) -> NDArray[np.float64]: ...

    @property
    def xs(self) -> NDArray[np.float64]: ...

    def part(self, rows: slice) -> Any: ...


def rows_objective(rows: PieceRows, per_x: Callable[..., Any],
                   terms: Callable[..., tuple[NDArray[np.float64], NDArray[np.float64] | None]]
                   ) -> Objective:
    """A fit's objective: the mean negative log-likelihood per customer and its gradient,
    in log-parameters ``u``, summed over ``rows`` cut in pieces (``sum_pieces``).

    ``per_x(θ, xs, grad=True)`` makes once per evaluation the model's terms of x alone;
    ``terms(θ, part, grad=True, per_x=...)`` gives a piece's per-row log-likelihood and its
    gradient w.r.t. θ.
    """
    parts = [rows.part(rows_of) for rows_of in pieces(len(rows.x))]
    total = float(rows.w.sum())

    def objective(u: NDArray[np.float64]) -> tuple[float, NDArray[np.float64]]:
        exp_u = np.exp(u)
        theta = tuple(float(v) for v in exp_u)
        shared = per_x(theta, rows.xs, grad=True)

        def term(part: Any) -> tuple[float, NDArray[np.float64]]:
            ll, g = terms(theta, part, grad=True, per_x=shared)
            assert g is not None
            return float(weighted_sum(ll, part.w)), weighted_sum(g, part.w)

        ll, g = sum_pieces(term, parts)
        return -ll / total, -g * exp_u / total

    return objective


def _threads() -> concurrent.futures.ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") \
                else (os.cpu_count() or 1)
            _pool = concurrent.futures.ThreadPoolExecutor(max(1, workers), "patron-fit")
        return _pool


def weighted_sum(values: NDArray[Any], weight: NDArray[Any]) -> NDArray[np.float64]:
    """Σ_i values[..., i] · weight[i] without BLAS (see the module docstring)."""
    return np.asarray(np.einsum("...i,i->...", values, weight), dtype=np.float64)


def factorise(values: NDArray[Any]) -> tuple[NDArray[np.float64], NDArray[np.intp]]:
    """Distinct values (ascending, as floats) and each value's index into them.

    The model terms that depend on frequency alone are computed once per distinct value.
    Frequencies are small non-negative integers, for which a bincount replaces the sort
    of ``np.unique`` (a few milliseconds instead of 30-70 on a million rows).
    """
    flat = np.asarray(values).reshape(-1)
    whole = flat.astype(np.int64)
    if (flat.size and np.array_equal(whole, flat) and int(whole.min()) >= 0
            and int(whole.max()) < 1 << 24):
        present = np.flatnonzero(np.bincount(whole))
        lookup = np.zeros(int(present[-1]) + 1, dtype=np.intp)
        lookup[present] = np.arange(present.shape[0], dtype=np.intp)
        return present.astype(np.float64), lookup[whole]
    distinct, index = np.unique(flat, return_inverse=True)
    return distinct.astype(np.float64), index.reshape(-1).astype(np.intp)


def sample(n: int, rows: int = SAMPLE_ROWS) -> slice | None:
    """Every k-th row, about ``rows`` of ``n``; None when ``n`` is small enough to use all.

    Rows sorted by their statistics (as ``summary.compress`` leaves them) make this a
    stratified sample.
    """
    if rows <= 0 or n <= 2 * rows:
        return None
    step = n // rows
    return slice(step // 2, None, step)


def _run(objective: Objective, u0: NDArray[np.float64], bounds: tuple[float, float], *,
         rough: bool = False) -> OptimizeResult:
    return minimize(objective, u0, jac=True, method="L-BFGS-B",
                    bounds=[bounds] * u0.shape[0],
                    options=_ROUGH_OPTIONS if rough else _OPTIONS)


def minimise_from_starts(objective: Objective, starts: Iterable[ArrayLike], *,
                         bounds: tuple[float, float],
                         rough: Objective | None = None) -> OptimizeResult | None:
    """Best L-BFGS-B result over ``starts`` (given as log-parameters); None if all fail.

    ``objective`` returns the value and its gradient. Two results agree when their values
    differ by at most 1e-9 relative (the objectives are per-customer means, of order 1-10).
    With ``rough`` (the same objective on a sample of the rows) the starts are run on it
    and the best is polished on ``objective``; should that polish fail, every start is
    run on ``objective`` after all.
    """
    from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

    with threadpool_limits(limits=1, user_api="blas"):  # see the module docstring
        return _minimise(objective, starts, bounds=bounds, rough=rough)


def _minimise(objective: Objective, starts: Iterable[ArrayLike], *,
              bounds: tuple[float, float], rough: Objective | None) -> OptimizeResult | None:
    points = [np.clip(np.asarray(s, dtype=np.float64), *bounds) for s in starts]
    if rough is not None:
        found = _best_of(rough, points, bounds, rough=True)
        if found is not None:
            polished = polish(objective, rough, np.asarray(found.x, dtype=np.float64),
                              bounds=bounds)
            if np.isfinite(polished.fun):
                return polished
    return _best_of(objective, points, bounds)


def polish(objective: Objective, rough: Objective, u0: NDArray[np.float64], *,
           bounds: tuple[float, float]) -> OptimizeResult:
    """The optimum of ``objective`` near ``u0``, the optimum of ``rough``.

    Newton steps with ``rough``'s Hessian at ``u0`` (see the module docstring); L-BFGS-B
    from the best point reached when a step fails to improve or leaves ``bounds``.
    """
    lo, hi = bounds
    u = u0
    f, g = objective(u)
    calls = 1
    inverse = _inverse_hessian(rough, u0)
    if inverse is not None and np.isfinite(f):
        for _ in range(NEWTON_STEPS):
            if float(np.max(np.abs(g))) <= GTOL:
                return OptimizeResult(x=u, fun=f, jac=g, nfev=calls, success=True, status=0,
                                      message="Newton steps: gradient <= gtol")
            step = u - inverse @ g
            if not (np.all(step > lo) and np.all(step < hi)):
                break
            f_new, g_new = objective(step)
            calls += 1
            if not (np.isfinite(f_new) and (
                    f_new <= f + 1e-15 * abs(f)
                    or (f_new <= f + ROUNDING * abs(f)
                        and float(np.max(np.abs(g_new))) < float(np.max(np.abs(g)))))):
                break
            u, f, g = step, f_new, g_new
    return _run(objective, u, bounds)


def _inverse_hessian(rough: Objective, u: NDArray[np.float64]) -> NDArray[np.float64] | None:
    """Inverse of the central-difference Hessian of ``rough`` at ``u``; None unless it is
    positive definite (then ``u`` is no proper minimum of the sample)."""
    k = u.shape[0]
    hessian = np.empty((k, k))
    for i in range(k):
        e = np.zeros(k)
        e[i] = HESSIAN_STEP
        hessian[i] = (rough(u + e)[1] - rough(u - e)[1]) / (2.0 * HESSIAN_STEP)
    hessian = (hessian + hessian.T) / 2.0
    if not np.all(np.isfinite(hessian)):
        return None
    try:
        np.linalg.cholesky(hessian)
    except np.linalg.LinAlgError:
        return None
    return np.asarray(np.linalg.inv(hessian), dtype=np.float64)


def _best_of(objective: Objective, starts: list[NDArray[np.float64]],
             bounds: tuple[float, float], *, rough: bool = False) -> OptimizeResult | None:
    best: OptimizeResult | None = None
    for u0 in starts:
        res = _run(objective, u0, bounds, rough=rough)
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
