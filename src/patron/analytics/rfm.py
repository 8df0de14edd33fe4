"""RFM: recency, frequency and monetary quintile scores and the named segments.

Design overview
---------------
Scores are computed among the members who bought at least once by the snapshot day:

* **R** from recency, days since the last purchase (fewer is better);
* **F** from frequency, repeat purchases (purchase days − 1: same-day sales are one);
* **M** from monetary, the mean net value of a purchase.

Each is a quintile score 1-5, 5 the best fifth: ``score = 1 + ⌊5 · below / n⌋`` where
``below`` counts members with a strictly worse value. Tied values always get the same
score (the score of the lowest rank among them), so a refresh of the same data gives the
same scores whatever the row order, and the 40 % of members with one purchase all get F = 1
rather than being cut at arbitrary quintile edges. The top of a tied mass can therefore
skip scores (with 60 % at F = 1, the next buyers start at F = 4).

Segments come from R and the combined **FM** score, the mean of F and M rounded half up
((F + M + 1) // 2), on the 5 × 5 grid widely used for RFM segment maps (the R × F/M
"segment heat map" of the RFM literature and tools; Putler's eleven named groups), with
"lost" carved out of the hibernating corner so each cell has exactly one segment::

              FM=1            FM=2              FM=3              FM=4       FM=5
    R=5   new             potential_loyalist potential_loyalist champions  champions
    R=4   promising       potential_loyalist potential_loyalist loyal      loyal
    R=3   about_to_sleep  about_to_sleep     needs_attention    loyal      loyal
    R=2   hibernating     hibernating        at_risk            at_risk    cant_lose
    R=1   lost            lost               at_risk            at_risk    cant_lose

Reading: champions bought recently, often and for much; loyal buy often but not quite as
recently; potential loyalists are recent with middling frequency; new and promising are
recent one-or-two-time buyers; needs attention and about to sleep are slipping from the
middle; at risk and can't lose bought often and for much but not for a long while (can't
lose: the best of them); hibernating and lost are long-gone low-value buyers.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

SEGMENT_GRID: tuple[tuple[str, ...], ...] = (
    # FM = 1             2                     3                     4            5
    ("lost", "lost", "at_risk", "at_risk", "cant_lose"),  # R = 1
    ("hibernating", "hibernating", "at_risk", "at_risk", "cant_lose"),  # R = 2
    ("about_to_sleep", "about_to_sleep", "needs_attention", "loyal", "loyal"),  # R = 3
    ("promising", "potential_loyalist", "potential_loyalist", "loyal", "loyal"),  # R = 4
    ("new", "potential_loyalist", "potential_loyalist", "champions", "champions"),  # R = 5
)
SEGMENTS: tuple[str, ...] = ("champions", "loyal", "potential_loyalist", "new", "promising",
                             "needs_attention", "about_to_sleep", "at_risk", "cant_lose",
                             "hibernating", "lost")


def quintile_scores(values: ArrayLike, *, higher_is_better: bool = True) -> NDArray[np.int8]:
    """Scores 1-5 by quintile of rank; ties share the score of their lowest rank."""
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    if not higher_is_better:
        v = -v
    n = v.shape[0]
    if n == 0:
        return np.zeros(0, dtype=np.int8)
    below = np.searchsorted(np.sort(v), v, side="left")  # strictly worse values
    return (1 + (5 * below) // n).astype(np.int8)


def fm_scores(f: ArrayLike, m: ArrayLike) -> NDArray[np.int8]:
    """The combined frequency/monetary score: the mean of F and M, halves rounded up."""
    f_arr = np.asarray(f, dtype=np.int64)
    m_arr = np.asarray(m, dtype=np.int64)
    return ((f_arr + m_arr + 1) // 2).astype(np.int8)


_GRID = np.array(SEGMENT_GRID, dtype=object)


def segments(r: ArrayLike, fm: ArrayLike) -> NDArray[np.object_]:
    """The segment name of each (R, FM) pair (scores 1-5)."""
    r_arr = np.asarray(r, dtype=np.int64)
    fm_arr = np.asarray(fm, dtype=np.int64)
    if ((r_arr < 1) | (r_arr > 5) | (fm_arr < 1) | (fm_arr > 5)).any():
        raise ValueError("RFM scores run from 1 to 5")
    return np.asarray(_GRID[r_arr - 1, fm_arr - 1], dtype=object)


def score(recency_days: ArrayLike, frequency: ArrayLike, monetary: ArrayLike
          ) -> tuple[NDArray[np.int8], NDArray[np.int8], NDArray[np.int8], NDArray[np.int8],
                     NDArray[np.object_]]:
    """(R, F, M, FM, segment) for buyers' recency, repeat purchases and mean purchase value."""
    r = quintile_scores(recency_days, higher_is_better=False)
    f = quintile_scores(frequency)
    m = quintile_scores(monetary)
    fm = fm_scores(f, m)
    return r, f, m, fm, segments(r, fm)
