"""Customer-care rules: what patron says to members between visits, and when.

Event rules answer something that just happened (the worker calls them with the outbox
event): a receipt after a sale, congratulations on a higher tier, a warning before points
or a paid membership run out. Daily rules look at each store's members on the store's
local day: birthdays (solar and lunar), anniversaries, holidays, replenishment reminders
timed to each member's own repurchase cycle, and win-back of lapsing valuable members
(with a callback task for the staff of their home store).

Each rule fires at most once per member and occasion: a ``care_occasions`` row (unique on
rule, member and occasion) is written in the same transaction as the coupon and the queued
message, so a crash or a re-run finds it and does nothing. Whether the message may actually
go (consent, age, quiet hours, weekly cap) is decided at send time by messaging.gate.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import numpy as np
from sqlalchemy import and_, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from patron.auth import audit
from patron.auth.enums import Role
from patron.auth.principal import Principal, require_role
from patron.care import calendar, holidays, replenishment
from patron.care.models import CareOccasion, CareRule
from patron.catalog import queries as catalog
from patron.core.clock import Clock
from patron.core.errors import NotFound, ValidationFailed
from patron.core.events import OutboxEvent
from patron.core.ids import new_id
from patron.loyalty import membership
from patron.loyalty import service as loyalty
from patron.members.enums import Calendar, MemberStatus
from patron.members.models import Anniversary, Member, Store
from patron.messaging import service as messaging
from patron.messaging.templates import (
    AnniversaryView,
    BrandView,
    CouponView,
    HolidayView,
    Links,
    MemberView,
    MessageContext,
    PointsExpiryView,
    RenewalView,
    ReplenishmentView,
    SaleDiscountView,
    SaleLineView,
    SaleView,
    StoreView,
    TemplateRenderer,
    TierChangeView,
    WinbackView,
)
from patron.offers import service as offers
from patron.offers.enums import CouponSource
from patron.sales import queries as sales_queries
from patron.wallet import service as wallet

#: Every rule with its defaults; an owner switches rules on and changes these per brand.
RULES: dict[str, dict[str, Any]] = {
    "receipt": {"enabled": True, "channels": ["email"], "requires_consent": False},
    "birthday": {"enabled": True, "channels": ["sms", "email"], "days_before": 0,
                 "coupon_template_id": None},
    "anniversary": {"enabled": False, "channels": ["sms", "email"], "days_before": 0,
                    "membership": True, "coupon_template_id": None},
    "holiday": {"enabled": False, "channels": ["sms", "email"], "days_before": 0,
                "holidays": ["spring_festival", "mid_autumn"], "coupon_template_id": None},
    "points_expiring": {"enabled": True, "channels": ["sms", "email"]},
    "tier_upgraded": {"enabled": True, "channels": ["sms", "email"]},
    "membership_renewal": {"enabled": True, "channels": ["sms", "email"]},
    "replenishment": {"enabled": True, "channels": ["sms", "email"], "days_before": 3,
                      "prior_strength": 2.0, "history_days": 365, "coupon_template_id": None},
    "winback": {"enabled": True, "channels": ["sms", "email"], "days_away": 90,
                "min_spend_minor": 100_000, "spend_window_days": 365, "repeat_after_days": 180,
                "coupon_template_id": None, "callback": True, "callback_due_days": 3},
    "survey": {"enabled": False, "channels": ["sms", "email"], "after_sale": True,
               "every_days": 30},
    "complaint_followup": {"enabled": True, "channels": ["sms", "email"], "survey": True},
}
CHANNELS = ("sms", "email")


class RendererContext(Protocol):
    """What the rules need from the worker (see jobs.worker.WorkerContext)."""

    @property
    def renderer(self) -> TemplateRenderer: ...
    @property
    def channel_kinds(self) -> set[str]: ...
    @property
    def settings(self) -> Any: ...
    @property
    def clock(self) -> Clock: ...


# ---------------------------------------------------------------- configuration


def rule_config(session: Session, code: str, store_id: uuid.UUID | None = None
                ) -> dict[str, Any]:
    """A rule's settings: defaults, then the brand's, then the store's overrides."""
    if code not in RULES:
        raise NotFound(f"No care rule {code!r}", "code")
    config = dict(RULES[code])
    row = session.get(CareRule, code)
    if row is not None:
        config.update(row.config)
        config["enabled"] = row.enabled
        if store_id is not None:
            config.update(row.store_overrides.get(str(store_id), {}))
    return config


def set_rule(session: Session, *, clock: Clock, actor: Principal, code: str, enabled: bool,
             config: dict[str, Any], store_id: uuid.UUID | None = None) -> dict[str, Any]:
    """Switch a rule on or off and change its settings (brand-wide or for one store)."""
    require_role(actor, Role.MANAGER if store_id else Role.OWNER, users_only=True)
    if code not in RULES:
        raise NotFound(f"No care rule {code!r}", "code")
    for key, value in config.items():
        if key not in RULES[code] or key == "enabled":
            raise ValidationFailed(f"Rule {code!r} has no setting {key!r}", f"config.{key}")
        default = RULES[code][key]
        if key == "channels":
            if not isinstance(value, list) or not value or any(c not in CHANNELS for c in value):
                raise ValidationFailed("channels is a non-empty list of sms and email",
                                       "config.channels")
        elif key == "holidays":
            if not isinstance(value, list):
                raise ValidationFailed("holidays is a list of holiday codes", "config.holidays")
            holidays.holidays_between(date(2026, 1, 1), date(2026, 1, 2), codes=value)
        elif key.endswith("_template_id"):
            if value is not None:
                try:
                    offers.get_template(session, template_id=uuid.UUID(str(value)))
                except ValueError:
                    raise ValidationFailed("Not a coupon template id", f"config.{key}") from None
        elif isinstance(default, bool):
            if not isinstance(value, bool):
                raise ValidationFailed(f"{key} is true or false", f"config.{key}")
        elif isinstance(default, int | float) and (
                not isinstance(value, int | float) or isinstance(value, bool) or value < 0):
            raise ValidationFailed(f"{key} is a number of at least 0", f"config.{key}")
    row = session.get(CareRule, code)
    if row is None:
        row = CareRule(code=code, enabled=RULES[code]["enabled"], config={},
                       store_overrides={}, updated_at=clock.now())
        session.add(row)
    if store_id is None:
        row.enabled = enabled
        row.config = {**row.config, **config}
    else:
        overrides = dict(row.store_overrides)
        overrides[str(store_id)] = {**overrides.get(str(store_id), {}), **config,
                                    "enabled": enabled}
        row.store_overrides = overrides
    row.updated_at = clock.now()
    session.flush()
    audit.record(session, clock=clock, actor=actor, action="care.rule_changed",
                 entity_type="care_rule", entity_id=code,
                 details={"enabled": enabled, "store_id": str(store_id) if store_id else None,
                          **{k: str(v) for k, v in config.items()}})
    return rule_config(session, code, store_id)


# ---------------------------------------------------------------- building one message


def member_token(secret: str, member_id: uuid.UUID) -> str:
    """The signed token of a member's self-service link."""
    mac = hmac.new(secret.encode(), f"member:{member_id.hex}".encode(), hashlib.sha256)
    return f"{member_id.hex}.{mac.hexdigest()[:32]}"


def _links(ctx: RendererContext, member: Member, channel: str, marketing: bool,
           survey: str | None = None) -> Links:
    secret = ctx.settings.secret_key.get_secret_value()
    base = ctx.settings.public_url.rstrip("/")
    return Links(self_service=f"{base}/m/{member_token(secret, member.id)}",
                 unsubscribe=f"{base}/u/{messaging.unsubscribe_token(secret, member.id, channel)}"
                 if marketing else None,
                 survey=survey)


def _member_view(session: Session, ctx: RendererContext, member: Member, *,
                 balances: bool) -> MemberView:
    if not balances:
        return MemberView(name=member.name, card_no=member.card_no)
    tier = loyalty.member_tier(session, member_id=member.id)
    points = loyalty.balance(session, clock=ctx.clock, member_id=member.id)
    return MemberView(name=member.name, card_no=member.card_no,
                      tier=tier.name if tier else "", points_balance=points.available,
                      wallet_balance_minor=wallet.balance(session,
                                                          member_id=member.id).total_minor)


def _store_view(store: Store) -> StoreView:
    return StoreView(name=store.name, phone=store.phone or "", address=store.address,
                     timezone=store.timezone)


def _recipient(member: Member, channel: str) -> str | None:
    return member.phone if channel == "sms" else member.email if channel == "email" else None


def _channel(ctx: RendererContext, member: Member, config: dict[str, Any]) -> str | None:
    """The first of the rule's channels that is configured and that the member can get."""
    for channel in config.get("channels", []):
        if channel in ctx.channel_kinds and _recipient(member, channel):
            return str(channel)
    return None


@dataclass
class Occasion:
    """One thing to say to one member: the rule, the occasion key and the template parts."""

    rule: str
    member: Member
    store: Store
    occasion: str
    template: str
    parts: dict[str, Any]
    balances: bool = False
    coupon_template_id: str | None = None
    requires_consent: bool = False
    survey_link: str | None = None


def _claim_occasion(session: Session, clock: Clock, rule: str, member_id: uuid.UUID,
                    occasion: str) -> uuid.UUID | None:
    """Record that this occasion is being served; None if it already was."""
    dialect = session.get_bind().dialect.name
    stmt: Any = postgresql.insert(CareOccasion) if dialect == "postgresql" \
        else sqlite.insert(CareOccasion)
    stmt = stmt.values(id=new_id(), rule=rule, member_id=member_id, occasion=occasion[:100],
                       created_at=clock.now()).on_conflict_do_nothing(
        index_elements=["rule", "member_id", "occasion"]).returning(CareOccasion.id)
    return session.execute(stmt).scalar()


def serve(session: Session, ctx: RendererContext, item: Occasion) -> uuid.UUID | None:
    """Serve one occasion once: record it, issue its coupon, render and queue the message.

    Returns the queued message's id, or None when the occasion was already served or the
    member can't be reached on any of the rule's channels (nothing is recorded then, so a
    member who adds an e-mail address later is still greeted next time).
    """
    config_channel = _channel(ctx, item.member, {"channels": item.parts.pop("_channels")})
    if config_channel is None:
        return None
    occasion_id = _claim_occasion(session, ctx.clock, item.rule, item.member.id, item.occasion)
    if occasion_id is None:
        return None
    coupon_view = None
    code = None
    if item.coupon_template_id:
        coupon = offers.issue_coupons(
            session, clock=ctx.clock, actor=None, template_id=uuid.UUID(item.coupon_template_id),
            member_id=item.member.id,
            source=CouponSource.BIRTHDAY if item.rule == "birthday" else CouponSource.CARE,
            source_ref=f"{item.rule}:{item.occasion}")[0]
        template = offers.get_template(session, template_id=coupon.template_id)
        tz = ZoneInfo(item.store.timezone)
        coupon_view = CouponView(name=template.name, code=coupon.code,
                                 valid_until=coupon.valid_until.astimezone(tz).date())
        code = coupon.code
    spec = ctx.renderer.spec(item.template)
    marketing = spec.purpose.value == "marketing"
    context = MessageContext(
        member=_member_view(session, ctx, item.member, balances=item.balances),
        store=_store_view(item.store),
        brand=BrandView(name=ctx.settings.brand_name, currency=ctx.settings.currency),
        links=_links(ctx, item.member, config_channel, marketing, item.survey_link),
        coupon=coupon_view, **item.parts)
    language = item.member.language or ctx.settings.default_language
    rendered = ctx.renderer.render(item.template, language=language, context=context)
    recipient = _recipient(item.member, config_channel)
    assert recipient is not None
    payload: dict[str, Any] = {"rule": item.rule, "occasion": item.occasion,
                               "requires_consent": item.requires_consent}
    if config_channel == "email":
        payload["recipient_name"] = item.member.name
        payload["unsubscribe_url"] = rendered.unsubscribe_url
        body, subject, html = rendered.text, rendered.subject, rendered.html
    else:
        payload["sms_params"] = rendered.sms_params
        body, subject, html = rendered.sms_text, "", None
    ids = messaging.enqueue(session, clock=ctx.clock, messages=[messaging.Outgoing(
        dedupe_key=f"care:{item.rule}:{item.member.id.hex}:{item.occasion}",
        channel=config_channel, purpose=spec.purpose.value, template=item.template,
        language=rendered.language, recipient=recipient, body=body, subject=subject,
        html=html, segments=rendered.segments if config_channel == "sms" else None,
        member_id=item.member.id, store_id=item.store.id, payload=payload)])
    occasion_row = session.get(CareOccasion, occasion_id)
    if occasion_row is not None:
        occasion_row.message_id = ids[0] if ids else None
        occasion_row.coupon_code = code
    return ids[0] if ids else None


def _occasion(session: Session, rule: str, member: Member, store: Store | None, occasion: str,
              template: str, parts: dict[str, Any], config: dict[str, Any], **kw: Any
              ) -> Occasion | None:
    home = store or session.get(Store, member.home_store_id)
    if home is None:
        return None
    return Occasion(rule=rule, member=member, store=home, occasion=occasion, template=template,
                    parts={**parts, "_channels": list(config.get("channels", []))},
                    coupon_template_id=config.get("coupon_template_id"), **kw)


def _active_member(session: Session, member_id: Any) -> Member | None:
    if not member_id:
        return None
    member = session.get(Member, uuid.UUID(str(member_id)))
    return member if member is not None and member.status == MemberStatus.ACTIVE.value else None


# ---------------------------------------------------------------- event rules


def on_sale_completed(session: Session, ctx: RendererContext, event: OutboxEvent) -> None:
    """The electronic receipt (电子账单): amount, discounts, points earned and balance,
    wallet balance."""
    member = _active_member(session, event.payload.get("member_id"))
    if member is None or event.store_id is None:
        return
    config = rule_config(session, "receipt", event.store_id)
    if not config["enabled"]:
        return
    sale = sales_queries.sale(session, sale_id=uuid.UUID(event.payload["sale_id"]))
    store = session.get(Store, event.store_id)
    if sale is None or store is None:
        return
    products = {p.id: p for p in catalog.find_products(
        session, ids={ln.product_id for ln in sale.lines})}
    view = SaleView(
        receipt_no=sale.receipt_no, occurred_at=sale.occurred_at,
        subtotal_minor=sale.subtotal_minor, discount_minor=sale.discount_minor,
        total_minor=sale.total_minor, points_earned=sale.points_earned,
        points_redeemed=sale.points_redeemed,
        wallet_paid_minor=sum(p.amount_minor for p in sale.payments if p.method == "wallet"),
        lines=tuple(SaleLineView(name=products[ln.product_id].name, quantity=ln.quantity,
                                 total_minor=ln.total_minor) for ln in sale.lines),
        discounts=tuple(SaleDiscountView(label=d.label, amount_minor=d.amount_minor)
                        for d in sale.discounts))
    item = _occasion(session, "receipt", member, store, str(sale.id), "receipt",
                     {"sale": view}, config, balances=True,
                     requires_consent=bool(config.get("requires_consent")))
    if item is not None:
        item.coupon_template_id = None
        serve(session, ctx, item)


def on_tier_changed(session: Session, ctx: RendererContext, event: OutboxEvent) -> None:
    member = _active_member(session, event.payload.get("member_id"))
    if member is None:
        return
    config = rule_config(session, "tier_upgraded", member.home_store_id)
    tiers = {t.code: t for t in loyalty.list_tiers(session)}
    new, old = tiers.get(event.payload.get("to") or ""), tiers.get(event.payload.get("from") or "")
    if not config["enabled"] or new is None or (old is not None and old.rank >= new.rank):
        return  # congratulate upgrades only
    item = _occasion(session, "tier_upgraded", member, None, f"{new.code}:{event.id}",
                     "tier_upgraded", {"tier": TierChangeView(
                         current=new.name, previous=old.name if old else None,
                         discount_pct=new.discount_pct,
                         points_multiplier_pct=new.points_multiplier_pct)}, config,
                     balances=True)
    if item is not None:
        item.coupon_template_id = None
        serve(session, ctx, item)


def on_points_expiring(session: Session, ctx: RendererContext, event: OutboxEvent) -> None:
    member = _active_member(session, event.payload.get("member_id"))
    if member is None or not event.payload.get("expires_at"):
        return
    config = rule_config(session, "points_expiring", member.home_store_id)
    if not config["enabled"]:
        return
    home = session.get(Store, member.home_store_id)
    tz = ZoneInfo(home.timezone if home else "UTC")
    expires = datetime.fromisoformat(event.payload["expires_at"]).astimezone(tz).date()
    item = _occasion(session, "points_expiring", member, home, f"{expires.isoformat()}",
                     "points_expiring", {"points": PointsExpiryView(
                         expiring=int(event.payload.get("points", 0)), expires_on=expires)},
                     config, balances=True)
    if item is not None:
        item.coupon_template_id = None
        serve(session, ctx, item)


def on_membership_expiring(session: Session, ctx: RendererContext, event: OutboxEvent) -> None:
    member = _active_member(session, event.payload.get("member_id"))
    if member is None:
        return
    config = rule_config(session, "membership_renewal", member.home_store_id)
    if not config["enabled"]:
        return
    current = membership.current_period(session, member_id=member.id)
    if current is None:
        return
    period, plan, price = current
    home = session.get(Store, member.home_store_id)
    tz = ZoneInfo(home.timezone if home else "UTC")
    item = _occasion(session, "membership_renewal", member, home, str(period.id),
                     "membership_renewal", {"renewal": RenewalView(
                         plan=plan.name, ends_on=period.ends_at.astimezone(tz).date(),
                         price_minor=price, benefits=plan.benefits)}, config)
    if item is not None:
        item.coupon_template_id = None
        serve(session, ctx, item)


# ---------------------------------------------------------------- daily rules


def _store_members(store: Store) -> Any:
    return select(Member.id).where(Member.home_store_id == store.id,
                                   Member.status == MemberStatus.ACTIVE.value)


def birthdays(session: Session, ctx: RendererContext, store: Store, today: date) -> int:
    """Greet the store's members whose birthday (solar or lunar) is ``days_before`` away."""
    config = rule_config(session, "birthday", store.id)
    if not config["enabled"]:
        return 0
    day = today + timedelta(days=int(config["days_before"]))
    keys = calendar.keys_celebrated_on(day)
    conds = [and_(Member.birthday_calendar == k.calendar.value, Member.birth_month == k.month,
                  Member.birth_day == k.day, Member.birth_leap_month.is_(k.leap_month))
             for k in keys]
    served = 0
    for member in session.scalars(select(Member).where(
            Member.home_store_id == store.id, Member.status == MemberStatus.ACTIVE.value,
            or_(*conds))):
        spec = calendar.Occasion(Calendar(member.birthday_calendar or "solar"),
                                 member.birth_month or 0, member.birth_day or 0, None,
                                 member.birth_leap_month)
        year = calendar.celebration_year(spec, day)
        item = _occasion(session, "birthday", member, store, f"{year}", "birthday", {}, config)
        if item is not None and serve(session, ctx, item):
            served += 1
    return served


def anniversaries(session: Session, ctx: RendererContext, store: Store, today: date) -> int:
    """Membership anniversaries (the local day they joined) and recorded anniversaries."""
    config = rule_config(session, "anniversary", store.id)
    if not config["enabled"]:
        return 0
    day = today + timedelta(days=int(config["days_before"]))
    served = 0
    if config.get("membership"):
        tz = ZoneInfo(store.timezone)
        # joined on this month/day in an earlier year, local time: scan a day's window
        # per past year (at most 30 years of history)
        windows = []
        for years in range(1, 31):
            try:
                then = day.replace(year=day.year - years)
            except ValueError:  # Feb 29 joiners: greeted on Feb 28 in common years
                continue
            start = datetime.combine(then, datetime.min.time(), tz)
            windows.append(and_(Member.joined_at >= start,
                                Member.joined_at < start + timedelta(days=1)))
        if day.month == 2 and day.day == 28 and not _is_leap(day.year):
            for years in range(1, 31):
                if _is_leap(day.year - years):
                    start = datetime.combine(date(day.year - years, 2, 29),
                                             datetime.min.time(), tz)
                    windows.append(and_(Member.joined_at >= start,
                                        Member.joined_at < start + timedelta(days=1)))
        for member in session.scalars(select(Member).where(
                Member.home_store_id == store.id, Member.status == MemberStatus.ACTIVE.value,
                or_(*windows))):
            joined = member.joined_at.astimezone(tz).date()
            item = _occasion(session, "anniversary", member, store, f"joined:{day.year}",
                             "anniversary", {"anniversary": AnniversaryView(
                                 label="membership", years=day.year - joined.year)}, config)
            if item is not None and serve(session, ctx, item):
                served += 1
    rows = session.execute(
        select(Anniversary, Member).join(Member, Member.id == Anniversary.member_id)
        .where(Member.home_store_id == store.id, Member.status == MemberStatus.ACTIVE.value,
               Anniversary.on.is_not(None)))
    for anniversary, member in rows:
        spec = calendar.Occasion.anniversary_of(anniversary.on)
        if not calendar.occasion_dates(spec, day, day):
            continue
        item = _occasion(session, "anniversary", member, store,
                         f"{anniversary.id.hex}:{day.year}", "anniversary",
                         {"anniversary": AnniversaryView(
                             label=anniversary.label or anniversary.kind,
                             years=calendar.anniversary_number(spec, day))}, config)
        if item is not None and serve(session, ctx, item):
            served += 1
    return served


def _is_leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def holiday_greetings(session: Session, ctx: RendererContext, store: Store, today: date) -> int:
    """On (or before) a chosen holiday, greet every member of the store who can be reached
    for marketing; members without consent are not queued at all (counted by the report)."""
    config = rule_config(session, "holiday", store.id)
    if not config["enabled"]:
        return 0
    day = today + timedelta(days=int(config["days_before"]))
    found = holidays.holidays_on(day, codes=config.get("holidays") or None)
    if not found:
        return 0
    served = 0
    language = ctx.settings.default_language
    for occurrence in found:
        name = occurrence.holiday.name_zh if language == "zh_CN" else occurrence.holiday.name_en
        consent = or_(*[getattr(Member, f"{c}_consent").is_(True)
                        for c in config["channels"] if c in CHANNELS])
        for member in session.scalars(select(Member).where(
                Member.home_store_id == store.id, Member.status == MemberStatus.ACTIVE.value,
                consent)):
            item = _occasion(session, "holiday", member, store,
                             f"{occurrence.holiday.code}:{day.year}", "holiday",
                             {"holiday": HolidayView(name=name)}, config)
            if item is not None and serve(session, ctx, item):
                served += 1
    return served


def replenishment_reminders(session: Session, ctx: RendererContext, store: Store,
                            today: date) -> int:
    """Remind members before they run out of what they buy regularly.

    Each member's cycle for a product comes from their own intervals between purchase days,
    shrunk toward the product's (or category's) cycle (care.replenishment); the reminder is
    due ``days_before`` the predicted run-out. Occasion = product and last purchase day, so
    one reminder per cycle, and none once they have bought again.
    """
    config = rule_config(session, "replenishment", store.id)
    if not config["enabled"]:
        return 0
    cycles = catalog.replenishment_cycles(session)
    if not cycles:
        return 0
    tz = ZoneInfo(store.timezone)
    since = datetime.combine(today - timedelta(days=int(config["history_days"])),
                             datetime.min.time(), tz)
    rows = sales_queries.product_purchases(session, members=_store_members(store),
                                           product_ids=list(cycles), since=since)
    days_before = int(config["days_before"])
    by_product: dict[uuid.UUID, list[tuple[uuid.UUID, int]]] = defaultdict(list)
    for member_id, product_id, at, _qty in rows:
        by_product[product_id].append((member_id, at.astimezone(tz).date().toordinal()))
    due: list[tuple[uuid.UUID, uuid.UUID, date]] = []
    for product_id, purchases in by_product.items():
        purchases.sort()
        keys = sorted({m for m, _ in purchases})
        index = {m: i for i, m in enumerate(keys)}
        result = replenishment.cycles_by_member(
            np.array([index[m] for m, _ in purchases], dtype=np.int64),
            np.array([d for _, d in purchases], dtype=np.int64),
            category_cycle_days=cycles[product_id][1],
            prior_strength=float(config["prior_strength"]))
        remind = result.remind_day(days_before)
        for i in np.nonzero(remind == today.toordinal())[0]:
            member_key = keys[int(result.member_ids[i])]
            due.append((member_key, product_id, date.fromordinal(int(result.last_day[i]))))
    served = 0
    for member_id, product_id, last in due:
        member = session.get(Member, member_id)
        if member is None:
            continue
        item = _occasion(session, "replenishment", member, store,
                         f"{product_id.hex}:{last.isoformat()}", "replenishment",
                         {"replenishment": ReplenishmentView(product=cycles[product_id][2],
                                                             last_bought_on=last)}, config)
        if item is not None and serve(session, ctx, item):
            served += 1
    return served


def winback(session: Session, ctx: RendererContext, store: Store, today: date) -> int:
    """Invite back valuable members who have stayed away, and ask their home store to call.

    Selected: members of the store whose last purchase is ``days_away`` or more ago and who
    spent at least ``min_spend_minor`` in the ``spend_window_days`` before it. Occasion =
    the last purchase day, so one invitation per lapse (a member who comes back and lapses
    again is invited again).
    """
    config = rule_config(session, "winback", store.id)
    if not config["enabled"]:
        return 0
    tz = ZoneInfo(store.timezone)
    cutoff = datetime.combine(today - timedelta(days=int(config["days_away"])),
                              datetime.min.time(), tz)
    last = sales_queries.last_purchases(session, members=_store_members(store))
    lapsed = {m: at for m, at in last.items() if at < cutoff}
    if not lapsed:
        return 0
    window = timedelta(days=int(config["spend_window_days"]))
    earliest = min(lapsed.values()) - window
    # spend in the window before each member's own last visit; read for the whole store
    # in one query (an IN list of every lapsed id would exceed SQLite's variable limit)
    spend: dict[uuid.UUID, int] = defaultdict(int)
    for member_id, at, amount in sales_queries.member_sales_since(
            session, members=_store_members(store), since=earliest):
        last_at = lapsed.get(member_id)
        if last_at is not None and at >= last_at - window:
            spend[member_id] += amount
    served = 0
    for member_id, at in sorted(lapsed.items(), key=lambda kv: kv[1]):
        if spend.get(member_id, 0) < int(config["min_spend_minor"]):
            continue
        member = session.get(Member, member_id)
        if member is None:
            continue
        last_day = at.astimezone(tz).date()
        away = (today - last_day).days
        item = _occasion(session, "winback", member, store, f"{last_day.isoformat()}",
                         "winback", {"winback": WinbackView(last_visit_on=last_day,
                                                            days_away=away)}, config)
        if item is None:
            continue
        message_id = serve(session, ctx, item)
        if message_id is None:
            continue
        served += 1
        if config.get("callback"):
            _callback(session, ctx.clock, member, store, today,
                      int(config["callback_due_days"]), away)
    return served


def _callback(session: Session, clock: Clock, member: Member, store: Store, today: date,
              due_days: int, away: int) -> None:
    """A call for the member's home store (the feedback domain keeps callback tasks)."""
    from patron.feedback import service as feedback  # feedback's rules import care
    from patron.feedback.enums import CallbackReason

    feedback.create_callback(session, clock=clock, actor=None, member_id=member.id,
                             store_id=store.id, reason=CallbackReason.WIN_BACK,
                             due_on=today + timedelta(days=due_days),
                             notes=f"{away} days since the last visit")


DAILY = (("birthday", birthdays), ("anniversary", anniversaries),
         ("holiday", holiday_greetings), ("replenishment", replenishment_reminders),
         ("winback", winback))


def run_daily_for_store(session: Session, ctx: RendererContext, store: Store,
                        today: date) -> dict[str, int]:
    """Every daily rule for one store's local day; returns messages queued per rule."""
    return {name: rule(session, ctx, store, today) for name, rule in DAILY}


def occasions_of(session: Session, *, member_id: uuid.UUID, limit: int = 50
                 ) -> list[CareOccasion]:
    return list(session.scalars(select(CareOccasion).where(CareOccasion.member_id == member_id)
                                .order_by(CareOccasion.created_at.desc()).limit(limit)))


__all__ = ["RULES", "anniversaries", "birthdays", "holiday_greetings", "on_membership_expiring",
           "on_points_expiring", "on_sale_completed", "on_tier_changed",
           "replenishment_reminders", "rule_config", "run_daily_for_store", "serve",
           "set_rule", "winback"]
