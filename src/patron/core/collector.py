"""Python's cyclic garbage collector, paused around bulk work.

A full collection walks every container object the process holds: a worker or a CLI
that has imported patron, SQLAlchemy, Ibis and Arrow holds some 300,000, and one pass
over them took 0.12-0.24 s on the 2-core machine. Bulk work (the demo build, the
analytics warehouse's nightly read of the changed rows) allocates tens of thousands of
rows as tuples that live until the work ends; each batch of survivors counts towards
the next full pass, so the collector walked the whole heap again in the middle of the
work and found nothing to free. The rows hold no reference cycles, so pausing the
collector loses nothing: whatever cyclic garbage the work leaves is collected by the
first pass after it.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def paused() -> Iterator[None]:
    """No cyclic collection inside the block (reference counting frees as usual); the
    collector is as it was after it, also when the block raises."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
