"""Members' next-best products by name, for the messages they are sent.

The nightly refresh stores each member's next-best products (``recommend``, table
``next_best_products``); the member page shows them and this module hands them to the
senders of marketing messages (care rules, campaigns), which pass them to the templates as
``picks`` ("You might also like: ..."). It is a read of one snapshot, shaped for a batch of
recipients: one query per few thousand members, so a campaign to a whole segment costs a
query per batch rather than one per member.

Only products still on sale are offered (a product withdrawn since the snapshot is left
out, and the next one moves up); a member without a snapshot, or a shop whose refresh
stored no next-best products yet, gets an empty tuple: templates say
``{% if picks is defined and picks %}``.

Kept apart from ``recommend`` on purpose: the senders import it at every batch, and it
needs nothing of the analytics engine (no DuckDB, Arrow or Ibis), only two indexed reads.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import date

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from patron.analytics.tables import AnalyticsRun, NextBestProduct
from patron.catalog.models import Product

DEFAULT_PICKS = 3  # enough for a line of a message; the member page shows more
MAX_PICKS = 10
IDS_PER_QUERY = 5_000  # well under SQLite's 32,766 bound parameters


@dataclass(frozen=True)
class Pick:
    """One product worth suggesting to a member, best first."""

    product_id: uuid.UUID
    name: str
    price_minor: int


def _latest_day(session: Session) -> date | None:
    """The newest succeeded snapshot that stored next-best products."""
    latest: date | None = session.scalar(
        select(func.max(AnalyticsRun.as_of)).where(AnalyticsRun.status == "succeeded"))
    return latest


def product_picks(session: Session, member_ids: Collection[uuid.UUID], *,
                  top_n: int = DEFAULT_PICKS) -> dict[uuid.UUID, tuple[Pick, ...]]:
    """Each member's best ``top_n`` products still on sale, from the latest snapshot.

    Every requested member is in the answer (an empty tuple when there is nothing to
    suggest), so a sender can hand the value to the template as it is.
    """
    if not 1 <= top_n <= MAX_PICKS:
        raise ValueError(f"top_n must be 1..{MAX_PICKS}")
    wanted = list(dict.fromkeys(member_ids))
    found: dict[uuid.UUID, list[Pick]] = {member_id: [] for member_id in wanted}
    day = _latest_day(session) if wanted else None
    if day is None:
        return dict.fromkeys(wanted, ())
    n = NextBestProduct
    # withdrawn products are skipped and later ones move up, so read a few spare ranks
    spare = top_n + 3
    for start in range(0, len(wanted), IDS_PER_QUERY):
        chunk = wanted[start:start + IDS_PER_QUERY]
        rows = session.execute(
            select(n.member_id, n.product_id, Product.name, Product.price_minor)
            .join(Product, Product.id == n.product_id)
            .where(n.as_of == day, n.member_id.in_(chunk), n.rank <= spare,
                   Product.active.is_(True))
            .order_by(n.member_id, n.rank))
        for member_id, product_id, name, price_minor in rows:
            picks = found[member_id]
            if len(picks) < top_n:
                picks.append(Pick(product_id=product_id, name=name, price_minor=price_minor))
    return {member_id: tuple(picks) for member_id, picks in found.items()}
