"""``patron demo`` (filled in by the demo-data work)."""

from __future__ import annotations


def demo() -> None:
    """Generate a realistic demo chain."""
