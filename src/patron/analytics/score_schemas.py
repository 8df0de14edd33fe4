"""API shapes of member scores, segment reports and refresh runs (Pydantic v2)."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class MemberScoresRead(BaseModel):
    """A member's scores in the latest snapshot; purchase fields are null for members who
    had bought nothing by ``as_of``. See docs/analytics.md for every rule."""

    model_config = ConfigDict(from_attributes=True)

    as_of: date = Field(description="The last local day of history the scores include")
    member_id: uuid.UUID
    purchases: int = Field(description="Purchase days (same-day sales are one purchase)")
    frequency: int | None = Field(description="Repeat purchases: purchases - 1")
    first_purchase_on: date | None
    last_purchase_on: date | None
    recency_days: int | None
    tenure_days: int | None
    monetary_minor: int | None = Field(description="Mean net value of a purchase")
    total_net_minor: int
    net_90_minor: int
    net_prev_90_minor: int
    net_365_minor: int
    r_score: int | None
    f_score: int | None
    m_score: int | None
    fm_score: int | None
    rfm_segment: str | None
    p_alive: float | None = Field(description="BG/NBD probability the member is still active")
    expected_30: float | None
    expected_90: float | None
    expected_365: float | None
    expected_spend_minor: int | None
    clv_minor: int | None
    lifecycle_stage: str
    next_purchase_on: date | None
    satisfaction: str
    loyalty_type: str
    replenishment_categories: int
    bond_financial: float
    bond_social: float
    bond_structural: float
    next_bond: str | None


class GroupTotalsRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    name: str | None = Field(description="Segment or stage; null: members with no purchase")
    members: int
    revenue_minor: int = Field(description="Net spend over the whole history")
    revenue_365_minor: int = Field(description="Net spend in the last 365 days")
    clv_minor: int
    mean_p_alive: float | None


class SegmentReportRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    as_of: date
    members: int
    segments: list[GroupTotalsRead]
    stages: list[GroupTotalsRead]


class AnalyticsRunRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    as_of: date
    started_at: datetime
    finished_at: datetime | None
    status: str
    stages: dict[str, float] = Field(description="Seconds per stage")
    params: dict[str, Any] = Field(description="Fitted parameters and what they were fitted on")
    members: int
    error: str
