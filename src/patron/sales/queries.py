"""Reads of the sales history used by other domains (reports, membership fees, care rules).

Member sets are passed as a ``Select`` of member ids built by the members domain, so this
module never needs to know the members table."""

from __future__ import annotations

import uuid
from collections.abc import Collection
from datetime import datetime
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from patron.core.clock import as_utc
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


def last_purchases(session: Session, *, members: Select[Any],
                   ) -> dict[uuid.UUID, datetime]:
    """When each member in ``members`` (a select of member ids) last bought anything."""
    rows = session.execute(select(Sale.member_id, func.max(Sale.occurred_at))
                           .where(Sale.member_id.in_(members.scalar_subquery()))
                           .group_by(Sale.member_id))
    return {member_id: as_utc(at) for member_id, at in rows if member_id is not None}


def spend_since(session: Session, *, members: Select[Any], since: datetime,
                ) -> dict[uuid.UUID, int]:
    """Net spend (less refunds) of each member in ``members`` since ``since``."""
    rows = session.execute(
        select(Sale.member_id, func.sum(Sale.total_minor - Sale.refunded_minor))
        .where(Sale.member_id.in_(members.scalar_subquery()), Sale.occurred_at >= since)
        .group_by(Sale.member_id))
    return {member_id: int(total or 0) for member_id, total in rows if member_id is not None}


def product_purchases(session: Session, *, members: Select[Any],
                      product_ids: Collection[uuid.UUID], since: datetime,
                      ) -> list[tuple[uuid.UUID, uuid.UUID, datetime, int]]:
    """(member, product, when, quantity kept) of every purchase of ``product_ids`` by
    ``members`` since ``since``, oldest first; fully refunded lines are left out."""
    if not product_ids:
        return []
    rows = session.execute(
        select(Sale.member_id, SaleLine.product_id, Sale.occurred_at,
               SaleLine.quantity - SaleLine.refunded_quantity)
        .join(SaleLine, SaleLine.sale_id == Sale.id)
        .where(Sale.member_id.in_(members.scalar_subquery()), Sale.occurred_at >= since,
               SaleLine.product_id.in_(list(product_ids)),
               SaleLine.quantity > SaleLine.refunded_quantity)
        .order_by(Sale.occurred_at))
    return [(m, p, as_utc(at), int(q)) for m, p, at, q in rows if m is not None]


def sale(session: Session, *, sale_id: uuid.UUID) -> Sale | None:
    """One sale with its lines, discounts and payments (for the electronic receipt)."""
    return session.get(Sale, sale_id)


def member_sales_since(session: Session, *, members: Select[Any], since: datetime,
                       ) -> list[tuple[uuid.UUID, datetime, int]]:
    """(member, when, amount net of refunds) of every sale by ``members`` since ``since``."""
    rows = session.execute(
        select(Sale.member_id, Sale.occurred_at, Sale.total_minor - Sale.refunded_minor)
        .where(Sale.member_id.in_(members.scalar_subquery()), Sale.occurred_at >= since))
    return [(m, as_utc(at), int(amount)) for m, at, amount in rows if m is not None]
