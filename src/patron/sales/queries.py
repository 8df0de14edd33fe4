"""Reads of the sales history used by other domains (reports, membership fees, care rules).

Member sets are passed as a ``Select`` of member ids built by the members domain, so this
module never needs to know the members table.

The reads behind the daily care rules (:func:`purchase_columns`, :func:`lapsed_spenders`)
go over a store's whole year of history, millions of rows at a million members, so they
are shaped for that: only the columns a rule needs, read into NumPy columns (instants as
microseconds since the epoch, each member's id made a ``uuid.UUID`` once, not once per
row), and the date arithmetic and grouping that can be done in the database done there,
with :class:`epoch_us` and :class:`days_before` (exact on SQLite and PostgreSQL).
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import BigInteger, Select, String, and_, cast, func, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from patron.core.clock import as_utc
from patron.core.models import UTCDateTime
from patron.sales.models import RefundLine, Sale, SaleLine

IntArray = npt.NDArray[np.int64]


class epoch_us(FunctionElement[int]):  # noqa: N801 - reads like the SQL function it is
    """Microseconds since 1970-01-01 UTC of a UTC datetime column, as an integer.

    Exact on both backends: SQLite stores ``YYYY-MM-DD HH:MM:SS.ffffff`` text (seconds from
    ``strftime('%s')``, microseconds from characters 21-26); PostgreSQL's ``EXTRACT(EPOCH)``
    is an exact numeric. Reading integers instead of datetimes saves parsing a timestamp
    and building a ``datetime`` per row, and lets window arithmetic run in SQL.
    """

    type = BigInteger()
    inherit_cache = True
    name = "epoch_us"


@compiles(epoch_us, "sqlite")
def _epoch_us_sqlite(element: epoch_us, compiler: SQLCompiler, **kw: Any) -> str:
    column = compiler.process(element.clauses, **kw)
    return (f"(CAST(strftime('%s', {column}) AS INTEGER) * 1000000"
            f" + CAST(substr({column}, 21, 6) AS INTEGER))")


@compiles(epoch_us)
def _epoch_us_default(element: epoch_us, compiler: SQLCompiler, **kw: Any) -> str:
    column = compiler.process(element.clauses, **kw)
    return f"CAST(EXTRACT(EPOCH FROM {column}) * 1000000 AS BIGINT)"


class days_before(FunctionElement[datetime]):  # noqa: N801 - reads like SQL
    """A UTC datetime column moved ``days`` whole days earlier, exactly.

    In UTC a day is always 24 hours, so on SQLite's stored text this is the date moved back
    and the time of day kept to the microsecond (``date(x, '-N days') || substr(x, 11)``),
    comparable with the column and usable as an index bound; elsewhere an interval.
    """

    type = UTCDateTime()
    inherit_cache = True
    name = "days_before"


@compiles(days_before, "sqlite")
def _days_before_sqlite(element: days_before, compiler: SQLCompiler, **kw: Any) -> str:
    column, days = (compiler.process(c, **kw) for c in element.clauses)
    return f"(date({column}, '-' || {days} || ' days') || substr({column}, 11))"


@compiles(days_before)
def _days_before_default(element: days_before, compiler: SQLCompiler, **kw: Any) -> str:
    column, days = (compiler.process(c, **kw) for c in element.clauses)
    return f"({column} - make_interval(days => {days}))"


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


@dataclass(frozen=True)
class PurchaseColumns:
    """Sale lines as columns: who bought which product when.

    One entry per line; ``member`` indexes ``member_ids`` (each distinct member once),
    ``product`` indexes the product ids that were asked for, ``at_us`` is :class:`epoch_us`
    of the sale. Not sorted.
    """

    member_ids: list[uuid.UUID]
    member: IntArray
    product: IntArray
    at_us: IntArray

    def __len__(self) -> int:
        return len(self.member)


def purchase_columns(session: Session, *, members: Select[Any],
                     product_ids: Sequence[uuid.UUID], since: datetime) -> PurchaseColumns:
    """Every line of ``product_ids`` that ``members`` bought since ``since`` and did not
    return in full, as columns (the replenishment rule reads a store's year at once:
    millions of lines at a million members).

    Only the three columns the rule needs are read, and they are read from the DBAPI
    cursor: ids as text, each distinct member turned into a ``uuid.UUID`` once; instants
    as :class:`epoch_us`, or on SQLite as the stored UTC text, which NumPy parses in bulk
    faster than SQLite's ``strftime`` computes the integer row by row. A SQLAlchemy
    ``Row``, a ``UUID`` and a ``datetime`` per line would cost more than everything else
    done with the line.
    """
    empty = np.zeros(0, dtype=np.int64)
    if not product_ids:
        return PurchaseColumns([], empty, empty, empty)
    stored_text = session.get_bind().dialect.name == "sqlite"
    result = session.connection().execute(
        select(cast(Sale.member_id, String), cast(SaleLine.product_id, String),
               Sale.occurred_at if stored_text else epoch_us(Sale.occurred_at))
        .join(SaleLine, SaleLine.sale_id == Sale.id)
        .where(Sale.member_id.in_(members.scalar_subquery()), Sale.occurred_at >= since,
               SaleLine.product_id.in_(list(product_ids)),
               SaleLine.quantity > SaleLine.refunded_quantity))
    # SQLite keeps UUIDs as 32 hex digits, PostgreSQL's text has hyphens: know both
    product_index = {form: i for i, p in enumerate(product_ids) for form in (p.hex, str(p))}
    keys: dict[str, int] = {}
    chunks: list[tuple[IntArray, IntArray, IntArray]] = []
    cursor = result.cursor
    while chunk := cursor.fetchmany(100_000):  # arrays per chunk: a year is millions of rows
        n = len(chunk)
        chunks.append((
            np.fromiter((keys.setdefault(row[0], len(keys)) for row in chunk), np.int64, n),
            np.fromiter((product_index[row[1]] for row in chunk), np.int64, n),
            np.array([row[2] for row in chunk], dtype="datetime64[us]").astype(np.int64)
            if stored_text else np.fromiter((row[2] for row in chunk), np.int64, n)))
    result.close()
    if not chunks:
        return PurchaseColumns([], empty, empty, empty)
    member, product, at_us = (np.concatenate(column) for column in zip(*chunks, strict=True))
    return PurchaseColumns(member_ids=[uuid.UUID(m) for m in keys], member=member,
                           product=product, at_us=at_us)


def _sqlite_materializes(session: Session) -> bool:
    """Whether the database is SQLite 3.35 or later, which knows ``AS MATERIALIZED``."""
    dialect = session.get_bind().dialect
    if dialect.name != "sqlite":
        return False
    version: tuple[int, ...] = getattr(dialect.dbapi, "sqlite_version_info", (0,))
    return version >= (3, 35)


def lapsed_spenders(session: Session, *, members: Select[Any], lapsed_before: datetime,
                    window_days: int, min_spend_minor: int,
                    ) -> list[tuple[uuid.UUID, datetime, int]]:
    """Members of ``members`` who last bought before ``lapsed_before`` and who spent, net
    of refunds, at least ``min_spend_minor`` in the ``window_days`` that end with that last
    purchase: (member, last purchase, spend), the longest away first.

    One statement, all of it on the (member, time) index: each member's last purchase is
    one seek to the end of their entries (a correlated ``max``, which SQLite answers from
    the index, where a ``GROUP BY`` would read every entry), and only the lapsed members'
    sales inside their own window are read for the spend. Neither a store's every member
    nor every sale travels to Python.
    """
    ids = members.subquery("candidates")
    member_id = next(iter(ids.c))
    last = select(member_id.label("member_id"),
                  select(func.max(Sale.occurred_at)).where(Sale.member_id == member_id)
                  .scalar_subquery().label("last_at")).cte("last_purchase")
    if _sqlite_materializes(session):
        # evaluated once per member, not again for each of their sales in the join
        last = last.prefix_with("MATERIALIZED", dialect="sqlite")
    spend = func.sum(Sale.total_minor - Sale.refunded_minor)
    rows = session.execute(
        select(last.c.member_id, last.c.last_at, spend)
        .join(Sale, and_(Sale.member_id == last.c.member_id,
                         Sale.occurred_at >= days_before(last.c.last_at, window_days)))
        .where(last.c.last_at < lapsed_before)
        .group_by(last.c.member_id, last.c.last_at)
        .having(spend >= min_spend_minor)
        .order_by(last.c.last_at, last.c.member_id))
    return [(m, as_utc(at), int(total)) for m, at, total in rows]
