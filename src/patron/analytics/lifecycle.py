"""Lifecycle stage and expected next purchase of each member, from dated purchase facts.

Design overview
---------------
The stage answers "where is this customer in their relationship with the shop?" with one
of six words, from three facts: tenure (days since the first purchase), the spend trend
(net spend in the last 90 days against the 90 days before) and whether they are still
around (BG/NBD P(alive) and days since the last purchase). Rules are tried in this order;
the first that holds decides (defaults in :class:`Thresholds`):

1. **lost**: no purchase for more than 365 days, or P(alive) < 0.10;
2. **lapsed**: no purchase for more than 180 days, or P(alive) < 0.40;
3. **new**: first purchase less than 90 days ago;
4. **declining**: spend in the last 90 days below half of the 90 days before;
5. **growing**: spend in the last 90 days at least 1.25 × the 90 days before (and not
   zero), or, in the first year, not below it;
6. **mature**: everyone else, steady buyers.

Recency rules come with P(alive) because BG/NBD cannot see a one-time buyer leave (it lets
customers drop out only after a repeat purchase, so P(alive) is 1 for them); without a
fitted model the recency rules alone decide. Members who never bought are **new** for 90
days after joining and **lapsed** after that.

Expected next purchase: for a member with repeat purchases, the last purchase day plus
their mean interval between purchase days (t_x / x, rounded to whole days); it can lie in
the past, which is itself the news ("overdue"). For a one-time buyer, the snapshot day plus
the expected waiting time 1 / rate, the rate being BG/NBD's expected purchases in the next
365 days / 365; none when that wait exceeds three years or there is no model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

STAGES: tuple[str, ...] = ("new", "growing", "mature", "declining", "lapsed", "lost")
MAX_WAIT_DAYS = 3 * 365


@dataclass(frozen=True)
class Thresholds:
    """The lifecycle rules' numbers (see the module docstring)."""

    new_days: int = 90
    lapsed_days: int = 180
    lost_days: int = 365
    lapsed_p_alive: float = 0.40
    lost_p_alive: float = 0.10
    declining_ratio: float = 0.5
    growing_ratio: float = 1.25
    young_days: int = 365  # "in the first year": growing unless the trend is down


def stages(*, bought: ArrayLike, tenure_days: ArrayLike, recency_days: ArrayLike,
           joined_days: ArrayLike, net_90: ArrayLike, net_prev_90: ArrayLike,
           p_alive: ArrayLike, thresholds: Thresholds = Thresholds()) -> NDArray[np.object_]:
    """The stage of every member.

    ``bought`` says who made a purchase; ``tenure_days`` and ``recency_days`` count from
    their first and last purchase (ignored for others), ``joined_days`` from sign-up.
    ``p_alive`` is NaN where unknown (no model, or no purchase).
    """
    th = thresholds
    b = np.asarray(bought, dtype=bool)
    tenure = np.asarray(tenure_days, dtype=np.float64)
    recency = np.asarray(recency_days, dtype=np.float64)
    joined = np.asarray(joined_days, dtype=np.float64)
    last = np.asarray(net_90, dtype=np.float64)
    prev = np.asarray(net_prev_90, dtype=np.float64)
    alive = np.asarray(p_alive, dtype=np.float64)
    known = ~np.isnan(alive)
    with np.errstate(invalid="ignore"):
        lost = (recency > th.lost_days) | (known & (alive < th.lost_p_alive))
        lapsed = (recency > th.lapsed_days) | (known & (alive < th.lapsed_p_alive))
    new = tenure < th.new_days
    declining = (prev > 0) & (last < th.declining_ratio * prev)
    growing = ((last > 0) & (last >= th.growing_ratio * prev)) | (
        (tenure < th.young_days) & (last >= prev) & (last > 0))
    buyer_stage = np.select([lost, lapsed, new, declining, growing],
                            ["lost", "lapsed", "new", "declining", "growing"], "mature")
    never = np.where(joined < th.new_days, "new", "lapsed")
    return np.asarray(np.where(b, buyer_stage, never), dtype=object)


def next_purchase_offsets(*, frequency: ArrayLike, t_x_days: ArrayLike,
                          expected_365: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    """(days, counted from the last purchase?) until the expected next purchase.

    For repeat buyers the days count from their last purchase day; for one-time buyers from
    the snapshot day (the second array says which). NaN where there is no estimate.
    """
    x = np.asarray(frequency, dtype=np.float64)
    t_x = np.asarray(t_x_days, dtype=np.float64)
    e365 = np.asarray(expected_365, dtype=np.float64)
    repeat = x >= 1
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_gap = np.where(repeat, np.floor(t_x / np.maximum(x, 1.0) + 0.5), np.nan)
        wait = np.where(e365 > 0, np.floor(365.0 / e365 + 0.5), np.nan)
    wait = np.where(wait <= MAX_WAIT_DAYS, wait, np.nan)
    return np.where(repeat, mean_gap, wait), repeat
