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
import itertools
import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt
from sqlalchemy import and_, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from patron.analytics import picks as analytics_picks
from patron.auth import audit
from patron.auth.enums import Role
from patron.auth.principal import Principal, require_role, require_store
from patron.care import calendar, holidays, replenishment
from patron.care.models import CareOccasion, CareRule
from patron.catalog import queries as catalog
from patron.core.clock import Clock
from patron.core.errors import NotFound, ValidationFailed
from patron.core.events import OutboxEvent
from patron.core.ids import new_id
from patron.loyalty import membership, perks
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
    ProductPickView,
    Purpose,
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
IntArray = npt.NDArray[np.int64]


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
    if store_id is not None:
        require_store(actor, store_id)  # a manager sets the rules of their own stores only
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


class Reachable(Protocol):
    """What a message needs of a member: a ``Member``, or a :class:`Contact` read in bulk."""

    @property
    def id(self) -> uuid.UUID: ...
    @property
    def name(self) -> str: ...
    @property
    def card_no(self) -> str: ...
    @property
    def phone(self) -> str | None: ...
    @property
    def email(self) -> str | None: ...
    @property
    def language(self) -> str | None: ...


@dataclass(frozen=True)
class Contact:
    """The columns of a member a greeting uses, read for many members in one query (the
    daily rules reach thousands of members; an ORM ``Member`` each would cost more than
    the message)."""

    id: uuid.UUID
    name: str
    card_no: str
    phone: str | None
    email: str | None
    language: str | None


def member_token(secret: str, member_id: uuid.UUID) -> str:
    """The signed token of a member's self-service link."""
    mac = hmac.new(secret.encode(), f"member:{member_id.hex}".encode(), hashlib.sha256)
    return f"{member_id.hex}.{mac.hexdigest()[:32]}"


def _links(ctx: RendererContext, member: Reachable, channel: str, marketing: bool,
           survey: str | None = None) -> Links:
    secret = ctx.settings.secret_key.get_secret_value()
    base = ctx.settings.public_url.rstrip("/")
    return Links(self_service=f"{base}/m/{member_token(secret, member.id)}",
                 unsubscribe=f"{base}/u/{messaging.unsubscribe_token(secret, member.id, channel)}"
                 if marketing else None,
                 survey=survey)


def _member_view(session: Session, ctx: RendererContext, member: Reachable, *,
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


def _recipient(member: Reachable, channel: str) -> str | None:
    return member.phone if channel == "sms" else member.email if channel == "email" else None


def _channel(ctx: RendererContext, member: Reachable, config: dict[str, Any]) -> str | None:
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
    claimed = _claim_occasions(session, clock, rule, [(member_id, occasion)])
    return claimed.get((member_id, occasion[:100]))


def _claim_occasions(session: Session, clock: Clock, rule: str,
                     wanted: Sequence[tuple[uuid.UUID, str]],
                     ) -> dict[tuple[uuid.UUID, str], uuid.UUID]:
    """Record that these (member, occasion) pairs are being served, in one statement;
    returns the new rows' ids by (member, occasion), leaving out those served before.

    ``INSERT ... ON CONFLICT DO NOTHING`` on the unique (rule, member, occasion): the
    database decides, so two runs racing for the same occasion cannot both win it.
    """
    if not wanted:
        return {}
    dialect = session.get_bind().dialect.name
    stmt: Any = postgresql.insert(CareOccasion) if dialect == "postgresql" \
        else sqlite.insert(CareOccasion)
    stmt = stmt.on_conflict_do_nothing(index_elements=["rule", "member_id", "occasion"]) \
        .returning(CareOccasion.id, CareOccasion.member_id, CareOccasion.occasion)
    now = clock.now()
    rows = [{"id": new_id(), "rule": rule, "member_id": member_id, "occasion": occasion[:100],
             "created_at": now} for member_id, occasion in wanted]
    return {(member_id, occasion): occasion_id
            for occasion_id, member_id, occasion in session.execute(stmt, rows)}


def _outgoing(ctx: RendererContext, *, rule: str, occasion: str, template: str,
              member: Reachable, member_view: MemberView, store: Store, channel: str,
              parts: dict[str, Any], coupon: CouponView | None = None,
              requires_consent: bool = False,
              survey_link: str | None = None) -> messaging.Outgoing:
    """Render one member's message and wrap it for the queue (its dedupe key says which
    rule, member and occasion, so the queue too holds it at most once)."""
    spec = ctx.renderer.spec(template)
    marketing = spec.purpose.value == "marketing"
    context = MessageContext(
        member=member_view, store=_store_view(store),
        brand=BrandView(name=ctx.settings.brand_name, currency=ctx.settings.currency),
        links=_links(ctx, member, channel, marketing, survey_link), coupon=coupon, **parts)
    language = member.language or ctx.settings.default_language
    rendered = ctx.renderer.render(template, language=language, context=context)
    recipient = _recipient(member, channel)
    assert recipient is not None
    payload: dict[str, Any] = {"rule": rule, "occasion": occasion,
                               "requires_consent": requires_consent}
    if channel == "email":
        payload["recipient_name"] = member.name
        payload["unsubscribe_url"] = rendered.unsubscribe_url
        body, subject, html = rendered.text, rendered.subject, rendered.html
    else:
        payload["sms_params"] = rendered.sms_params
        body, subject, html = rendered.sms_text, "", None
    return messaging.Outgoing(
        dedupe_key=_dedupe_key(rule, member.id, occasion), channel=channel,
        purpose=spec.purpose.value, template=template, language=rendered.language,
        recipient=recipient, body=body, subject=subject, html=html,
        segments=rendered.segments if channel == "sms" else None, member_id=member.id,
        store_id=store.id, payload=payload)


def _dedupe_key(rule: str, member_id: uuid.UUID, occasion: str) -> str:
    return f"care:{rule}:{member_id.hex}:{occasion}"


def product_picks(session: Session, member_ids: Sequence[uuid.UUID]
                  ) -> dict[uuid.UUID, tuple[ProductPickView, ...]]:
    """The members' next-best products for a marketing message's ``picks`` (one query
    for the batch; an empty tuple for a member the analytics have nothing for)."""
    found = analytics_picks.product_picks(session, member_ids)
    return {member_id: tuple(ProductPickView(name=p.name, price_minor=p.price_minor)
                             for p in picks) for member_id, picks in found.items()}


def _is_marketing(ctx: RendererContext, template: str) -> bool:
    return ctx.renderer.spec(template).purpose is Purpose.MARKETING


def _issue_coupon(session: Session, ctx: RendererContext, *, rule: str, occasion: str,
                  template_id: str, member_id: uuid.UUID, store: Store
                  ) -> tuple[CouponView, str]:
    coupon = offers.issue_coupons(
        session, clock=ctx.clock, actor=None, template_id=uuid.UUID(template_id),
        member_id=member_id,
        source=CouponSource.BIRTHDAY if rule == "birthday" else CouponSource.CARE,
        source_ref=f"{rule}:{occasion}")[0]
    template = offers.get_template(session, template_id=coupon.template_id)
    valid_until = coupon.valid_until.astimezone(ZoneInfo(store.timezone)).date()
    return CouponView(name=template.name, code=coupon.code, valid_until=valid_until), \
        coupon.code


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
        coupon_view, code = _issue_coupon(session, ctx, rule=item.rule,
                                          occasion=item.occasion,
                                          template_id=item.coupon_template_id,
                                          member_id=item.member.id, store=item.store)
    parts = dict(item.parts)
    if _is_marketing(ctx, item.template):
        parts["picks"] = product_picks(session, [item.member.id])[item.member.id]
    outgoing = _outgoing(
        ctx, rule=item.rule, occasion=item.occasion, template=item.template,
        member=item.member,
        member_view=_member_view(session, ctx, item.member, balances=item.balances),
        store=item.store, channel=config_channel, parts=parts, coupon=coupon_view,
        requires_consent=item.requires_consent, survey_link=item.survey_link)
    ids = messaging.enqueue(session, clock=ctx.clock, messages=[outgoing])
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


# ---------------------------------------------------------------- serving many at once


@dataclass(frozen=True)
class Due:
    """A member a daily rule selected: the occasion (its once-only key) and what the
    template says about it."""

    member_id: uuid.UUID
    occasion: str
    parts: dict[str, Any]


@dataclass(frozen=True)
class Served:
    """An occasion served by :func:`serve_due`, with the message it queued."""

    due: Due
    message_id: uuid.UUID | None


SERVE_BATCH = 500  # members claimed, rendered and queued per round trip
KNOWN_BATCH = 5_000  # members whose served occasions are read at once (SQLite: < 32,766 ids)


def serve_due(session: Session, ctx: RendererContext, *, rule: str, template: str,
              store: Store, config: dict[str, Any], due: Sequence[Due]) -> list[Served]:
    """Serve many occasions of one rule and store, :func:`serve`'s guarantees in batches.

    Occasions already on record are left out up front, a few thousand members per indexed
    read (a daily rule selects the same lapsed members again every day; skipping them must
    cost less than a render). Then per batch: the members' contact columns are read in one
    query; the occasions are claimed in one ``INSERT ... ON CONFLICT DO NOTHING``
    (authoritative, so a racing run cannot serve one twice); coupons are issued and
    messages rendered for what was claimed; the messages are queued in one statement and
    the occasions point at them. A member who can't be reached on any of the rule's
    channels is skipped and nothing is recorded, as in :func:`serve`.
    """
    served: list[Served] = []
    for start in range(0, len(due), KNOWN_BATCH):
        chunk = due[start:start + KNOWN_BATCH]
        seen = {(member_id, occasion) for member_id, occasion in session.execute(
            select(CareOccasion.member_id, CareOccasion.occasion)
            .where(CareOccasion.rule == rule,
                   CareOccasion.member_id.in_({d.member_id for d in chunk})))}
        fresh = []
        for d in chunk:  # not served before, and each occasion once
            pair = (d.member_id, d.occasion[:100])
            if pair not in seen:
                seen.add(pair)
                fresh.append(d)
        for first in range(0, len(fresh), SERVE_BATCH):
            served.extend(_serve_batch(session, ctx, rule=rule, template=template,
                                       store=store, config=config,
                                       batch=fresh[first:first + SERVE_BATCH]))
    return served


def _serve_batch(session: Session, ctx: RendererContext, *, rule: str, template: str,
                 store: Store, config: dict[str, Any], batch: Sequence[Due]) -> list[Served]:
    channels = {"channels": list(config.get("channels", []))}
    coupon_template_id = config.get("coupon_template_id")
    contacts = {row.id: Contact(row.id, row.name, row.card_no, row.phone, row.email,
                                row.language)
                for row in session.execute(
                    select(Member.id, Member.name, Member.card_no, Member.phone,
                           Member.email, Member.language)
                    .where(Member.id.in_({d.member_id for d in batch})))}
    reachable = [(d, contacts[d.member_id], channel) for d in batch
                 if d.member_id in contacts
                 and (channel := _channel(ctx, contacts[d.member_id], channels))]
    claimed = _claim_occasions(session, ctx.clock, rule,
                               [(d.member_id, d.occasion) for d, _, _ in reachable])
    # a tier's own birthday present replaces the rule's coupon for its members
    tier_coupons = perks.birthday_coupon_templates(
        session, member_ids=[d.member_id for d, _, _ in reachable]) if rule == "birthday" else {}
    picks = product_picks(session, [d.member_id for d, _, _ in reachable]) \
        if _is_marketing(ctx, template) else {}
    outgoing: list[messaging.Outgoing] = []
    records: list[tuple[Due, uuid.UUID, str | None, str]] = []
    for d, contact, channel in reachable:
        occasion_id = claimed.get((d.member_id, d.occasion[:100]))
        if occasion_id is None:
            continue  # served by a run that got there first
        coupon_view, code = None, None
        template_id = tier_coupons.get(d.member_id) or coupon_template_id
        if template_id:
            coupon_view, code = _issue_coupon(session, ctx, rule=rule, occasion=d.occasion,
                                              template_id=str(template_id),
                                              member_id=d.member_id, store=store)
        message = _outgoing(ctx, rule=rule, occasion=d.occasion, template=template,
                            member=contact,
                            member_view=MemberView(name=contact.name, card_no=contact.card_no),
                            store=store, channel=channel, coupon=coupon_view,
                            parts={**d.parts, "picks": picks[d.member_id]} if picks
                            else d.parts)
        outgoing.append(message)
        records.append((d, occasion_id, code, message.dedupe_key))
    message_ids = messaging.enqueue_by_key(session, clock=ctx.clock, messages=outgoing)
    served = []
    updates = []
    for d, occasion_id, code, key in records:
        message_id = message_ids.get(key)
        served.append(Served(d, message_id))
        if message_id is not None or code is not None:
            updates.append({"id": occasion_id, "message_id": message_id, "coupon_code": code})
    if updates:
        session.execute(update(CareOccasion), updates)  # by primary key, executemany
    return served


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
#
# Each daily rule is two halves: *selection* (``due_*``: who is due today, from indexed
# reads shaped for a whole store) and *serving* (:func:`serve_due`: claim, render, queue in
# batches). ``run_daily_for_store`` and the rule functions run both; the halves are public
# so that bench/care_jobs.py can time them apart.


def _store_members(store: Store) -> Any:
    return select(Member.id).where(Member.home_store_id == store.id,
                                   Member.status == MemberStatus.ACTIVE.value)


def due_birthdays(session: Session, store: Store, today: date, config: dict[str, Any]
                  ) -> list[Due]:
    """Members of the store whose birthday (solar or lunar) is ``days_before`` away.

    One query per calendar month among the day's keys (usually the solar month and the
    lunar one), each ``birth_month = ? AND birth_day IN (...)`` so that SQLite picks
    ``ix_members_birthday`` rather than scanning the store's members (an OR of the keys,
    or an IN on both columns, made it choose the home-store index when it has no
    statistics).
    """
    day = today + timedelta(days=int(config["days_before"]))
    by_month: dict[int, list[calendar.Occasion]] = defaultdict(list)
    for key in calendar.keys_celebrated_on(day):
        by_month[key.month].append(key)
    due: list[Due] = []
    for month, keys in sorted(by_month.items()):
        rows = session.execute(
            select(Member.id, Member.birthday_calendar, Member.birth_month, Member.birth_day,
                   Member.birth_leap_month)
            .where(Member.birth_month == month,
                   Member.birth_day.in_(sorted({k.day for k in keys})),
                   Member.home_store_id == store.id,
                   Member.status == MemberStatus.ACTIVE.value,
                   or_(*[and_(Member.birthday_calendar == k.calendar.value,
                              Member.birth_day == k.day,
                              Member.birth_leap_month.is_(k.leap_month)) for k in keys]))
            .order_by(Member.id))
        for member_id, calendar_name, birth_month, birth_day, leap in rows:
            spec = calendar.Occasion(Calendar(calendar_name or "solar"), birth_month or 0,
                                     birth_day or 0, None, leap)
            due.append(Due(member_id, f"{calendar.celebration_year(spec, day)}", {}))
    return due


def due_anniversaries(session: Session, store: Store, today: date, config: dict[str, Any]
                      ) -> list[Due]:
    """Membership anniversaries (the local day they joined) and recorded anniversaries."""
    day = today + timedelta(days=int(config["days_before"]))
    due: list[Due] = []
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
        for member_id, joined_at in session.execute(select(Member.id, Member.joined_at).where(
                Member.home_store_id == store.id, Member.status == MemberStatus.ACTIVE.value,
                or_(*windows))):
            joined = joined_at.astimezone(tz).date()
            due.append(Due(member_id, f"joined:{day.year}", {"anniversary": AnniversaryView(
                label="membership", years=day.year - joined.year)}))
    rows = session.execute(
        select(Anniversary.id, Anniversary.on, Anniversary.label, Anniversary.kind, Member.id)
        .join(Member, Member.id == Anniversary.member_id)
        .where(Member.home_store_id == store.id, Member.status == MemberStatus.ACTIVE.value,
               Anniversary.on.is_not(None)))
    for anniversary_id, on, label, kind, member_id in rows:
        spec = calendar.Occasion.anniversary_of(on)
        if not calendar.occasion_dates(spec, day, day):
            continue
        due.append(Due(member_id, f"{anniversary_id.hex}:{day.year}", {
            "anniversary": AnniversaryView(label=label or kind,
                                           years=calendar.anniversary_number(spec, day))}))
    return due


def _is_leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def due_holiday_greetings(session: Session, store: Store, today: date,
                          config: dict[str, Any], language: str) -> list[Due]:
    """On (or before) a chosen holiday, every member of the store who can be reached for
    marketing; members without consent are not selected at all (counted by the report)."""
    day = today + timedelta(days=int(config["days_before"]))
    due: list[Due] = []
    for occurrence in holidays.holidays_on(day, codes=config.get("holidays") or None):
        name = occurrence.holiday.name_zh if language == "zh_CN" else occurrence.holiday.name_en
        parts = {"holiday": HolidayView(name=name)}
        consent = or_(*[getattr(Member, f"{c}_consent").is_(True)
                        for c in config["channels"] if c in CHANNELS])
        key = f"{occurrence.holiday.code}:{day.year}"
        due.extend(Due(member_id, key, parts) for member_id in session.scalars(
            select(Member.id).where(Member.home_store_id == store.id,
                                    Member.status == MemberStatus.ACTIVE.value, consent)))
    return due


def local_days(at_us: IntArray, tz: ZoneInfo) -> IntArray:
    """The local calendar day (``date.toordinal()``) in ``tz`` of each UTC instant given in
    microseconds since the epoch: ``at.astimezone(tz).date().toordinal()`` for a million
    instants at once.

    The zone's offset is looked up once per UTC day (at its start and at the next day's);
    only on a day when the offset changes (a daylight-saving switch) is it looked up per
    instant.
    """
    if len(at_us) == 0:
        return np.zeros(0, dtype=np.int64)
    seconds = at_us // 1_000_000
    utc_day = seconds // 86_400
    first = int(utc_day.min())
    starts = np.array([_offset_s(tz, (first + k) * 86_400)
                       for k in range(int(utc_day.max()) - first + 2)], dtype=np.int64)
    offset = starts[utc_day - first]
    switching = np.flatnonzero((starts[1:] != starts[:-1])[utc_day - first])
    if len(switching):
        offset[switching] = [_offset_s(tz, s) for s in seconds[switching].tolist()]
    return (seconds + offset) // 86_400 + _EPOCH_ORDINAL


_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


def _offset_s(tz: ZoneInfo, epoch_s: int) -> int:
    offset = datetime.fromtimestamp(epoch_s, tz).utcoffset()
    return int(offset.total_seconds()) if offset is not None else 0


def due_replenishments(session: Session, store: Store, today: date, config: dict[str, Any]
                       ) -> list[Due]:
    """Members due a reminder today, before they run out of what they buy regularly.

    Each member's cycle for a product comes from their own intervals between purchase days
    in the last ``history_days``, shrunk toward the product's (or category's) cycle
    (care.replenishment); the reminder is due ``days_before`` the predicted run-out.
    Occasion = product and last purchase day, so one reminder per cycle, and none once
    they have bought again.

    The store's year of purchases is read as columns (``sales.queries.purchase_columns``:
    member, product, instant; a million members' year is several million lines), turned
    into local days with NumPy, sorted by one integer key (product, member, day) and
    handed to ``replenishment.cycles_by_member`` per product: every purchase in the window
    is used, as the per-member rule does; nothing is sampled.
    """
    cycles = catalog.replenishment_cycles(session)
    if not cycles:
        return []
    tz = ZoneInfo(store.timezone)
    since = datetime.combine(today - timedelta(days=int(config["history_days"])),
                             datetime.min.time(), tz)
    products = list(cycles)
    rows = sales_queries.purchase_columns(session, members=_store_members(store),
                                          product_ids=products, since=since)
    if not len(rows):
        return []
    day = local_days(rows.at_us, tz)
    low = int(day.min())
    span = int(day.max()) - low + 1
    n_members = len(rows.member_ids)
    key = np.sort((rows.product * n_members + rows.member) * span + (day - low))
    day, pair = key % span + low, key // span
    member, product = pair % n_members, pair // n_members
    bounds = np.searchsorted(product, np.arange(len(products) + 1))
    days_before = int(config["days_before"])
    due: list[Due] = []
    for p, (lo, hi) in enumerate(itertools.pairwise(bounds.tolist())):
        if lo == hi:
            continue
        _category, cycle_days, name = cycles[products[p]]
        result = replenishment.cycles_by_member(
            member[lo:hi], day[lo:hi], category_cycle_days=cycle_days,
            prior_strength=float(config["prior_strength"]))
        for i in np.flatnonzero(result.remind_day(days_before) == today.toordinal()).tolist():
            last = date.fromordinal(int(result.last_day[i]))
            due.append(Due(rows.member_ids[int(result.member_ids[i])],
                           f"{products[p].hex}:{last.isoformat()}",
                           {"replenishment": ReplenishmentView(product=name,
                                                               last_bought_on=last)}))
    return due


def due_winbacks(session: Session, store: Store, today: date, config: dict[str, Any]
                 ) -> list[Due]:
    """Valuable members who have stayed away, the longest away first.

    Selected: members of the store whose last purchase is ``days_away`` or more ago and who
    spent at least ``min_spend_minor`` in the ``spend_window_days`` before it (one query,
    ``sales.queries.lapsed_spenders``). Occasion = the last purchase day, so one invitation
    per lapse (a member who comes back and lapses again is invited again).
    """
    tz = ZoneInfo(store.timezone)
    cutoff = datetime.combine(today - timedelta(days=int(config["days_away"])),
                              datetime.min.time(), tz)
    due = []
    for member_id, at, _spend in sales_queries.lapsed_spenders(
            session, members=_store_members(store), lapsed_before=cutoff,
            window_days=int(config["spend_window_days"]),
            min_spend_minor=int(config["min_spend_minor"])):
        last_day = at.astimezone(tz).date()
        due.append(Due(member_id, last_day.isoformat(), {"winback": WinbackView(
            last_visit_on=last_day, days_away=(today - last_day).days)}))
    return due


@dataclass(frozen=True)
class DailyRule:
    """A daily rule: its code (for its settings), its template and its selection."""

    code: str
    template: str
    select: Callable[[Session, RendererContext, Store, date, dict[str, Any]], list[Due]]


DAILY_RULES: dict[str, DailyRule] = {rule.code: rule for rule in (
    DailyRule("birthday", "birthday",
              lambda s, ctx, store, today, config: due_birthdays(s, store, today, config)),
    DailyRule("anniversary", "anniversary",
              lambda s, ctx, store, today, config: due_anniversaries(s, store, today, config)),
    DailyRule("holiday", "holiday",
              lambda s, ctx, store, today, config: due_holiday_greetings(
                  s, store, today, config, ctx.settings.default_language)),
    DailyRule("replenishment", "replenishment",
              lambda s, ctx, store, today, config: due_replenishments(s, store, today, config)),
    DailyRule("winback", "winback",
              lambda s, ctx, store, today, config: due_winbacks(s, store, today, config)),
)}


def select_due(session: Session, ctx: RendererContext, code: str, store: Store,
               today: date) -> tuple[dict[str, Any], list[Due]]:
    """The store's settings of a daily rule and who is due today (nobody if it is off)."""
    config = rule_config(session, code, store.id)
    if not config["enabled"]:
        return config, []
    return config, DAILY_RULES[code].select(session, ctx, store, today, config)


def serve_daily(session: Session, ctx: RendererContext, code: str, store: Store,
                today: date, config: dict[str, Any], due: Sequence[Due]) -> int:
    """Serve what :func:`select_due` found; returns how many messages were queued.

    Win-back also asks the member's home store to call each member it invited.
    """
    served = [s for s in serve_due(session, ctx, rule=code, template=DAILY_RULES[code].template,
                                   store=store, config=config, due=due)
              if s.message_id is not None]
    if code == "winback" and config.get("callback"):
        for item in served:
            _callback(session, ctx.clock, item.due.member_id, store, today,
                      int(config["callback_due_days"]), item.due.parts["winback"].days_away)
    return len(served)


def _run_rule(session: Session, ctx: RendererContext, code: str, store: Store,
              today: date) -> int:
    config, due = select_due(session, ctx, code, store, today)
    return serve_daily(session, ctx, code, store, today, config, due) if due else 0


def birthdays(session: Session, ctx: RendererContext, store: Store, today: date) -> int:
    """Greet the store's members whose birthday (solar or lunar) is ``days_before`` away."""
    return _run_rule(session, ctx, "birthday", store, today)


def anniversaries(session: Session, ctx: RendererContext, store: Store, today: date) -> int:
    """Membership anniversaries (the local day they joined) and recorded anniversaries."""
    return _run_rule(session, ctx, "anniversary", store, today)


def holiday_greetings(session: Session, ctx: RendererContext, store: Store, today: date) -> int:
    """On (or before) a chosen holiday, greet every member of the store who can be reached
    for marketing; members without consent are not queued at all (counted by the report)."""
    return _run_rule(session, ctx, "holiday", store, today)


def replenishment_reminders(session: Session, ctx: RendererContext, store: Store,
                            today: date) -> int:
    """Remind members before they run out of what they buy regularly (see
    :func:`due_replenishments`)."""
    return _run_rule(session, ctx, "replenishment", store, today)


def winback(session: Session, ctx: RendererContext, store: Store, today: date) -> int:
    """Invite back valuable members who have stayed away (see :func:`due_winbacks`), and
    ask their home store to call."""
    return _run_rule(session, ctx, "winback", store, today)


def _callback(session: Session, clock: Clock, member_id: uuid.UUID, store: Store, today: date,
              due_days: int, away: int) -> None:
    """A call for the member's home store (the feedback domain keeps callback tasks)."""
    from patron.feedback import service as feedback  # feedback's rules import care
    from patron.feedback.enums import CallbackReason

    feedback.create_callback(session, clock=clock, actor=None, member_id=member_id,
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
