"""Weighted draws from the stdlib generator without ``random.choices``' per-call overhead.

``weighted(rnd, items, cum)`` returns exactly what ``rnd.choices(items, cum_weights=cum)[0]``
would (same algorithm, one ``random()`` per draw), so switching between them keeps a seed's
data unchanged; it just skips building argument lists on every call, which matters when a
draw is made a few million times.
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Iterable, Sequence
from itertools import accumulate
from typing import TypeVar

T = TypeVar("T")


def cumulative(weights: Iterable[float]) -> list[float]:
    return list(accumulate(float(w) for w in weights))


def weighted(rnd: random.Random, items: Sequence[T], cum: Sequence[float]) -> T:
    """One item drawn with the cumulative weights ``cum``."""
    return items[bisect.bisect(cum, rnd.random() * cum[-1], 0, len(cum) - 1)]
