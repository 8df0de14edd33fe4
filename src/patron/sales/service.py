"""Sales use cases. Checkout and refunds come with the loyalty work; for now, the books check."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from patron.sales.models import Sale, SaleLine


def verify(session: Session, *, limit: int = 100) -> list[str]:
    """Sales whose lines don't add up to their subtotal (row-level sums are CHECKed)."""
    lines = (select(SaleLine.sale_id, func.sum(SaleLine.total_minor).label("lines_minor"))
             .group_by(SaleLine.sale_id).subquery())
    rows = session.execute(
        select(Sale.id, Sale.subtotal_minor, func.coalesce(lines.c.lines_minor, 0))
        .outerjoin(lines, lines.c.sale_id == Sale.id)
        .where(Sale.subtotal_minor != func.coalesce(lines.c.lines_minor, 0))
        .limit(limit))
    return [f"sale {sid}: subtotal {sub} but lines sum to {lsum}" for sid, sub, lsum in rows]
