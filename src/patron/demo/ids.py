"""Reproducible ids in the UUIDv7 layout of ``patron.core.ids``.

Demo data must come out the same from the same seed, so its ids cannot come from
``os.urandom``. They keep the version-7 layout (48-bit Unix milliseconds of the row's own
timestamp, then random bits drawn from the seeded generator), so demo rows sort by creation
time and fill B-tree indexes the way production rows do.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

import numpy as np


def unix_ms(at: datetime) -> int:
    """Milliseconds since the Unix epoch of an aware datetime."""
    return int(at.timestamp() * 1000)


def uuid7_batch(rng: np.random.Generator, ms: Sequence[int]) -> list[uuid.UUID]:
    """One UUIDv7 per timestamp in ``ms``, with 74 random bits each from ``rng``."""
    n = len(ms)
    rand_a = rng.integers(0, 1 << 12, size=n, dtype=np.uint64).tolist()
    rand_b = rng.integers(0, 1 << 62, size=n, dtype=np.uint64).tolist()
    return [
        uuid.UUID(int=(t & 0xFFFF_FFFF_FFFF) << 80 | 0x7 << 76 | a << 64 | 0x2 << 62 | b)
        for t, a, b in zip(ms, rand_a, rand_b, strict=True)
    ]
