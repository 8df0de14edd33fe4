"""Reproducible ids in the UUIDv7 layout of ``patron.core.ids``.

Demo data must come out the same from the same seed, so its ids cannot come from
``os.urandom``. They keep the version-7 layout (48-bit Unix milliseconds of the row's own
timestamp, then random bits drawn from the seeded generator), so demo rows sort by creation
time and fill B-tree indexes the way production rows do.
"""

from __future__ import annotations

import base64
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


class IdSource:
    """UUIDv7 ids handed out one at a time, for rows made one by one in a simulation.

    The random bits are drawn from ``rng`` in blocks, so an id costs about what building
    the ``uuid.UUID`` costs; the same calls in the same order give the same ids.
    """

    BLOCK = 65_536

    def __init__(self, rng: np.random.Generator) -> None:
        self._rng = rng
        self._a: list[int] = []
        self._b: list[int] = []
        self._next = 0

    def at(self, when: datetime) -> uuid.UUID:
        """A fresh id whose timestamp is ``when`` (an aware datetime)."""
        if self._next == len(self._a):
            self._a = self._rng.integers(0, 1 << 12, size=self.BLOCK, dtype=np.uint64).tolist()
            self._b = self._rng.integers(0, 1 << 62, size=self.BLOCK, dtype=np.uint64).tolist()
            self._next = 0
        k = self._next
        self._next += 1
        t = int(when.timestamp() * 1000)
        return uuid.UUID(int=(t & 0xFFFF_FFFF_FFFF) << 80 | 0x7 << 76 | self._a[k] << 64
                         | 0x2 << 62 | self._b[k])

    def token(self, nbytes: int) -> str:
        """A URL-safe random token of ``nbytes`` bytes (like ``secrets.token_urlsafe``)."""
        raw = self._rng.integers(0, 256, size=nbytes, dtype=np.uint8).tobytes()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")
