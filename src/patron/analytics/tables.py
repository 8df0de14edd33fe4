"""Tables of the analytics domain: dated score snapshots and the record of each refresh.

(``tables`` rather than ``models``: ``patron.analytics.models`` is the package of the
statistical models, BG/NBD and Gamma-Gamma.)

A snapshot is derived data, not a ledger: ``refresh`` rebuilds it from the sales history and
deletes all but the newest few (``keep_snapshots``). So ``member_scores`` and
``category_cycles`` have no foreign key to ``members``: a merge or an erasure must not have
to move or fold rows the next refresh replaces anyway (merged members are not scored).
Scores hold no personal data. Money is integer minor units (estimates rounded half up),
times in days, probabilities in [0, 1]; the vocabularies are the tuples below (their
meaning: ``rfm``, ``lifecycle``, ``scores``).

Readers see a snapshot only through its run: the latest ``succeeded`` run's ``as_of``.
Rows are written in chunks (short write transactions, so tills are not held up by a
million-row insert on SQLite), and a snapshot being written, or rewritten for the same
day (its earlier run is then ``superseded`` first), is invisible until its run succeeds.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import CheckConstraint, Float, Index, SmallInteger, String
from sqlalchemy.orm import Mapped, mapped_column

from patron.core.models import Base, BigInt, JSONType, uuid_pk

RFM_SEGMENTS = ("champions", "loyal", "potential_loyalist", "new", "promising",
                "needs_attention", "about_to_sleep", "at_risk", "cant_lose", "hibernating",
                "lost")
LIFECYCLE_STAGES = ("new", "growing", "mature", "declining", "lapsed", "lost")
LOYALTY_TYPES = ("trust", "inertia", "latent", "none")
SATISFACTION = ("satisfied", "dissatisfied", "unknown")
RUN_STATUSES = ("running", "succeeded", "failed", "superseded")


def _one_of(column: str, values: tuple[str, ...], *, nullable: bool = False) -> str:
    listed = ", ".join(f"'{v}'" for v in values)
    return f"{column} IS NULL OR {column} IN ({listed})" if nullable else \
        f"{column} IN ({listed})"


class MemberScore(Base):
    """One member's scores as of one day. Purchase fields are NULL for members who have
    not bought anything by then; bond and loyalty fields are set for every member."""

    __tablename__ = "member_scores"

    as_of: Mapped[date] = mapped_column(primary_key=True)
    member_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)

    # history (purchase = one member-day with a positive net; same-day sales merged)
    purchases: Mapped[int]
    frequency: Mapped[int | None]  # repeat purchases: purchases - 1
    first_purchase_on: Mapped[date | None]
    last_purchase_on: Mapped[date | None]
    recency_days: Mapped[int | None]  # as_of - last_purchase_on
    tenure_days: Mapped[int | None]  # as_of - first_purchase_on
    t_x_days: Mapped[float | None] = mapped_column(Float)  # BG/NBD recency, to the second
    age_days: Mapped[float | None] = mapped_column(Float)  # BG/NBD T, to the cutoff
    monetary_minor: Mapped[int | None] = mapped_column(BigInt)  # mean net per purchase
    total_net_minor: Mapped[int] = mapped_column(BigInt)
    net_90_minor: Mapped[int] = mapped_column(BigInt)  # last 90 days
    net_prev_90_minor: Mapped[int] = mapped_column(BigInt)  # the 90 days before those
    net_365_minor: Mapped[int] = mapped_column(BigInt)

    # RFM
    r_score: Mapped[int | None] = mapped_column(SmallInteger)
    f_score: Mapped[int | None] = mapped_column(SmallInteger)
    m_score: Mapped[int | None] = mapped_column(SmallInteger)
    fm_score: Mapped[int | None] = mapped_column(SmallInteger)
    rfm_segment: Mapped[str | None] = mapped_column(String(24))

    # models (NULL when the models could not be fitted, or for non-buyers)
    p_alive: Mapped[float | None] = mapped_column(Float)
    expected_30: Mapped[float | None] = mapped_column(Float)
    expected_90: Mapped[float | None] = mapped_column(Float)
    expected_365: Mapped[float | None] = mapped_column(Float)
    expected_spend_minor: Mapped[int | None] = mapped_column(BigInt)
    clv_minor: Mapped[int | None] = mapped_column(BigInt)

    lifecycle_stage: Mapped[str] = mapped_column(String(16))
    next_purchase_on: Mapped[date | None]

    satisfaction: Mapped[str] = mapped_column(String(16))
    loyalty_type: Mapped[str] = mapped_column(String(16))
    replenishment_categories: Mapped[int]  # categories bought with >= 3 repeat purchases

    bond_financial: Mapped[float] = mapped_column(Float)
    bond_social: Mapped[float] = mapped_column(Float)
    bond_structural: Mapped[float] = mapped_column(Float)
    next_bond: Mapped[str | None] = mapped_column(String(32))

    # No secondary index: every read goes through the primary key (one member of a day, or
    # all of a day for the segment counts), and each index would slow the nightly write.
    __table_args__ = (
        CheckConstraint("purchases >= 0", name="purchases"),
        CheckConstraint("r_score IS NULL OR (r_score BETWEEN 1 AND 5 AND f_score BETWEEN 1 AND 5 "
                        "AND m_score BETWEEN 1 AND 5 AND fm_score BETWEEN 1 AND 5)",
                        name="rfm_scores"),
        CheckConstraint(_one_of("rfm_segment", RFM_SEGMENTS, nullable=True), name="segment"),
        CheckConstraint(_one_of("lifecycle_stage", LIFECYCLE_STAGES), name="stage"),
        CheckConstraint(_one_of("loyalty_type", LOYALTY_TYPES), name="loyalty_type"),
        CheckConstraint(_one_of("satisfaction", SATISFACTION), name="satisfaction"),
        CheckConstraint("p_alive IS NULL OR p_alive BETWEEN 0 AND 1", name="p_alive"),
        CheckConstraint("bond_financial BETWEEN 0 AND 1 AND bond_social BETWEEN 0 AND 1 "
                        "AND bond_structural BETWEEN 0 AND 1", name="bonds"),
    )


class CategoryCycle(Base):
    """How often one member rebuys one category, as of one day (members with at least two
    purchase days in it); ``interval_days`` is their median interval shrunk toward the
    category's median with weight n / (n + 2)."""

    __tablename__ = "category_cycles"

    as_of: Mapped[date] = mapped_column(primary_key=True)
    member_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    category_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    intervals: Mapped[int]  # n: purchase days in the category - 1
    own_median_days: Mapped[float] = mapped_column(Float)
    category_median_days: Mapped[float] = mapped_column(Float)
    interval_days: Mapped[float] = mapped_column(Float)
    last_purchase_on: Mapped[date]
    next_due_on: Mapped[date]

    __table_args__ = (CheckConstraint("intervals >= 1", name="intervals"),)


class AnalyticsRun(Base):
    """One refresh: when, how long each stage took (``stages``: name → seconds), what the
    models were fitted to (``params``: r, alpha, a, b, loglik, p, q, v, customers, ...)."""

    __tablename__ = "analytics_runs"

    id: Mapped[uuid.UUID] = uuid_pk()
    as_of: Mapped[date]
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    status: Mapped[str] = mapped_column(String(16), default="running")
    stages: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)  # name -> seconds
    params: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    members: Mapped[int] = mapped_column(default=0)
    error: Mapped[str] = mapped_column(String(2000), default="")

    __table_args__ = (
        Index("ix_analytics_runs_started_at", "started_at"),
        CheckConstraint(_one_of("status", RUN_STATUSES), name="status"),
    )


# ---------------------------------------------------------------- dashboard and next-best
# (precomputed by ``refresh`` through ``aggregates``; derived data pruned with the snapshot)


class DashboardGroup(Base):
    """Scored members of one snapshot with the same home store, R score, FM score, RFM
    segment and lifecycle stage, and their sums: the dashboard's snapshot figures for any
    set of stores are sums of these rows (at most ~150 a store), not a scan of the scores.

    ``store_id`` is the member's home store when the snapshot was taken (NULL: none, or a
    member row no longer there); ``seq`` numbers a day's rows (the grouping columns may
    be NULL, so they cannot be the key)."""

    __tablename__ = "dashboard_groups"

    as_of: Mapped[date] = mapped_column(primary_key=True)
    seq: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    store_id: Mapped[uuid.UUID | None]
    r_score: Mapped[int | None] = mapped_column(SmallInteger)
    fm_score: Mapped[int | None] = mapped_column(SmallInteger)
    rfm_segment: Mapped[str | None] = mapped_column(String(24))
    lifecycle_stage: Mapped[str] = mapped_column(String(16))
    members: Mapped[int]
    revenue_365_minor: Mapped[int] = mapped_column(BigInt)  # sum of net_365_minor
    clv_minor: Mapped[int] = mapped_column(BigInt)  # sum of clv_minor (NULL as 0)
    scored: Mapped[int]  # members with a P(alive)
    at_risk: Mapped[int]  # ... below the at-risk threshold
    clv_scored_minor: Mapped[int] = mapped_column(BigInt)
    clv_at_risk_minor: Mapped[int] = mapped_column(BigInt)

    __table_args__ = (CheckConstraint("members >= 1 AND scored >= at_risk AND at_risk >= 0",
                                      name="counts"),)


class DashboardHistory(Base):
    """The dashboard's history figures of one snapshot day for its default period (the
    twelve months to ``as_of``) and one scope: every store (``scope`` = ``all``) or one
    store (its id as 32 hex digits). ``figures`` is ``dashboard.HistoryFigures`` as JSON
    (without campaign uplift, which is read live); ``seconds`` what computing it took."""

    __tablename__ = "dashboard_history"

    as_of: Mapped[date] = mapped_column(primary_key=True)
    scope: Mapped[str] = mapped_column(String(32), primary_key=True)
    timezone: Mapped[str] = mapped_column(String(64))
    first_on: Mapped[date]
    figures: Mapped[dict[str, Any]] = mapped_column(JSONType)
    seconds: Mapped[float] = mapped_column(Float)


class NextBestProduct(Base):
    """One of a member's next-best products as of a snapshot day (``recommend``): rank 1
    is the best; ``because_id`` the product bought that contributed most to it."""

    __tablename__ = "next_best_products"

    as_of: Mapped[date] = mapped_column(primary_key=True)
    member_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    rank: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    product_id: Mapped[uuid.UUID]
    because_id: Mapped[uuid.UUID | None]
    score: Mapped[float] = mapped_column(Float)

    __table_args__ = (CheckConstraint("rank >= 1", name="rank"),)
