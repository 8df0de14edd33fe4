"""API shapes of segments, campaigns, results and plays.

A segment's ``rules`` arrive as a plain JSON object and are parsed by
``segments.parse_rules`` in the service, so every problem names its field the way the rule
builder shows it (``rules.children.2.value``), all problems at once.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime, time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Language = Literal["en", "zh_CN"]
CampaignKind = Literal["message", "referral"]
ChannelName = Literal["sms", "email"]
ScheduleKind = Literal["now", "at", "weekly"]

RULES_DOC = ("The rule tree: a group {\"op\": \"all\" | \"any\", \"children\": [...]} or a "
             "condition {\"field\": ..., \"op\": ..., \"value\": ...}; any node may carry "
             "\"negate\": true. GET /segments/fields lists the fields.")


class SegmentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=1000)
    rules: dict[str, Any] = Field(description=RULES_DOC)


class SegmentUpdate(BaseModel):
    """Only the fields sent change; ``rules`` is replaced whole."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=1000)
    rules: dict[str, Any] | None = Field(default=None, description=RULES_DOC)


class RulesIn(BaseModel):
    """A draft rule tree, for the builder's live count and sample."""

    model_config = ConfigDict(extra="forbid")

    rules: dict[str, Any] = Field(description=RULES_DOC)


class SegmentRead(BaseModel):
    id: uuid.UUID
    name: str
    description: str
    rules: dict[str, Any]
    store_ids: list[uuid.UUID]
    created_by: str
    created_at: datetime
    updated_at: datetime
    archived: bool


class SegmentCount(BaseModel):
    """How many active members match, when, and against which scores snapshot."""

    count: int
    evaluated_at: datetime
    scores_as_of: date | None
    uses_scores: bool
    restricted_to_stores: list[uuid.UUID] | None  # a manager sees their stores' members only


class SampleMember(BaseModel):
    id: uuid.UUID
    name: str
    card_no: str
    phone: str | None  # masked (138****5678) unless the caller is the owner
    email: str | None  # masked unless the caller is the owner
    home_store_id: uuid.UUID
    joined_at: datetime
    sms_consent: bool
    email_consent: bool


class SegmentSample(BaseModel):
    members: list[SampleMember]
    scores_as_of: date | None


class FieldRead(BaseModel):
    field: str
    kind: str
    description: str
    schema_: dict[str, Any] = Field(alias="schema")

    model_config = ConfigDict(populate_by_name=True)


class CampaignMessage(BaseModel):
    """One language's text. It may use the variables of any message (``{{ member.name }}``,
    ``{{ store.name }}``, ``{{ coupon.code }}`` when the campaign has an offer,
    ``{{ referral.code }}`` and ``{{ referral.link }}`` in a referral campaign). The brand
    signature and the opt-out are added to every SMS, an unsubscribe link to every e-mail."""

    model_config = ConfigDict(extra="forbid")

    subject: str = Field(default="", max_length=300)
    body: str = Field(default="", max_length=5000, description="Required (checked by the "
                      "service, so the error names messages.<language>.body)")
    sms: str = Field(default="", max_length=500, description="Shorter text for SMS; the body "
                     "is used when empty")


class CampaignCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    kind: CampaignKind = "message"
    segment_id: uuid.UUID
    channel: ChannelName
    messages: dict[Language, CampaignMessage] = Field(min_length=1)
    coupon_template_id: uuid.UUID | None = None
    schedule: ScheduleKind = "now"
    send_at: datetime | None = Field(default=None, description="For schedule 'at'")
    weekday: int | None = Field(default=None, ge=0, le=6,
                                description="For schedule 'weekly': 0 = Monday")
    send_time: time = Field(default=time(10, 0), description="Local time of weekly runs")
    holdout_pct: float = Field(default=10.0, ge=0, le=50)
    seed: int | None = Field(default=None, ge=0, le=2**62,
                             description="The assignment seed; random when omitted")
    attribution_days: int = Field(default=14, ge=1, le=365)
    margin_pct: float = Field(default=30.0, ge=0, le=100)
    sms_cost_minor: int = Field(default=5, ge=0, le=10_000)
    email_cost_minor: int = Field(default=0, ge=0, le=10_000)


class CampaignUpdate(BaseModel):
    """A draft's changes: only the fields sent change."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200)
    segment_id: uuid.UUID | None = None
    channel: ChannelName | None = None
    messages: dict[Language, CampaignMessage] | None = Field(default=None, min_length=1)
    coupon_template_id: uuid.UUID | None = None
    schedule: ScheduleKind | None = None
    send_at: datetime | None = None
    weekday: int | None = Field(default=None, ge=0, le=6)
    send_time: time | None = None
    holdout_pct: float | None = Field(default=None, ge=0, le=50)
    seed: int | None = Field(default=None, ge=0, le=2**62)
    attribution_days: int | None = Field(default=None, ge=1, le=365)
    margin_pct: float | None = Field(default=None, ge=0, le=100)
    sms_cost_minor: int | None = Field(default=None, ge=0, le=10_000)
    email_cost_minor: int | None = Field(default=None, ge=0, le=10_000)


class ArmCounts(BaseModel):
    treatment: int = 0
    control: int = 0
    excluded: int = 0


class CampaignRead(BaseModel):
    id: uuid.UUID
    name: str
    kind: CampaignKind
    segment_id: uuid.UUID
    rules: dict[str, Any]
    store_ids: list[uuid.UUID]
    channel: ChannelName
    messages: dict[str, CampaignMessage]
    coupon_template_id: uuid.UUID | None
    schedule: ScheduleKind
    send_at: datetime | None
    weekday: int | None
    send_time: time
    holdout_pct: float
    seed: int
    attribution_days: int
    margin_pct: float
    sms_cost_minor: int
    email_cost_minor: int
    status: str
    last_run_on: date | None
    created_by: str
    created_at: datetime
    updated_at: datetime
    launched_at: datetime | None
    paused_at: datetime | None
    cancelled_at: datetime | None
    assigned: ArmCounts


class TestSendIn(BaseModel):
    """Send the campaign's message, rendered with sample data, to a staff phone or e-mail.
    Not counted in the results and not subject to consent, quiet hours or the cap."""

    model_config = ConfigDict(extra="forbid")

    to: str = Field(min_length=3, max_length=320)
    language: Language | None = None


class TestSendRead(BaseModel):
    message_id: uuid.UUID
    channel: ChannelName
    recipient: str
    body: str
    subject: str


class IntervalRead(BaseModel):
    estimate: float
    low: float
    high: float


class VerdictRead(BaseModel):
    code: Literal["positive", "negative", "no_measurable_effect", "insufficient_data"]
    text: str


class ArmRead(BaseModel):
    members: int
    converted: int
    conversion_rate: float
    revenue_minor: int
    revenue_per_member_minor: float
    revenue_sd_minor: float
    coupons_issued: int
    coupons_redeemed: int
    coupon_discount_minor: int


class UpliftRead(BaseModel):
    """Treatment minus control. Conversion in proportion points (0.021 = 2.1 points)."""

    conversion: IntervalRead | None
    conversion_relative: IntervalRead | None
    revenue_per_member_minor: IntervalRead | None
    revenue_relative: IntervalRead | None
    revenue_df: float | None


class DeliveryRead(BaseModel):
    """Where every assigned member went: nobody is lost silently."""

    segment_members: int
    excluded: dict[str, int]  # before randomisation: no_consent, no_contact
    treatment_not_sent: dict[str, int]  # pending, coupon_unavailable, campaign_cancelled...
    messages: dict[str, int]  # by message status
    suppressed: dict[str, int]  # by the gate's reason (no_consent, frequency_cap, ...)
    billed_units: int  # SMS segments or e-mails sent


class EconomicsRead(BaseModel):
    incremental_revenue_minor: IntervalRead | None
    incremental_margin_minor: IntervalRead | None
    margin_pct: float
    message_cost_minor: int
    coupon_cost_minor: int
    cost_minor: int
    roi: IntervalRead | None


class ReferralArmRead(BaseModel):
    members: int
    referrers: int
    referred_members: int
    first_purchases: int
    first_purchase_minor: int
    rewarded: int
    reward_coupons: int
    reward_coupons_redeemed: int
    reward_discount_minor: int


class ReferralRead(BaseModel):
    treatment: ReferralArmRead
    control: ReferralArmRead
    referrer_uplift: IntervalRead | None  # share of members who referred someone
    verdict: VerdictRead


class CampaignResults(BaseModel):
    campaign_id: uuid.UUID
    status: str
    computed_at: datetime
    window_complete: bool  # every member's attribution window has closed
    attribution_days: int
    confidence: float
    methods: dict[str, str]
    treatment: ArmRead
    control: ArmRead
    uplift: UpliftRead
    verdict: VerdictRead  # on revenue per member: what the campaign earned
    conversion_verdict: VerdictRead
    delivery: DeliveryRead
    economics: EconomicsRead
    referral: ReferralRead | None


class OfferSuggestion(BaseModel):
    """A coupon a play suggests (create it as a coupon template, then pass its id)."""

    description: str
    kind: Literal["fixed", "percent"]
    amount_minor: int | None = None
    percent: int | None = None
    min_spend_minor: int = 0
    valid_days: int = 14


class PlayRead(BaseModel):
    code: str
    name: str
    description: str
    rules: dict[str, Any]
    messages: dict[str, CampaignMessage]
    offer: OfferSuggestion | None
    schedule: ScheduleKind
    weekday: int | None
    attribution_days: int
    kind: CampaignKind


class PlayCampaignCreate(BaseModel):
    """Create a draft campaign (and its saved segment) from a play; everything but the
    play's segment and texts can be set here or changed on the draft."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200)
    channel: ChannelName = "sms"
    coupon_template_id: uuid.UUID | None = None
    holdout_pct: float = Field(default=10.0, ge=0, le=50)
    store_ids: list[uuid.UUID] | None = Field(
        default=None, description="Limit the segment to these home stores (managers: "
        "their own stores are used when omitted)")
