"""Reads of the sales history used by other domains (reports, membership fees)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from patron.sales.models import RefundLine, Sale, SaleLine


def net_line_revenue(session: Session, *, product_id: uuid.UUID, since: datetime,
                     until: datetime) -> int:
    """What lines of one product sold in [since, until) brought in, less their refunds."""
    in_period = (select(SaleLine.id).join(Sale, Sale.id == SaleLine.sale_id)
                 .where(SaleLine.product_id == product_id, Sale.occurred_at >= since,
                        Sale.occurred_at < until))
    gross = session.scalar(select(func.coalesce(func.sum(SaleLine.total_minor), 0))
                           .where(SaleLine.id.in_(in_period))) or 0
    refunded = session.scalar(select(func.coalesce(func.sum(RefundLine.amount_minor), 0))
                              .where(RefundLine.sale_line_id.in_(in_period))) or 0
    return int(gross) - int(refunded)


def member_net_spend(session: Session, *, member_id: uuid.UUID, since: datetime) -> int:
    """What a member spent since ``since``, net of refunds (minor units)."""
    spend = session.scalar(select(func.coalesce(func.sum(Sale.total_minor - Sale.refunded_minor),
                                                0))
                           .where(Sale.member_id == member_id, Sale.occurred_at >= since))
    return int(spend or 0)
