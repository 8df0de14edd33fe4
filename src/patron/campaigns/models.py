"""Tables of the campaigns domain: saved segments, campaigns and who was assigned to which arm.

Design overview
---------------
* A ``Segment`` is a saved rule tree (see ``segments``); ``store_ids`` are the home stores
  its top level restricts it to (empty: brand-wide), kept so a manager's list can be
  filtered without parsing every tree.
* A ``Campaign`` keeps its own copy of the segment's rules (``rules``), refreshed while it is
  a draft and frozen at launch, so the results always describe the audience that was
  actually chosen even if the saved segment is edited later.
* ``CampaignMember`` is the experiment's record, one row per campaign and member, written
  once when the member is assigned and never re-randomised: ``arm`` is ``treatment``,
  ``control`` (the holdout: not messaged, measured the same way) or ``excluded`` (could not
  be messaged at all: no consent for the channel, no phone or e-mail; excluded *before*
  randomisation, so both arms are drawn from the same reachable members). ``draw`` is the
  member's uniform number from ``hash(seed, member id)``; ``arm`` is ``control`` exactly
  when ``draw < holdout_pct / 100``. ``starts_at`` .. ``ends_at`` is the attribution
  window in which purchases count, the same for both arms of one run.
  ``reason`` says why a treatment member got no message (``coupon_unavailable``,
  ``no_contact``) or why a member was excluded; ``message_id`` points at the message
  queued for them (its status and suppression reason are read from messaging).
* Money is integer minor units; percentages are floats in [0, 100].
"""

from __future__ import annotations

import uuid
from datetime import date, datetime, time
from typing import Any

from sqlalchemy import CheckConstraint, Float, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from patron.core.models import Base, BigInt, JSONType, uuid_pk

CAMPAIGN_STATUSES = ("draft", "scheduled", "sending", "sent", "recurring", "paused",
                     "cancelled")
ARMS = ("treatment", "control", "excluded")


class Segment(Base):
    __tablename__ = "segments"

    id: Mapped[uuid.UUID] = uuid_pk()
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(String(1000), default="")
    rules: Mapped[dict[str, Any]] = mapped_column(JSONType)
    store_ids: Mapped[list[str]] = mapped_column(JSONType, default=list)  # [] = brand-wide
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    archived_at: Mapped[datetime | None]


class Campaign(Base):
    __tablename__ = "campaigns"

    id: Mapped[uuid.UUID] = uuid_pk()
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16), default="message")  # message, referral
    segment_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("segments.id"), index=True)
    rules: Mapped[dict[str, Any]] = mapped_column(JSONType)  # frozen at launch
    store_ids: Mapped[list[str]] = mapped_column(JSONType, default=list)
    channel: Mapped[str] = mapped_column(String(8))
    messages: Mapped[dict[str, Any]] = mapped_column(JSONType)  # language -> subject, body, sms
    coupon_template_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("coupon_templates.id"))
    schedule: Mapped[str] = mapped_column(String(8), default="now")  # now, at, weekly
    send_at: Mapped[datetime | None]
    weekday: Mapped[int | None]  # 0 = Monday, for weekly campaigns
    send_time: Mapped[time] = mapped_column(default=time(10, 0))  # local, for weekly runs
    holdout_pct: Mapped[float] = mapped_column(Float, default=10.0)
    seed: Mapped[int] = mapped_column(BigInt)
    attribution_days: Mapped[int] = mapped_column(default=14)
    margin_pct: Mapped[float] = mapped_column(Float, default=30.0)
    sms_cost_minor: Mapped[int] = mapped_column(BigInt, default=5)  # per SMS segment
    email_cost_minor: Mapped[int] = mapped_column(BigInt, default=0)  # per e-mail
    status: Mapped[str] = mapped_column(String(16), default="draft")
    resumes: Mapped[int] = mapped_column(default=0)
    last_run_on: Mapped[date | None]
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    launched_at: Mapped[datetime | None]
    paused_at: Mapped[datetime | None]
    cancelled_at: Mapped[datetime | None]

    __table_args__ = (
        CheckConstraint("kind IN ('message', 'referral')", name="kind"),
        CheckConstraint("channel IN ('sms', 'email')", name="channel"),
        CheckConstraint("schedule IN ('now', 'at', 'weekly')", name="schedule"),
        CheckConstraint("(schedule = 'at') = (send_at IS NOT NULL)", name="send_at"),
        CheckConstraint("(schedule = 'weekly') = (weekday IS NOT NULL)"
                        " AND (weekday IS NULL OR weekday BETWEEN 0 AND 6)", name="weekday"),
        CheckConstraint("status IN ('draft', 'scheduled', 'sending', 'sent', 'recurring', "
                        "'paused', 'cancelled')", name="status"),
        CheckConstraint("holdout_pct >= 0 AND holdout_pct <= 50", name="holdout"),
        CheckConstraint("attribution_days BETWEEN 1 AND 365", name="attribution_days"),
        CheckConstraint("margin_pct >= 0 AND margin_pct <= 100", name="margin"),
        CheckConstraint("sms_cost_minor >= 0 AND email_cost_minor >= 0", name="costs"),
        Index("ix_campaigns_status", "status"),
    )


class CampaignMember(Base):
    """One member's assignment in one campaign (written once; see the module docstring)."""

    __tablename__ = "campaign_members"

    campaign_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("campaigns.id"), primary_key=True)
    member_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("members.id"), primary_key=True)
    arm: Mapped[str] = mapped_column(String(10))
    draw: Mapped[float] = mapped_column(Float)
    reason: Mapped[str | None] = mapped_column(String(32))
    message_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("messages.id"))
    coupon_code: Mapped[str | None] = mapped_column(String(16))
    run_on: Mapped[date]  # the brand's local day of the run that assigned the member
    assigned_at: Mapped[datetime]
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime]

    __table_args__ = (
        CheckConstraint("arm IN ('treatment', 'control', 'excluded')", name="arm"),
        CheckConstraint("draw >= 0 AND draw < 1", name="draw"),
        CheckConstraint("ends_at > starts_at", name="window"),
        CheckConstraint("arm = 'treatment' OR (message_id IS NULL AND coupon_code IS NULL)",
                        name="only_treatment_is_sent"),
        Index("ix_campaign_members_campaign_arm", "campaign_id", "arm"),
        Index("ix_campaign_members_member_id", "member_id"),
    )
