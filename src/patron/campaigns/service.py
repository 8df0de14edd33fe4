"""Use cases of campaigns: saved segments, campaigns with a holdout, sending, results.

Design overview
---------------
**Who may.** Campaigns are brand-wide. Owners may target any segment; a manager may only
save segments, and create campaigns on segments, whose top level limits the members to
home stores the manager works in (``{"op": "all", "children": [{"field": "home_store",
"value": [<their stores>]}, ...]}``), and sees only those. A manager's live count and
sample are limited to their stores whatever the draft says. Writes are for staff users.

**Assignment.** Launching a campaign (or a weekly run of a recurring one) evaluates the
segment in one query, then assigns each member not yet in the campaign
(``campaign_members``; a drawn arm is never changed): members that cannot be messaged at
all on the campaign's channel (no consent, no phone or e-mail) are recorded as
``excluded`` with the reason *before* randomisation; the others get
``draw = hash(seed, member id)`` as a uniform number in [0, 1) (BLAKE2b, 64 bits) and are
in the control arm exactly when ``draw < holdout_pct / 100``. The draw is deterministic:
the same seed and member give the same arm on any machine, and the stored draws can be
re-checked.

**Sending.** Treatment members get a message rendered through the ``campaign`` template
(so the brand signature, the SMS opt-out and the e-mail unsubscribe link are applied by
messaging) and, with an offer, a coupon each; the message is queued with
``messaging.enqueue`` (purpose ``marketing``, dedupe key ``campaign:<id>:<member>``), so
consent, a minor's guardian, quiet hours and the weekly cap are decided by messaging's gate
at the moment of sending. Its verdict is read back from the message (status ``suppressed``
and its reason) for the results, so a member stopped by the gate is counted, never lost.
Sending goes in batches (:data:`BATCH`); the caller may pass a ``checkpoint`` (the
boundary's ``commit``) that runs after each batch, so a launch to a hundred thousand members
does not hold the database's write lock for minutes, and an interrupted launch resumes
where it stopped (the daily job finishes it, or launching again does).

**Schedules.** ``now``: at launch. ``at``: assigned and queued on the brand's local day of
``send_at`` (at launch if that is today, else by the daily job just after midnight), the
messages held in the queue until ``send_at``: the audience is fixed at most a day before
sending. ``weekly``: on the chosen weekday the daily job assigns the members who entered the
segment since the last run (a member is in a campaign once, so a recurring campaign reaches
each member at most once; a member excluded earlier who can now be messaged is drawn then)
and queues their messages for ``send_time``.

**Pause and cancel.** Pausing stops further assignment and sending (a launch still
queueing batches re-reads the status before each batch and stops) and suppresses the
campaign's messages still queued (not yet handed to a provider) with the reason
``campaign_paused``; resuming re-queues those members (dedupe key ``...:r<n>`` for the
n-th resume, so each is still queued once per resume) and carries on. Cancelling is final:
queued messages are suppressed with ``campaign_cancelled`` and unsent members stay unsent.
Assignments are never undone: the results stay an intention-to-treat comparison.

**Results** (:func:`results`): per arm, members, conversion (a purchase, i.e. a completed
sale, in ``[starts_at, starts_at + attribution_days)``), revenue per member (net of
refunds, same window), coupons (redemptions at any time count as a cost: conservative);
uplift with intervals (see ``stats``); where every member went; cost and ROI. Referral
campaigns add referrers, referred members, their first purchases and the rewards paid
(from offers' referral attributions and rewards).

Reading other domains' tables: the segment query and the results are aggregates over
sales, coupons, referrals and messages joined to this campaign's assignments; they are
read-only and kept in ``segments`` and :func:`results`. The one write to another domain's
table is :func:`_suppress_queued` (messages ``queued -> suppressed``, the same transition
messaging's gate makes), because messaging has no per-campaign suppression yet.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, fields
from datetime import date, datetime, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from sqlalchemy import and_, case, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from patron.auth import audit
from patron.auth.enums import Role
from patron.auth.principal import Principal, require_role
from patron.campaigns import plays as plays_catalogue
from patron.campaigns import segments, stats
from patron.campaigns.models import Campaign, CampaignMember, Segment
from patron.campaigns.schemas import (
    ArmRead,
    CampaignCreate,
    CampaignMessage,
    CampaignResults,
    CampaignUpdate,
    DeliveryRead,
    EconomicsRead,
    IntervalRead,
    PlayCampaignCreate,
    ReferralArmRead,
    ReferralRead,
    SampleMember,
    SegmentCount,
    SegmentCreate,
    SegmentSample,
    SegmentUpdate,
    UpliftRead,
    VerdictRead,
)
from patron.care.service import member_token, product_picks
from patron.core.clock import Clock, as_utc
from patron.core.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from patron.core.ids import new_id
from patron.core.settings import Settings
from patron.members import service as members
from patron.members.models import Member, MemberTag, Store
from patron.messaging import service as messaging
from patron.messaging.models import Message
from patron.messaging.templates import (
    LANGUAGES,
    BrandView,
    CampaignView,
    CouponView,
    Links,
    MemberView,
    MessageContext,
    ProductPickView,
    StoreView,
    TemplateRenderer,
    TemplateRenderError,
    default_renderer,
    normalise_language,
    sample_context,
)
from patron.offers import promotion_service
from patron.offers import service as offers
from patron.offers.enums import CouponSource
from patron.offers.models import Coupon, CouponRedemption, ReferralAttribution, ReferralReward
from patron.sales.models import Sale

BATCH = 500  # treatment members rendered and queued per batch
ASSIGN_BATCH = 2_000  # members assigned per statement
BILLED = ("sent", "delivered")  # message states a provider charges for
CONFIDENCE = 0.95
TEMPLATE = "campaign"

Checkpoint = Callable[[], None]


def _no_checkpoint() -> None:
    return None


class Sending(Protocol):
    """What sending needs besides a session (the worker's context has it; the API builds a
    :class:`SendContext`)."""

    @property
    def renderer(self) -> TemplateRenderer: ...
    @property
    def settings(self) -> Settings: ...
    @property
    def clock(self) -> Clock: ...


@dataclass(frozen=True)
class SendContext:
    renderer: TemplateRenderer
    settings: Settings
    clock: Clock


def send_context(settings: Settings, clock: Clock) -> SendContext:
    """A :class:`Sending` for the API: the built-in templates in the brand's language."""
    return SendContext(default_renderer(settings.default_language), settings, clock)


# ---------------------------------------------------------------- the message's variables


@dataclass(frozen=True, kw_only=True)
class ReferralView:
    """A member's own referral code and the link that carries it."""

    code: str
    link: str


@dataclass(frozen=True, kw_only=True)
class CampaignContext(MessageContext):
    """A campaign message's variables: every message's, plus ``referral`` in a referral
    campaign (``{{ referral.code }}``)."""

    referral: ReferralView | None = None


# ---------------------------------------------------------------- who may


def require_staff(actor: Principal) -> None:
    """Segments and campaigns are for managers and owners."""
    require_role(actor, Role.MANAGER)


def _require_writer(actor: Principal) -> None:
    require_role(actor, Role.MANAGER, users_only=True)


def _store_ids(values: Iterable[str]) -> frozenset[uuid.UUID]:
    return frozenset(uuid.UUID(v) for v in values)


def _visible(actor: Principal, store_ids: Iterable[str]) -> bool:
    """Owners see everything; a manager sees what is limited to their stores."""
    if actor.all_stores:
        return True
    stores = _store_ids(store_ids)
    return bool(stores) and stores <= actor.store_ids


def _check_restriction(actor: Principal, rule: segments.Rule, field: str) -> frozenset[uuid.UUID]:
    """The rule's home-store restriction; a manager's must lie within their stores."""
    stores = segments.home_stores(rule) or frozenset()
    if not actor.all_stores and (not stores or not stores <= actor.store_ids):
        raise ValidationFailed(
            "A manager's segment must be limited to their own stores: put a home_store "
            "condition listing only your stores at the top level of the rules", field,
            code="store_restriction_required")
    return stores


# ---------------------------------------------------------------- segments


def scope_at(session: Session, *, now: datetime, tz: str) -> segments.Scope:
    """Where a segment is evaluated: now, the brand's zone and the latest scores snapshot."""
    from patron.analytics import service as analytics  # DuckDB and Arrow: only when needed

    return segments.Scope(now=now, tz=tz, scores_as_of=analytics.latest_as_of(session))


def _segment_values(actor: Principal, rules: dict[str, Any], field: str = "rules"
                    ) -> tuple[dict[str, Any], list[str]]:
    rule = segments.parse_rules(rules, field)
    stores = _check_restriction(actor, rule, field)
    return segments.dump_rules(rule), sorted(str(s) for s in stores)


def create_segment(session: Session, *, clock: Clock, actor: Principal,
                   data: SegmentCreate) -> Segment:
    """Save a segment (managers: limited to their stores); audited."""
    _require_writer(actor)
    rules, stores = _segment_values(actor, data.rules)
    now = clock.now()
    segment = Segment(name=data.name, description=data.description, rules=rules,
                      store_ids=stores, created_by=actor.label, created_at=now, updated_at=now)
    session.add(segment)
    session.flush()
    audit.record(session, clock=clock, actor=actor, action="segment.created",
                 entity_type="segment", entity_id=segment.id, details={"name": data.name})
    return segment


def get_segment(session: Session, *, actor: Principal, segment_id: uuid.UUID) -> Segment:
    require_staff(actor)
    segment = session.get(Segment, segment_id)
    if segment is None or not _visible(actor, segment.store_ids):
        raise NotFound("No such segment", "segment_id")
    return segment


def list_segments(session: Session, *, actor: Principal,
                  include_archived: bool = False) -> list[Segment]:
    require_staff(actor)
    stmt = select(Segment).order_by(Segment.created_at.desc(), Segment.id)
    if not include_archived:
        stmt = stmt.where(Segment.archived_at.is_(None))
    return [s for s in session.scalars(stmt) if _visible(actor, s.store_ids)]


def update_segment(session: Session, *, clock: Clock, actor: Principal,
                   segment_id: uuid.UUID, data: SegmentUpdate) -> Segment:
    """Change a segment. Campaigns already launched keep the rules they were launched with."""
    _require_writer(actor)
    segment = get_segment(session, actor=actor, segment_id=segment_id)
    changes = data.model_dump(exclude_unset=True)
    for key in ("name", "rules", "description"):
        if key in changes and changes[key] is None:
            raise ValidationFailed(f"{key} cannot be empty", key, code="required")
    if data.rules is not None:
        segment.rules, segment.store_ids = _segment_values(actor, data.rules)
        for campaign in session.scalars(select(Campaign).where(
                Campaign.segment_id == segment.id, Campaign.status == "draft")):
            campaign.rules, campaign.store_ids = segment.rules, segment.store_ids
    if data.name is not None:
        segment.name = data.name
    if data.description is not None:
        segment.description = data.description
    segment.updated_at = clock.now()
    session.flush()
    audit.record(session, clock=clock, actor=actor, action="segment.updated",
                 entity_type="segment", entity_id=segment.id, details={"changed": sorted(changes)})
    return segment


def archive_segment(session: Session, *, clock: Clock, actor: Principal,
                    segment_id: uuid.UUID) -> Segment:
    """Hide a segment from the lists; campaigns that used it keep their copy of the rules."""
    _require_writer(actor)
    segment = get_segment(session, actor=actor, segment_id=segment_id)
    if segment.archived_at is None:
        segment.archived_at = segment.updated_at = clock.now()
        session.flush()
        audit.record(session, clock=clock, actor=actor, action="segment.archived",
                     entity_type="segment", entity_id=segment.id)
    return segment


def _draft_scope(actor: Principal, rules: dict[str, Any]
                 ) -> tuple[segments.Rule, frozenset[uuid.UUID] | None]:
    require_staff(actor)
    rule = segments.parse_rules(rules)
    return rule, actor.visible_store_ids()


def count_members(session: Session, *, clock: Clock, actor: Principal, rules: dict[str, Any],
                  tz: str) -> SegmentCount:
    """How many active members a (draft) rule tree matches now: one query."""
    rule, stores = _draft_scope(actor, rules)
    scope = scope_at(session, now=clock.now(), tz=tz)
    count = int(session.scalar(segments.count_query(rule, scope, stores=stores)) or 0)
    return SegmentCount(count=count, evaluated_at=scope.now, scores_as_of=scope.scores_as_of,
                        uses_scores=segments.uses_scores(rule),
                        restricted_to_stores=sorted(stores) if stores is not None else None)


def _mask_email(email: str | None) -> str | None:
    if not email or "@" not in email:
        return email
    local, domain = email.split("@", 1)
    return f"{local[:1]}***@{domain}"


def sample_members(session: Session, *, clock: Clock, actor: Principal, rules: dict[str, Any],
                   tz: str, limit: int = 20) -> SegmentSample:
    """The first ``limit`` matching members (by id, i.e. by enrolment); phones and e-mails
    masked unless the caller is the owner."""
    from patron.members import rules as member_rules

    rule, stores = _draft_scope(actor, rules)
    scope = scope_at(session, now=clock.now(), tz=tz)
    columns = (Member.id, Member.name, Member.card_no, Member.phone, Member.email,
               Member.home_store_id, Member.joined_at, Member.sms_consent, Member.email_consent)
    stmt = segments.members_query(rule, scope, columns=columns, stores=stores)
    full = actor.role is Role.OWNER
    out = []
    for row in session.execute(stmt.order_by(Member.id).limit(limit)):
        out.append(SampleMember(
            id=row.id, name=row.name, card_no=row.card_no,
            phone=row.phone if full else member_rules.mask_phone(row.phone),
            email=row.email if full else _mask_email(row.email),
            home_store_id=row.home_store_id, joined_at=row.joined_at,
            sms_consent=row.sms_consent, email_consent=row.email_consent))
    return SegmentSample(members=out, scores_as_of=scope.scores_as_of)


# ---------------------------------------------------------------- campaigns: drafts


def _preview_context(*, language: str, with_coupon: bool, referral: bool) -> CampaignContext:
    """Sample data with only the parts a real campaign message has."""
    sample = sample_context(language)
    parts = {f.name: getattr(sample, f.name) for f in fields(MessageContext)
             if f.name in ("member", "store", "brand", "links", "picks")}
    return CampaignContext(**parts, coupon=sample.coupon if with_coupon else None,
                           campaign=CampaignView(subject="", body=" "),
                           referral=ReferralView(code="AB12CD34",
                                                 link="https://patron.example/join?ref=AB12CD34")
                           if referral else None)


def _check_messages(renderer: TemplateRenderer, messages: dict[str, CampaignMessage], *,
                    channel: str, with_coupon: bool, referral: bool) -> None:
    """Render every language with sample data now, so a mistake in the text is refused
    when it is saved (naming ``messages.<language>.<part>``), not found at send time."""
    for language, text in messages.items():
        if not text.body.strip():
            raise ValidationFailed("The message needs a body", f"messages.{language}.body",
                                   code="required")
        if channel == "email" and not text.subject.strip():
            raise ValidationFailed("An e-mail campaign needs a subject", f"messages.{language}"
                                   ".subject", code="required")
        context = _preview_context(language=language, with_coupon=with_coupon,
                                   referral=referral)
        context = _with_text(context, text)
        try:
            renderer.render(TEMPLATE, language=language, context=context)
        except TemplateRenderError as exc:
            part = (exc.field or "").removeprefix("campaign.")
            where = f"messages.{language}.{part}" if part in ("subject", "body", "sms") \
                else f"messages.{language}"
            raise ValidationFailed(exc.message, where, code="template_error") from None


def _with_text(context: CampaignContext, text: CampaignMessage) -> CampaignContext:
    values = {f.name: getattr(context, f.name) for f in fields(context)}
    values["campaign"] = CampaignView(subject=text.subject, body=text.body, sms=text.sms)
    return CampaignContext(**values)


def _check_schedule(*, schedule: str, send_at: datetime | None, weekday: int | None,
                    now: datetime) -> None:
    if schedule == "at":
        if send_at is None:
            raise ValidationFailed("Say when to send (send_at)", "send_at", code="required")
        if send_at.tzinfo is None:
            raise ValidationFailed("Give a time zone (e.g. 2026-12-01T10:00:00+08:00)",
                                   "send_at")
        if send_at <= now:
            raise ValidationFailed("send_at must be in the future", "send_at")
    elif send_at is not None:
        raise ValidationFailed("send_at is for schedule 'at'", "send_at")
    if schedule == "weekly" and weekday is None:
        raise ValidationFailed("Say on which weekday to run (0 = Monday)", "weekday",
                               code="required")
    if schedule != "weekly" and weekday is not None:
        raise ValidationFailed("weekday is for schedule 'weekly'", "weekday")


def _check_offer(session: Session, template_id: uuid.UUID | None) -> None:
    if template_id is None:
        return
    try:
        template = offers.get_template(session, template_id=template_id)
    except NotFound:
        raise ValidationFailed("No such coupon template", "coupon_template_id",
                               code="unknown_template") from None
    if not template.active:
        raise ValidationFailed("This coupon template is no longer active", "coupon_template_id",
                               code="template_inactive")


def _usable_segment(session: Session, actor: Principal, segment_id: uuid.UUID
                    ) -> tuple[Segment, segments.Rule]:
    segment = session.get(Segment, segment_id)
    if segment is None or not _visible(actor, segment.store_ids):
        raise ValidationFailed("No such segment", "segment_id", code="unknown_segment")
    if segment.archived_at is not None:
        raise ValidationFailed("This segment is archived", "segment_id", code="archived")
    rule = segments.parse_rules(segment.rules)
    _check_restriction(actor, rule, "segment_id")
    return segment, rule


def _validate(session: Session, actor: Principal, campaign: Campaign, renderer: TemplateRenderer,
              now: datetime) -> None:
    segment, _rule = _usable_segment(session, actor, campaign.segment_id)
    campaign.rules, campaign.store_ids = segment.rules, segment.store_ids
    _check_schedule(schedule=campaign.schedule, send_at=campaign.send_at,
                    weekday=campaign.weekday, now=now)
    _check_offer(session, campaign.coupon_template_id)
    texts = {lang: CampaignMessage.model_validate(text)
             for lang, text in campaign.messages.items()}
    _check_messages(renderer, texts, channel=campaign.channel,
                    with_coupon=campaign.coupon_template_id is not None,
                    referral=campaign.kind == "referral")


def create_campaign(session: Session, *, clock: Clock, actor: Principal, data: CampaignCreate,
                    renderer: TemplateRenderer) -> Campaign:
    """A draft campaign; its texts are rendered with sample data to catch mistakes now."""
    _require_writer(actor)
    now = clock.now()
    campaign = Campaign(
        name=data.name, kind=data.kind, segment_id=data.segment_id, rules={}, store_ids=[],
        channel=data.channel,
        messages={lang: text.model_dump() for lang, text in data.messages.items()},
        coupon_template_id=data.coupon_template_id, schedule=data.schedule,
        send_at=data.send_at, weekday=data.weekday, send_time=data.send_time,
        holdout_pct=data.holdout_pct,
        seed=data.seed if data.seed is not None else secrets.randbits(62),
        attribution_days=data.attribution_days, margin_pct=data.margin_pct,
        sms_cost_minor=data.sms_cost_minor, email_cost_minor=data.email_cost_minor,
        status="draft", resumes=0, created_by=actor.label, created_at=now, updated_at=now)
    _validate(session, actor, campaign, renderer, now)
    session.add(campaign)
    session.flush()
    audit.record(session, clock=clock, actor=actor, action="campaign.created",
                 entity_type="campaign", entity_id=campaign.id,
                 details={"name": data.name, "segment_id": str(data.segment_id)})
    return campaign


def get_campaign(session: Session, *, actor: Principal, campaign_id: uuid.UUID) -> Campaign:
    require_staff(actor)
    campaign = session.get(Campaign, campaign_id)
    if campaign is None or not _visible(actor, campaign.store_ids):
        raise NotFound("No such campaign", "campaign_id")
    return campaign


def list_campaigns(session: Session, *, actor: Principal, status: str | None = None
                   ) -> list[Campaign]:
    require_staff(actor)
    stmt = select(Campaign).order_by(Campaign.created_at.desc(), Campaign.id)
    if status is not None:
        stmt = stmt.where(Campaign.status == status)
    return [c for c in session.scalars(stmt) if _visible(actor, c.store_ids)]


def update_campaign(session: Session, *, clock: Clock, actor: Principal,
                    campaign_id: uuid.UUID, data: CampaignUpdate,
                    renderer: TemplateRenderer) -> Campaign:
    """Change a draft (a launched campaign is an experiment under way: pause or cancel it)."""
    _require_writer(actor)
    campaign = get_campaign(session, actor=actor, campaign_id=campaign_id)
    if campaign.status != "draft":
        raise Conflict("Only a draft can be changed", "campaign_id", code="not_draft")
    changes = data.model_dump(exclude_unset=True)
    for key in ("name", "segment_id", "channel", "messages", "schedule", "send_time",
                "holdout_pct", "seed", "attribution_days", "margin_pct", "sms_cost_minor",
                "email_cost_minor"):
        if key in changes and changes[key] is None:
            raise ValidationFailed(f"{key} cannot be empty", key, code="required")
    for key, value in changes.items():
        if key == "messages":
            value = {lang: CampaignMessage.model_validate(text).model_dump()
                     for lang, text in value.items()}
        setattr(campaign, key, value)
    now = clock.now()
    _validate(session, actor, campaign, renderer, now)
    campaign.updated_at = now
    session.flush()
    audit.record(session, clock=clock, actor=actor, action="campaign.updated",
                 entity_type="campaign", entity_id=campaign.id,
                 details={"changed": sorted(changes)})
    return campaign


def arm_counts(session: Session, *, campaign_ids: Sequence[uuid.UUID]
               ) -> dict[uuid.UUID, dict[str, int]]:
    """Members assigned to each arm, per campaign (one query)."""
    out: dict[uuid.UUID, dict[str, int]] = defaultdict(dict)
    if campaign_ids:
        for campaign_id, arm, n in session.execute(
                select(CampaignMember.campaign_id, CampaignMember.arm, func.count())
                .where(CampaignMember.campaign_id.in_(list(campaign_ids)))
                .group_by(CampaignMember.campaign_id, CampaignMember.arm)):
            out[campaign_id][arm] = int(n)
    return out


# ---------------------------------------------------------------- assignment


def draw(seed: int, member_id: uuid.UUID) -> float:
    """The member's uniform number in [0, 1) for this seed: the first 64 bits of
    BLAKE2b(seed, member id) / 2^64. Deterministic, independent across members."""
    digest = hashlib.blake2b(seed.to_bytes(8, "big") + member_id.bytes, digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def arm_of(draw_value: float, holdout_pct: float) -> str:
    return "control" if draw_value < holdout_pct / 100 else "treatment"


def _exclusion(channel: str, phone: str | None, email: str | None, sms_consent: bool,
               email_consent: bool) -> str | None:
    """Why a member cannot be messaged on the channel at all (None: they can)."""
    consent, contact = (sms_consent, phone) if channel == "sms" else (email_consent, email)
    if not consent:
        return "no_consent"
    if not contact:
        return "no_contact"
    return None


def _insert_ignore(session: Session, rows: list[dict[str, Any]]) -> None:
    dialect = session.get_bind().dialect.name
    stmt: Any = postgresql.insert(CampaignMember) if dialect == "postgresql" \
        else sqlite.insert(CampaignMember)
    session.execute(stmt.on_conflict_do_nothing(index_elements=["campaign_id", "member_id"]),
                    rows)


@dataclass
class RunReport:
    """What one run did: members assigned per arm, messages queued."""

    assigned: Counter[str]
    queued: int = 0

    def as_dict(self) -> dict[str, int]:
        return {**{f"assigned_{k}": v for k, v in sorted(self.assigned.items())},
                "queued": self.queued}


def assign(session: Session, ctx: Sending, campaign: Campaign, *, run_on: date,
           starts_at: datetime, checkpoint: Checkpoint = _no_checkpoint) -> Counter[str]:
    """Assign every member of the segment not yet in the campaign (see the module
    docstring); returns how many went to each arm.

    A member recorded as ``excluded`` by an earlier run who can now be messaged (they gave
    consent, or a phone number) is drawn now, as a member entering the segment would be.
    """
    tz = ctx.settings.default_timezone
    rule = segments.parse_rules(campaign.rules)
    scope = scope_at(session, now=ctx.clock.now(), tz=tz)
    wanted = segments.member_ids(session, rule, scope)
    known: dict[uuid.UUID, str] = {}
    for member_id, arm in session.execute(select(CampaignMember.member_id, CampaignMember.arm)
                                          .where(CampaignMember.campaign_id == campaign.id)):
        known[member_id] = arm
    todo = [m for m in wanted if known.get(m, "excluded") == "excluded"]
    counts: Counter[str] = Counter()
    now = ctx.clock.now()
    window = {"run_on": run_on, "assigned_at": now, "starts_at": starts_at,
              "ends_at": starts_at + timedelta(days=campaign.attribution_days)}
    for start in range(0, len(todo), ASSIGN_BATCH):
        chunk = todo[start:start + ASSIGN_BATCH]
        rows = []
        for member_id, phone, email, sms_ok, email_ok in session.execute(
                select(Member.id, Member.phone, Member.email, Member.sms_consent,
                       Member.email_consent).where(Member.id.in_(chunk))):
            reason = _exclusion(campaign.channel, phone, email, sms_ok, email_ok)
            if member_id in known:  # excluded before
                if reason is None:
                    value = draw(campaign.seed, member_id)
                    arm = arm_of(value, campaign.holdout_pct)
                    counts[arm] += 1
                    session.execute(update(CampaignMember).where(
                        CampaignMember.campaign_id == campaign.id,
                        CampaignMember.member_id == member_id).values(
                        arm=arm, draw=value, reason=None, **window))
                continue
            value = draw(campaign.seed, member_id)
            arm = "excluded" if reason else arm_of(value, campaign.holdout_pct)
            counts[arm] += 1
            rows.append({"campaign_id": campaign.id, "member_id": member_id, "arm": arm,
                         "draw": value, "reason": reason, "message_id": None,
                         "coupon_code": None, **window})
        if rows:
            _insert_ignore(session, rows)
        checkpoint()
    return counts


# ---------------------------------------------------------------- sending


def _content_language(campaign: Campaign, member_language: str | None, default: str) -> str:
    wanted = normalise_language(member_language, normalise_language(default))
    for candidate in (wanted, default, *LANGUAGES, *campaign.messages):
        if candidate in campaign.messages:
            return candidate
    raise ValidationFailed("The campaign has no message", "messages")  # pragma: no cover


def _links(settings: Settings, member_id: uuid.UUID, channel: str) -> Links:
    secret = settings.secret_key.get_secret_value()
    base = settings.public_url.rstrip("/")
    return Links(self_service=f"{base}/m/{member_token(secret, member_id)}",
                 unsubscribe=f"{base}/u/{messaging.unsubscribe_token(secret, member_id, channel)}")


def referral_link(settings: Settings, code: str) -> str:
    """Where a friend signs up with a member's code (``/join?ref=CODE``)."""
    return f"{settings.public_url.rstrip('/')}/join?ref={code}"


def _store_view(store: Store | None) -> StoreView:
    if store is None:
        return StoreView(name="")
    return StoreView(name=store.name, phone=store.phone or "", address=store.address,
                     timezone=store.timezone)


def dedupe_key(campaign: Campaign, member_id: uuid.UUID) -> str:
    base = f"campaign:{campaign.id.hex}:{member_id.hex}"
    return base if not campaign.resumes else f"{base}:r{campaign.resumes}"


@dataclass(frozen=True)
class _Recipient:
    member_id: uuid.UUID
    name: str
    card_no: str
    phone: str | None
    email: str | None
    language: str | None
    home_store_id: uuid.UUID
    status: str
    starts_at: datetime


def _render(ctx: Sending, campaign: Campaign, who: _Recipient, store: Store | None,
            coupon: CouponView | None, referral: ReferralView | None, recipient: str,
            picks: tuple[ProductPickView, ...] = ()) -> messaging.Outgoing:
    settings = ctx.settings
    language = _content_language(campaign, who.language, settings.default_language)
    text = CampaignMessage.model_validate(campaign.messages[language])
    context = CampaignContext(
        member=MemberView(name=who.name, card_no=who.card_no), store=_store_view(store),
        brand=BrandView(name=settings.brand_name, currency=settings.currency),
        links=_links(settings, who.member_id, campaign.channel), coupon=coupon,
        campaign=CampaignView(subject=text.subject, body=text.body, sms=text.sms),
        referral=referral, picks=picks)
    rendered = ctx.renderer.render(TEMPLATE, language=language, context=context)
    payload: dict[str, Any] = {"campaign_id": str(campaign.id)}
    if campaign.channel == "email":
        payload["recipient_name"] = who.name
        payload["unsubscribe_url"] = rendered.unsubscribe_url
        body, subject, html = rendered.text, rendered.subject, rendered.html
    else:
        payload["sms_params"] = rendered.sms_params
        body, subject, html = rendered.sms_text, "", None
    return messaging.Outgoing(
        dedupe_key=dedupe_key(campaign, who.member_id), channel=campaign.channel,
        purpose="marketing", template=TEMPLATE, language=rendered.language,
        recipient=recipient, body=body, subject=subject, html=html,
        segments=rendered.segments if campaign.channel == "sms" else None,
        member_id=who.member_id, store_id=who.home_store_id, campaign_id=campaign.id,
        payload=payload, not_before=max(who.starts_at, ctx.clock.now()))


def _issue_coupon(session: Session, ctx: Sending, campaign: Campaign, who: _Recipient,
                  store: Store | None) -> CouponView | None:
    """The member's coupon, or None when the template cannot issue it any more (inactive,
    ended, a limit reached): the member then gets no message (``coupon_unavailable``)."""
    assert campaign.coupon_template_id is not None
    try:
        with session.begin_nested():
            coupon = offers.issue_coupons(
                session, clock=ctx.clock, actor=None, template_id=campaign.coupon_template_id,
                member_id=who.member_id, source=CouponSource.CAMPAIGN,
                source_ref=str(campaign.id))[0]
    except (ValidationFailed, NotFound):
        return None
    template = offers.get_template(session, template_id=coupon.template_id)
    tz = ZoneInfo(store.timezone if store is not None else ctx.settings.default_timezone)
    return CouponView(name=template.name, code=coupon.code,
                      valid_until=coupon.valid_until.astimezone(tz).date())


def send_pending(session: Session, ctx: Sending, campaign: Campaign, *,
                 limit: int = BATCH) -> int:
    """Render and queue the messages of up to ``limit`` treatment members who have none
    yet; returns how many members were handled (0: nothing left)."""
    rows = session.execute(
        select(CampaignMember.member_id, Member.name, Member.card_no, Member.phone,
               Member.email, Member.language, Member.home_store_id, Member.status,
               CampaignMember.starts_at)
        .join(Member, Member.id == CampaignMember.member_id)
        .where(CampaignMember.campaign_id == campaign.id, CampaignMember.arm == "treatment",
               CampaignMember.message_id.is_(None), CampaignMember.reason.is_(None))
        .order_by(CampaignMember.member_id).limit(limit)).all()
    if not rows:
        return 0
    stores = {s.id: s for s in session.scalars(select(Store))}
    # the members' next-best products for ``{{ picks }}``: one read for the batch
    picks = product_picks(session, [row.member_id for row in rows if row.status == "active"])
    outgoing: list[messaging.Outgoing] = []
    updates: dict[uuid.UUID, dict[str, Any]] = {}
    for row in rows:
        who = _Recipient(row.member_id, row.name, row.card_no, row.phone, row.email,
                         row.language, row.home_store_id, row.status, as_utc(row.starts_at))
        update_row: dict[str, Any] = {"campaign_id": campaign.id, "member_id": who.member_id}
        updates[who.member_id] = update_row
        recipient = who.phone if campaign.channel == "sms" else who.email
        if who.status != "active":
            update_row["reason"] = "member_inactive"
            continue
        if not recipient:
            update_row["reason"] = "no_contact"
            continue
        store = stores.get(who.home_store_id)
        coupon = None
        if campaign.coupon_template_id is not None:
            coupon = _issue_coupon(session, ctx, campaign, who, store)
            if coupon is None:
                update_row["reason"] = "coupon_unavailable"
                continue
            update_row["coupon_code"] = coupon.code
        referral = None
        if campaign.kind == "referral":
            code = offers.referral_code_for(session, clock=ctx.clock, member_id=who.member_id)
            referral = ReferralView(code=code.code, link=referral_link(ctx.settings, code.code))
        outgoing.append(_render(ctx, campaign, who, store, coupon, referral, recipient,
                                picks.get(who.member_id, ())))
    messaging.enqueue(session, clock=ctx.clock, messages=outgoing)
    by_key = messaging.ids_by_key(session, dedupe_keys=[m.dedupe_key for m in outgoing])
    for message in outgoing:
        assert message.member_id is not None
        updates[message.member_id]["message_id"] = by_key.get(message.dedupe_key)
    for values in updates.values():  # by primary key; a missing key keeps its column
        session.execute(update(CampaignMember).where(
            CampaignMember.campaign_id == values["campaign_id"],
            CampaignMember.member_id == values["member_id"]).values(
            {k: v for k, v in values.items() if k not in ("campaign_id", "member_id")}))
    return len(rows)


def _still_running(session: Session, campaign: Campaign) -> bool:
    """Re-read the status: a pause or cancel committed by another request between two
    batches stops the sending."""
    session.refresh(campaign, attribute_names=["status"])
    return campaign.status in ("sending", "recurring")


def _send_all(session: Session, ctx: Sending, campaign: Campaign,
              checkpoint: Checkpoint) -> int:
    handled = 0
    while _still_running(session, campaign) and (
            n := send_pending(session, ctx, campaign, limit=BATCH)) > 0:
        handled += n
        checkpoint()
    return handled


def _queued_count(session: Session, campaign: Campaign) -> int:
    return int(session.scalar(select(func.count()).select_from(CampaignMember).where(
        CampaignMember.campaign_id == campaign.id, CampaignMember.message_id.is_not(None)))
        or 0)


def _local_day(at: datetime, tz: str) -> date:
    return at.astimezone(ZoneInfo(tz)).date()


def _run(session: Session, ctx: Sending, campaign: Campaign, *, run_on: date,
         starts_at: datetime, checkpoint: Checkpoint) -> RunReport:
    """Assign the members new to the campaign, then queue the treatment's messages."""
    before = _queued_count(session, campaign)
    assigned = assign(session, ctx, campaign, run_on=run_on, starts_at=starts_at,
                      checkpoint=checkpoint)
    _send_all(session, ctx, campaign, checkpoint)
    return RunReport(assigned, _queued_count(session, campaign) - before)


def _materialise_one_shot(session: Session, ctx: Sending, campaign: Campaign,
                          checkpoint: Checkpoint) -> RunReport:
    now = ctx.clock.now()
    tz = ctx.settings.default_timezone
    starts_at = max(now, campaign.send_at) if campaign.send_at is not None else now
    campaign.status = "sending"
    session.flush()
    checkpoint()
    report = _run(session, ctx, campaign, run_on=_local_day(now, tz), starts_at=starts_at,
                  checkpoint=checkpoint)
    if _still_running(session, campaign):  # not paused or cancelled meanwhile
        campaign.status = "sent"
    campaign.updated_at, campaign.last_run_on = ctx.clock.now(), _local_day(now, tz)
    session.flush()
    return report


def _weekly_start(ctx: Sending, campaign: Campaign, day: date) -> datetime:
    tz = ZoneInfo(ctx.settings.default_timezone)
    planned = datetime.combine(day, campaign.send_time, tz)
    return max(ctx.clock.now(), as_utc(planned))


def _run_weekly(session: Session, ctx: Sending, campaign: Campaign, day: date,
                checkpoint: Checkpoint) -> RunReport:
    report = _run(session, ctx, campaign, run_on=day,
                  starts_at=_weekly_start(ctx, campaign, day), checkpoint=checkpoint)
    campaign.last_run_on, campaign.updated_at = day, ctx.clock.now()
    session.flush()
    return report


def launch(session: Session, ctx: Sending, *, actor: Principal, campaign_id: uuid.UUID,
           checkpoint: Checkpoint = _no_checkpoint) -> Campaign:
    """Start a draft: its rules are frozen, and it is sent now, scheduled, or set to recur
    (see the module docstring); audited. ``checkpoint`` runs after each batch."""
    _require_writer(actor)
    campaign = get_campaign(session, actor=actor, campaign_id=campaign_id)
    if campaign.status != "draft":
        raise Conflict(f"This campaign is {campaign.status}, not a draft", "campaign_id",
                       code="not_draft")
    now = ctx.clock.now()
    _validate(session, actor, campaign, ctx.renderer, now)
    campaign.launched_at = campaign.updated_at = now
    campaign.status = {"now": "sending", "at": "scheduled", "weekly": "recurring"}[
        campaign.schedule]
    session.flush()
    audit.record(session, clock=ctx.clock, actor=actor, action="campaign.launched",
                 entity_type="campaign", entity_id=campaign.id,
                 details={"schedule": campaign.schedule, "holdout_pct": campaign.holdout_pct,
                          "seed": campaign.seed})
    checkpoint()
    today = _local_day(now, ctx.settings.default_timezone)
    if campaign.schedule == "now" or (
            campaign.schedule == "at" and campaign.send_at is not None
            and _local_day(campaign.send_at, ctx.settings.default_timezone) <= today):
        _materialise_one_shot(session, ctx, campaign, checkpoint)
    elif campaign.schedule == "weekly" and today.weekday() == campaign.weekday:
        _run_weekly(session, ctx, campaign, today, checkpoint)
    return campaign


def run_due(session: Session, ctx: Sending, *, today: date,
            checkpoint: Checkpoint = _no_checkpoint) -> dict[str, int]:
    """The daily job (brand zone, just after midnight): assign and queue scheduled
    campaigns whose day has come, finish interrupted sends, run weekly campaigns whose
    weekday it is. Returns counts for the job log."""
    tz = ctx.settings.default_timezone
    out: Counter[str] = Counter()
    for campaign in list(session.scalars(select(Campaign).where(
            Campaign.status.in_(("scheduled", "sending", "recurring")))
            .order_by(Campaign.created_at))):
        if campaign.status == "scheduled":
            if campaign.send_at is None or _local_day(campaign.send_at, tz) > today:
                continue
            report = _materialise_one_shot(session, ctx, campaign, checkpoint)
        elif campaign.status == "sending":
            report = _materialise_one_shot(session, ctx, campaign, checkpoint)
        else:
            if campaign.weekday != today.weekday() or campaign.last_run_on == today:
                continue
            report = _run_weekly(session, ctx, campaign, today, checkpoint)
        out["campaigns"] += 1
        out.update(report.as_dict())
        checkpoint()
    return dict(out)


# ---------------------------------------------------------------- pause, resume, cancel


def _suppress_queued(session: Session, *, clock: Clock, campaign: Campaign, reason: str) -> int:
    return messaging.suppress_campaign(session, clock=clock, campaign_id=campaign.id,
                                       reason=reason)


def pause(session: Session, *, clock: Clock, actor: Principal,
          campaign_id: uuid.UUID) -> Campaign:
    """Stop sending for now (see the module docstring); audited."""
    _require_writer(actor)
    campaign = get_campaign(session, actor=actor, campaign_id=campaign_id)
    if campaign.status not in ("scheduled", "sending", "sent", "recurring"):
        raise Conflict(f"A {campaign.status} campaign cannot be paused", "campaign_id",
                       code="not_pausable")
    suppressed = _suppress_queued(session, clock=clock, campaign=campaign,
                                  reason="campaign_paused")
    campaign.status = "paused"
    campaign.paused_at = campaign.updated_at = clock.now()
    session.flush()
    audit.record(session, clock=clock, actor=actor, action="campaign.paused",
                 entity_type="campaign", entity_id=campaign.id,
                 details={"suppressed": suppressed})
    return campaign


def resume(session: Session, ctx: Sending, *, actor: Principal, campaign_id: uuid.UUID,
           checkpoint: Checkpoint = _no_checkpoint) -> Campaign:
    """Carry on after a pause: members whose message the pause suppressed are queued again
    (new dedupe key), unsent members are sent, a recurring campaign recurs; audited."""
    _require_writer(actor)
    campaign = get_campaign(session, actor=actor, campaign_id=campaign_id)
    if campaign.status != "paused":
        raise Conflict("Only a paused campaign can be resumed", "campaign_id",
                       code="not_paused")
    paused = messaging.campaign_suppressed(campaign.id, reason="campaign_paused")
    session.execute(update(CampaignMember).where(
        CampaignMember.campaign_id == campaign.id, CampaignMember.message_id.in_(paused))
        .values(message_id=None).execution_options(synchronize_session=False))
    campaign.resumes += 1
    campaign.paused_at = None
    campaign.updated_at = ctx.clock.now()
    assigned = session.scalar(select(func.count()).select_from(CampaignMember).where(
        CampaignMember.campaign_id == campaign.id)) or 0
    if campaign.schedule == "weekly":
        campaign.status = "recurring"
    elif campaign.schedule == "at" and not assigned:
        campaign.status = "scheduled"
    else:
        campaign.status = "sending"
    session.flush()
    audit.record(session, clock=ctx.clock, actor=actor, action="campaign.resumed",
                 entity_type="campaign", entity_id=campaign.id)
    checkpoint()
    if campaign.status in ("sending", "recurring"):
        _send_all(session, ctx, campaign, checkpoint)
    if campaign.status == "sending":
        campaign.status = "sent"
    session.flush()
    return campaign


def cancel(session: Session, *, clock: Clock, actor: Principal,
           campaign_id: uuid.UUID) -> Campaign:
    """Stop for good: queued messages are suppressed (``campaign_cancelled``), unsent
    members stay unsent, the results stay readable; audited."""
    _require_writer(actor)
    campaign = get_campaign(session, actor=actor, campaign_id=campaign_id)
    if campaign.status == "cancelled":
        return campaign
    suppressed = _suppress_queued(session, clock=clock, campaign=campaign,
                                  reason="campaign_cancelled")
    campaign.status = "cancelled"
    campaign.cancelled_at = campaign.updated_at = clock.now()
    session.flush()
    audit.record(session, clock=clock, actor=actor, action="campaign.cancelled",
                 entity_type="campaign", entity_id=campaign.id,
                 details={"suppressed": suppressed})
    return campaign


def send_test(session: Session, ctx: Sending, *, actor: Principal, campaign_id: uuid.UUID,
              to: str, language: str | None) -> messaging.Outgoing:
    """Queue the campaign's message, rendered with sample data, to a staff phone or
    e-mail. It names no member, so the gate lets it through at once, and it is not part of
    the results (they count the assigned members' messages only)."""
    from patron.members import rules as member_rules

    _require_writer(actor)
    campaign = get_campaign(session, actor=actor, campaign_id=campaign_id)
    if campaign.channel == "sms":
        recipient = member_rules.normalise_phone(to, ctx.settings.default_region, field="to")
    else:
        recipient = to.strip()
        if "@" not in recipient or recipient.startswith("@") or recipient.endswith("@"):
            raise ValidationFailed("Give an e-mail address", "to")
    lang = language or _content_language(campaign, None, ctx.settings.default_language)
    if lang not in campaign.messages:
        raise ValidationFailed(f"The campaign has no {lang} message", "language")
    context = _preview_context(language=lang,
                               with_coupon=campaign.coupon_template_id is not None,
                               referral=campaign.kind == "referral")
    context = _with_text(context, CampaignMessage.model_validate(campaign.messages[lang]))
    brand = BrandView(name=ctx.settings.brand_name, currency=ctx.settings.currency)
    context = CampaignContext(**{f.name: getattr(context, f.name) for f in fields(context)
                                 if f.name != "brand"}, brand=brand)
    rendered = ctx.renderer.render(TEMPLATE, language=lang, context=context)
    email = campaign.channel == "email"
    outgoing = messaging.Outgoing(
        dedupe_key=f"campaign:{campaign.id.hex}:test:{new_id().hex}", channel=campaign.channel,
        purpose="marketing", template=TEMPLATE, language=rendered.language,
        recipient=recipient, body=rendered.text if email else rendered.sms_text,
        subject=rendered.subject if email else "", html=rendered.html if email else None,
        segments=None if email else rendered.segments, campaign_id=campaign.id,
        payload={"test": True, "campaign_id": str(campaign.id),
                 **({"unsubscribe_url": rendered.unsubscribe_url} if email
                    else {"sms_params": rendered.sms_params})})
    messaging.enqueue(session, clock=ctx.clock, messages=[outgoing])
    audit.record(session, clock=ctx.clock, actor=actor, action="campaign.test_sent",
                 entity_type="campaign", entity_id=campaign.id, details={"to": recipient})
    return outgoing


def message_id_of(session: Session, *, dedupe_key: str) -> uuid.UUID:
    """The id of the message queued under ``dedupe_key``."""
    found = messaging.ids_by_key(session, dedupe_keys=[dedupe_key]).get(dedupe_key)
    if found is None:
        raise NotFound("No such message", "dedupe_key")
    return found


# ---------------------------------------------------------------- plays


def create_from_play(session: Session, *, clock: Clock, actor: Principal, code: str,
                     data: PlayCampaignCreate, renderer: TemplateRenderer) -> Campaign:
    """A saved segment and a draft campaign from one of the proven plays (``plays``).
    A manager's play is limited to their stores (or the ones they name of theirs)."""
    _require_writer(actor)
    play = plays_catalogue.get(code)
    rule = segments.parse_rules(play.rules)
    stores = set(data.store_ids) if data.store_ids else None
    if stores is None and not actor.all_stores:
        stores = set(actor.store_ids)
    if stores:
        if not actor.all_stores and not stores <= actor.store_ids:
            raise PermissionDenied("You can only target your own stores")
        rule = segments.restrict_to_stores(rule, stores)
    name = data.name or play.name
    segment = create_segment(session, clock=clock, actor=actor, data=SegmentCreate(
        name=name, description=play.description, rules=segments.dump_rules(rule)))
    return create_campaign(session, clock=clock, actor=actor, renderer=renderer,
                           data=CampaignCreate.model_validate({
                               "name": name, "kind": play.kind, "segment_id": segment.id,
                               "channel": data.channel, "messages": play.messages,
                               "coupon_template_id": data.coupon_template_id,
                               "schedule": play.schedule, "weekday": play.weekday,
                               "holdout_pct": data.holdout_pct,
                               "attribution_days": play.attribution_days}))


# ---------------------------------------------------------------- results


def _interval(value: stats.Interval | None) -> IntervalRead | None:
    return IntervalRead(estimate=value.estimate, low=value.low, high=value.high) \
        if value is not None else None


def _verdict(value: stats.Verdict) -> VerdictRead:
    return VerdictRead(code=value.code, text=value.text)


def _outcomes(session: Session, campaign: Campaign) -> dict[str, tuple[list[bool], list[int]]]:
    """Per arm: whether each member bought in their window, and their net revenue there."""
    in_window = and_(Sale.member_id == CampaignMember.member_id,
                     Sale.occurred_at >= CampaignMember.starts_at,
                     Sale.occurred_at < CampaignMember.ends_at)
    purchases = select(func.count(Sale.id)).where(
        in_window, Sale.status == "completed").scalar_subquery()
    revenue = select(func.coalesce(func.sum(Sale.total_minor - Sale.refunded_minor), 0)).where(
        in_window).scalar_subquery()
    out: dict[str, tuple[list[bool], list[int]]] = {"treatment": ([], []), "control": ([], [])}
    for arm, bought, spent in session.execute(
            select(CampaignMember.arm, purchases, revenue).where(
                CampaignMember.campaign_id == campaign.id,
                CampaignMember.arm.in_(("treatment", "control")))):
        out[arm][0].append(int(bought) > 0)
        out[arm][1].append(int(spent))
    return out


def _coupons(session: Session, campaign: Campaign) -> tuple[int, int, int]:
    """Campaign coupons issued, redeemed, and the discount they gave (any time)."""
    issued = int(session.scalar(select(func.count()).select_from(CampaignMember).where(
        CampaignMember.campaign_id == campaign.id,
        CampaignMember.coupon_code.is_not(None))) or 0)
    redeemed, discount = session.execute(
        select(func.count(CouponRedemption.id),
               func.coalesce(func.sum(CouponRedemption.discount_minor), 0))
        .select_from(CampaignMember)
        .join(Coupon, Coupon.code == CampaignMember.coupon_code)
        .join(CouponRedemption, CouponRedemption.coupon_id == Coupon.id)
        .where(CampaignMember.campaign_id == campaign.id)).one()
    return issued, int(redeemed), int(discount)


def _delivery(session: Session, campaign: Campaign) -> tuple[DeliveryRead, int]:
    """Where every assigned member went, and the message cost in minor units."""
    excluded: Counter[str] = Counter()
    not_sent: Counter[str] = Counter()
    for arm, reason, has_message, n in session.execute(
            select(CampaignMember.arm, CampaignMember.reason,
                   CampaignMember.message_id.is_not(None), func.count())
            .where(CampaignMember.campaign_id == campaign.id)
            .group_by(CampaignMember.arm, CampaignMember.reason,
                      CampaignMember.message_id.is_not(None))):
        if arm == "excluded":
            excluded[reason or "unknown"] += int(n)
        elif arm == "treatment" and not has_message:
            pending = {"cancelled": "campaign_cancelled",
                       "paused": "campaign_paused"}.get(campaign.status, "pending")
            not_sent[reason or pending] += int(n)
    statuses: Counter[str] = Counter()
    suppressed: Counter[str] = Counter()
    billed = 0
    units = func.coalesce(Message.segments, 1) if campaign.channel == "sms" else 1
    for status, reason, n, billed_units in session.execute(
            select(Message.status, Message.reason, func.count(), func.sum(units))
            .select_from(CampaignMember)
            .join(Message, Message.id == CampaignMember.message_id)
            .where(CampaignMember.campaign_id == campaign.id)
            .group_by(Message.status, Message.reason)):
        statuses[status] += int(n)
        if status == "suppressed":
            suppressed[reason or "unknown"] += int(n)
        if status in BILLED:
            billed += int(billed_units or 0)
    total = int(session.scalar(select(func.count()).select_from(CampaignMember).where(
        CampaignMember.campaign_id == campaign.id)) or 0)
    unit_cost = campaign.sms_cost_minor if campaign.channel == "sms" else campaign.email_cost_minor
    return DeliveryRead(segment_members=total, excluded=dict(excluded),
                        treatment_not_sent=dict(not_sent), messages=dict(statuses),
                        suppressed=dict(suppressed), billed_units=billed), billed * unit_cost


def _referrals(session: Session, campaign: Campaign, members: dict[str, int]) -> ReferralRead:
    """Referrals made by each arm's members in their windows, their first purchases and
    the rewards paid (offers' attributions and rewards)."""
    window = and_(ReferralAttribution.referrer_member_id == CampaignMember.member_id,
                  ReferralAttribution.attributed_at >= CampaignMember.starts_at,
                  ReferralAttribution.attributed_at < CampaignMember.ends_at)
    arms: dict[str, ReferralArmRead] = {}
    for arm in ("treatment", "control"):
        base = (select(CampaignMember.member_id.label("referrer"),
                       ReferralAttribution.referred_member_id.label("referred"))
                .join(ReferralAttribution, window)
                .where(CampaignMember.campaign_id == campaign.id, CampaignMember.arm == arm)
                .subquery())
        referrers, referred = session.execute(
            select(func.count(func.distinct(base.c.referrer)), func.count())
            .select_from(base)).one()
        first, spent, rewarded, reward_coupons = session.execute(
            select(func.count(ReferralReward.id),
                   func.coalesce(func.sum(ReferralReward.purchase_minor), 0),
                   func.coalesce(func.sum(case((ReferralReward.outcome == "rewarded", 1),
                                               else_=0)), 0),
                   func.count(ReferralReward.referrer_coupon_id)
                   + func.count(ReferralReward.referred_coupon_id))
            .join(base, base.c.referred == ReferralReward.referred_member_id)).one()
        reward_ids = select(ReferralReward.referrer_coupon_id).join(
            base, base.c.referred == ReferralReward.referred_member_id).union_all(
            select(ReferralReward.referred_coupon_id).join(
                base, base.c.referred == ReferralReward.referred_member_id))
        used, discount = session.execute(
            select(func.count(CouponRedemption.id),
                   func.coalesce(func.sum(CouponRedemption.discount_minor), 0))
            .where(CouponRedemption.coupon_id.in_(reward_ids))).one()
        arms[arm] = ReferralArmRead(
            members=members.get(arm, 0), referrers=int(referrers), referred_members=int(referred),
            first_purchases=int(first), first_purchase_minor=int(spent),
            rewarded=int(rewarded), reward_coupons=int(reward_coupons),
            reward_coupons_redeemed=int(used), reward_discount_minor=int(discount))
    t, c = arms["treatment"], arms["control"]
    uplift = None
    if t.members >= stats.MIN_ARM and c.members >= stats.MIN_ARM:
        uplift = stats.newcombe_difference(t.referrers, t.members, c.referrers, c.members,
                                           CONFIDENCE)
    return ReferralRead(treatment=t, control=c, referrer_uplift=_interval(uplift),
                        verdict=_verdict(stats.verdict(uplift, what="share of members who "
                                                       "referred a friend", unit=" pt",
                                                       scale=100)))


METHODS = {
    "design": "Randomised holdout, seeded hash of (seed, member id); analysed as assigned "
              "(intention to treat).",
    "conversion": "Difference of proportions with Newcombe's hybrid score interval "
                  "(Wilson intervals per arm); relative uplift by the Katz log interval.",
    "revenue_per_member": "Difference of means with Welch's t interval "
                          "(Welch-Satterthwaite df); relative uplift by the delta method "
                          "on the log ratio.",
    "economics": "Incremental revenue = revenue uplift per member x treatment members; "
                 "margin = that x margin_pct; cost = billed messages x unit price + coupon "
                 "discounts; ROI = (margin - cost) / cost.",
}


def results(session: Session, *, clock: Clock, actor: Principal, campaign_id: uuid.UUID,
            currency: str = "CNY") -> CampaignResults:
    """The campaign's results so far (see the module docstring and ``stats``); verdicts
    quote money in major units of ``currency``."""
    from patron.core.money import minor_digits

    campaign = get_campaign(session, actor=actor, campaign_id=campaign_id)
    now = clock.now()
    outcomes = _outcomes(session, campaign)
    treatment = stats.summarise(*outcomes["treatment"])
    control = stats.summarise(*outcomes["control"])
    comparison = stats.compare(treatment, control, CONFIDENCE)
    issued, redeemed, discount = _coupons(session, campaign)
    delivery, message_cost = _delivery(session, campaign)
    money = stats.economics(comparison, margin_pct=campaign.margin_pct,
                            message_cost_minor=message_cost, coupon_cost_minor=discount)
    latest_end = session.scalar(select(func.max(CampaignMember.ends_at)).where(
        CampaignMember.campaign_id == campaign.id))
    revenue_verdict = stats.verdict(comparison.revenue_uplift_minor,
                                    what="revenue per member", unit=f" {currency}",
                                    scale=10.0 ** -minor_digits(currency))
    conversion_verdict = stats.verdict(comparison.conversion_uplift, what="conversion rate",
                                       unit=" pt", scale=100)

    def arm_read(summary: stats.ArmSummary, treated: bool) -> ArmRead:
        return ArmRead(members=summary.members, converted=summary.converted,
                       conversion_rate=summary.conversion_rate,
                       revenue_minor=summary.revenue_minor,
                       revenue_per_member_minor=summary.revenue_per_member_minor,
                       revenue_sd_minor=summary.revenue_sd_minor,
                       coupons_issued=issued if treated else 0,
                       coupons_redeemed=redeemed if treated else 0,
                       coupon_discount_minor=discount if treated else 0)

    referral = None
    if campaign.kind == "referral":
        referral = _referrals(session, campaign, {"treatment": treatment.members,
                                                  "control": control.members})
    return CampaignResults(
        campaign_id=campaign.id, status=campaign.status, computed_at=now,
        window_complete=latest_end is not None and as_utc(latest_end) <= now,
        attribution_days=campaign.attribution_days, confidence=CONFIDENCE, methods=METHODS,
        treatment=arm_read(treatment, True), control=arm_read(control, False),
        uplift=UpliftRead(conversion=_interval(comparison.conversion_uplift),
                          conversion_relative=_interval(comparison.conversion_relative),
                          revenue_per_member_minor=_interval(comparison.revenue_uplift_minor),
                          revenue_relative=_interval(comparison.revenue_relative),
                          revenue_df=comparison.revenue_df),
        verdict=_verdict(revenue_verdict), conversion_verdict=_verdict(conversion_verdict),
        delivery=delivery,
        economics=EconomicsRead(
            incremental_revenue_minor=_interval(money.incremental_revenue_minor),
            incremental_margin_minor=_interval(money.incremental_margin_minor),
            margin_pct=campaign.margin_pct, message_cost_minor=money.message_cost_minor,
            coupon_cost_minor=money.coupon_cost_minor, cost_minor=money.cost_minor,
            roi=_interval(money.roi)),
        referral=referral)


# ---------------------------------------------------------------- for the admin pages
# Added with the web marketing pages (web/pages/marketing.py): reads that the builder and the
# campaign pages need and the API does not (yet) offer. Read-only.


@dataclass(frozen=True)
class ArmPreview:
    """Who a draft would reach if launched now: the segment, the members excluded before
    the draw (by reason), and the arms the campaign's own seed would put the others in."""

    segment_members: int
    excluded: dict[str, int]
    treatment: int
    control: int


def preview_arms(session: Session, *, clock: Clock, actor: Principal, campaign_id: uuid.UUID,
                 tz: str) -> ArmPreview:
    """The arms a launch now would assign: the same query, exclusions and seeded draw as
    :func:`assign`, so the numbers are exact for the current data, not an estimate."""
    campaign = get_campaign(session, actor=actor, campaign_id=campaign_id)
    rule = segments.parse_rules(campaign.rules)
    scope = scope_at(session, now=clock.now(), tz=tz)
    wanted = segments.member_ids(session, rule, scope)
    counts: Counter[str] = Counter()
    excluded: Counter[str] = Counter()
    for start in range(0, len(wanted), ASSIGN_BATCH):
        chunk = wanted[start:start + ASSIGN_BATCH]
        for member_id, phone, email, sms_ok, email_ok in session.execute(
                select(Member.id, Member.phone, Member.email, Member.sms_consent,
                       Member.email_consent).where(Member.id.in_(chunk))):
            reason = _exclusion(campaign.channel, phone, email, sms_ok, email_ok)
            if reason is not None:
                excluded[reason] += 1
            else:
                counts[arm_of(draw(campaign.seed, member_id), campaign.holdout_pct)] += 1
    return ArmPreview(segment_members=len(wanted), excluded=dict(excluded),
                      treatment=counts["treatment"], control=counts["control"])


@dataclass(frozen=True)
class ConversionSeries:
    """Cumulative conversion per arm by day of the attribution window: ``days[i]`` days
    after a member's window opened (0: the first 24 hours), the share of the arm's members
    who had bought by the end of that day. Only days that have begun are listed; once the
    window is over, the last values are the results' conversion rates."""

    days: list[int]
    treatment: list[float]
    control: list[float]


def conversion_series(session: Session, *, clock: Clock, actor: Principal,
                      campaign_id: uuid.UUID) -> ConversionSeries:
    """Each arm's cumulative conversion over the days since launch (see
    :class:`ConversionSeries`): one query for the first purchase of each converted member
    in their window, counted by whole days after the window opened."""
    campaign = get_campaign(session, actor=actor, campaign_id=campaign_id)
    first_start = session.scalar(select(func.min(CampaignMember.starts_at)).where(
        CampaignMember.campaign_id == campaign.id,
        CampaignMember.arm.in_(("treatment", "control"))))
    if first_start is None:
        return ConversionSeries([], [], [])
    elapsed = clock.now() - as_utc(first_start)
    if elapsed < timedelta(0):
        return ConversionSeries([], [], [])
    shown = min(campaign.attribution_days, elapsed // timedelta(days=1) + 1)
    members = arm_counts(session, campaign_ids=[campaign.id]).get(campaign.id, {})
    first_purchase = func.min(Sale.occurred_at)
    converted: dict[str, Counter[int]] = {"treatment": Counter(), "control": Counter()}
    for arm, starts_at, bought_at in session.execute(
            select(CampaignMember.arm, CampaignMember.starts_at, first_purchase)
            .join(Sale, and_(Sale.member_id == CampaignMember.member_id,
                             Sale.occurred_at >= CampaignMember.starts_at,
                             Sale.occurred_at < CampaignMember.ends_at,
                             Sale.status == "completed"))
            .where(CampaignMember.campaign_id == campaign.id,
                   CampaignMember.arm.in_(("treatment", "control")))
            .group_by(CampaignMember.member_id, CampaignMember.arm, CampaignMember.starts_at)):
        day = (as_utc(bought_at) - as_utc(starts_at)) // timedelta(days=1)
        converted[arm][day] += 1
    days = list(range(shown))

    def cumulative(arm: str) -> list[float]:
        n = members.get(arm, 0)
        total, out = 0, []
        for day in days:
            total += converted[arm][day]
            out.append(total / n if n else 0.0)
        return out

    return ConversionSeries(days, cumulative("treatment"), cumulative("control"))


def tag_choices(session: Session, *, actor: Principal, limit: int = 500) -> list[str]:
    """The tags members carry (a manager: members of their stores), for the builder's
    menu; at most ``limit``, alphabetically."""
    require_staff(actor)
    stmt = select(MemberTag.tag).distinct().order_by(MemberTag.tag).limit(limit)
    stores = actor.visible_store_ids()
    if stores is not None:
        stmt = stmt.join(Member, Member.id == MemberTag.member_id).where(
            Member.home_store_id.in_(sorted(stores)))
    return list(session.scalars(stmt))


# ---------------------------------------------------------------- merge


def _merge_assignments(session: Session, _clock: Clock, survivor_id: uuid.UUID,
                       duplicate_id: uuid.UUID) -> int:
    """A merged duplicate's assignments move to the survivor, except in campaigns the
    survivor is in already (one row per campaign and member): there the duplicate's row
    stays, so no campaign loses a member it counted."""
    theirs = select(CampaignMember.campaign_id).where(CampaignMember.member_id == survivor_id)
    result = session.execute(
        update(CampaignMember).where(CampaignMember.member_id == duplicate_id,
                                     CampaignMember.campaign_id.not_in(theirs))
        .values(member_id=survivor_id).execution_options(synchronize_session=False))
    return int(getattr(result, "rowcount", 0) or 0)


def member_segments(session: Session, member_id: uuid.UUID, among: frozenset[uuid.UUID],
                    now: datetime, tz: str) -> frozenset[uuid.UUID]:
    """Which of the saved segments ``among`` the member is in at ``now`` (promotions limited
    to segments ask at the till): each segment's rules compiled as for a count, narrowed to
    the one member, so the answer is the one a campaign would get."""
    found: set[uuid.UUID] = set()
    rows = list(session.scalars(select(Segment).where(Segment.id.in_(sorted(among)),
                                                      Segment.archived_at.is_(None))))
    if not rows:
        return frozenset()
    scope = scope_at(session, now=now, tz=tz)
    for segment in rows:
        rule = segments.parse_rules(segment.rules)
        if segment.store_ids:  # a manager's segment covers their stores only
            rule = segments.restrict_to_stores(rule, [uuid.UUID(s) for s in segment.store_ids])
        hit = session.scalar(select(Member.id).where(
            Member.id == member_id, segments.member_filter(rule, scope)))
        if hit is not None:
            found.add(segment.id)
    return frozenset(found)


promotion_service.SEGMENTS = member_segments
members.MERGE_HOOKS["campaign_members"] = _merge_assignments


__all__ = [
    "BATCH",
    "ArmPreview",
    "CampaignContext",
    "ConversionSeries",
    "ReferralView",
    "SendContext",
    "Sending",
    "archive_segment",
    "arm_counts",
    "arm_of",
    "assign",
    "cancel",
    "conversion_series",
    "count_members",
    "create_campaign",
    "create_from_play",
    "create_segment",
    "draw",
    "get_campaign",
    "get_segment",
    "launch",
    "list_campaigns",
    "list_segments",
    "pause",
    "preview_arms",
    "results",
    "resume",
    "run_due",
    "sample_members",
    "scope_at",
    "send_context",
    "send_pending",
    "send_test",
    "tag_choices",
    "update_campaign",
    "update_segment",
]
