"""Proven plays: one-click campaign templates (a segment, texts in English and Chinese, an
offer suggestion and a schedule), the retention moves a shop makes again and again.

A play is data, not code: creating a campaign from one (``service.create_from_play``) saves
its segment and a *draft* campaign that the marketer reviews, changes and launches like
any other, with a holdout, so every play has to prove itself in the shop that runs it.

Texts are templates for the ``campaign`` message: the coupon lines are wrapped in
``{% if coupon is defined %}`` so a play works with or without an offer attached; the
brand signature, the SMS opt-out and the e-mail unsubscribe link are added by messaging.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from patron.core.errors import NotFound

_COUPON_EN = "{% if coupon is defined %} Your coupon {{ coupon.code }}: {{ coupon.name }}, " \
             "valid until {{ coupon.valid_until | date }}.{% endif %}"
_COUPON_ZH = "{% if coupon is defined %}送您{{ coupon.name }}（券码{{ coupon.code }}），" \
             "{{ coupon.valid_until | date }}前有效。{% endif %}"


@dataclass(frozen=True)
class OfferIdea:
    """A coupon a play suggests: the marketer creates it as a coupon template."""

    description: str
    kind: Literal["fixed", "percent"]
    amount_minor: int | None = None
    percent: int | None = None
    min_spend_minor: int = 0
    valid_days: int = 14


@dataclass(frozen=True)
class Play:
    code: str
    name: str
    description: str
    rules: dict[str, Any]
    messages: dict[str, dict[str, str]]
    offer: OfferIdea | None = None
    schedule: Literal["now", "at", "weekly"] = "now"
    weekday: int | None = None
    attribution_days: int = 14
    kind: Literal["message", "referral"] = "message"


def _text(subject: str, body: str, sms: str) -> dict[str, str]:
    return {"subject": subject, "body": body, "sms": sms}


PLAYS: tuple[Play, ...] = (
    Play(
        code="win_back_cant_lose",
        name="Win back the can't-lose-them",
        description="Members who used to buy often and spend a lot but have not been back "
                    "for two months (RFM 'can't lose them' and 'at risk'): a personal "
                    "invitation with a generous reason to return.",
        rules={"op": "all", "children": [
            {"field": "rfm_segment", "value": ["cant_lose", "at_risk"]},
            {"field": "last_purchase", "op": "not_within_days", "value": 60}]},
        messages={
            "en": _text("We miss you, {{ member.name }}",
                        "It has been a while since we saw you at {{ store.name }}, and we "
                        "would love to welcome you back." + _COUPON_EN,
                        "We miss you at {{ store.name }}, {{ member.name }}!" + _COUPON_EN),
            "zh_CN": _text("{{ member.name }}，好久不见",
                           "您已经有一段时间没来{{ store.name }}了，我们很想念您。" + _COUPON_ZH,
                           "{{ member.name }}，{{ store.name }}想念您！" + _COUPON_ZH)},
        offer=OfferIdea("¥30 off a purchase of ¥150, valid 14 days", "fixed",
                        amount_minor=3_000, min_spend_minor=15_000, valid_days=14),
        attribution_days=21),
    Play(
        code="welcome_series",
        name="Welcome new members",
        description="Members who joined in the last 7 days and have bought at most once: "
                    "a welcome and a reason for the second visit. Runs every Monday for "
                    "that week's new members.",
        rules={"op": "all", "children": [
            {"field": "joined", "op": "within_days", "value": 7},
            {"field": "purchase_count", "op": "<=", "value": 1}]},
        messages={
            "en": _text("Welcome to {{ brand.name }}, {{ member.name }}",
                        "Thank you for joining us. As a member you collect points on every "
                        "purchase and hear first about new arrivals." + _COUPON_EN,
                        "Welcome, {{ member.name }}! Points on every purchase start now."
                        + _COUPON_EN),
            "zh_CN": _text("欢迎加入{{ brand.name }}，{{ member.name }}",
                           "感谢您成为会员。每次消费都可积分，新品上市第一时间通知您。"
                           + _COUPON_ZH,
                           "欢迎{{ member.name }}成为会员，消费即享积分。" + _COUPON_ZH)},
        offer=OfferIdea("10 % off the next visit, valid 30 days", "percent", percent=10,
                        valid_days=30),
        schedule="weekly", weekday=0, attribution_days=30),
    Play(
        code="second_purchase",
        name="Second purchase nudge",
        description="Members who bought exactly once, between 14 and 45 days ago: the "
                    "second purchase is where most customers are won or lost.",
        rules={"op": "all", "children": [
            {"field": "purchase_count", "op": "=", "value": 1},
            {"field": "last_purchase", "op": "within_days", "value": 45},
            {"field": "last_purchase", "op": "not_within_days", "value": 14}]},
        messages={
            "en": _text("How are you getting on, {{ member.name }}?",
                        "We hope you are enjoying your first purchase from {{ store.name }}. "
                        "Come back and see what else we have for you." + _COUPON_EN,
                        "Enjoying your first buy, {{ member.name }}? Come and see what's "
                        "new." + _COUPON_EN),
            "zh_CN": _text("{{ member.name }}，用得还满意吗？",
                           "希望您喜欢在{{ store.name }}的第一次购物，欢迎再来看看更多好物。"
                           + _COUPON_ZH,
                           "{{ member.name }}，第一次购物还满意吗？欢迎再来看看新品。"
                           + _COUPON_ZH)},
        offer=OfferIdea("¥20 off a purchase of ¥100, valid 14 days", "fixed",
                        amount_minor=2_000, min_spend_minor=10_000, valid_days=14)),
    Play(
        code="birthday_month",
        name="Birthday month",
        description="Members whose (solar) birthday is this month: a birthday treat to "
                    "use any day of the month. Launch it on the first of the month.",
        rules={"field": "birthday_month", "value": "current"},
        messages={
            "en": _text("Happy birthday month, {{ member.name }}!",
                        "Your birthday is this month and we would like to celebrate with "
                        "you at {{ store.name }}." + _COUPON_EN,
                        "Happy birthday month, {{ member.name }}!" + _COUPON_EN),
            "zh_CN": _text("{{ member.name }}，生日月快乐！",
                           "这个月是您的生日月，{{ store.name }}为您准备了一份心意。" + _COUPON_ZH,
                           "{{ member.name }}，生日月快乐！" + _COUPON_ZH)},
        offer=OfferIdea("A birthday gift: ¥50 off a purchase of ¥200, valid 30 days",
                        "fixed", amount_minor=5_000, min_spend_minor=20_000, valid_days=30),
        attribution_days=30),
    Play(
        code="replenishment_due",
        name="Replenishment due",
        description="Members whose next purchase is predicted within the next 7 days (or "
                    "up to 7 days overdue) and who are still active: a timely reminder "
                    "before they run out. Runs every Thursday.",
        rules={"op": "all", "children": [
            {"field": "next_purchase_on", "op": "within_days", "value": 7, "overdue_days": 7},
            {"field": "lifecycle_stage", "value": ["lapsed", "lost"], "negate": True}]},
        messages={
            "en": _text("Time to stock up, {{ member.name }}?",
                        "By our reckoning you may be running low on your usual. It is "
                        "waiting for you at {{ store.name }}." + _COUPON_EN,
                        "Running low, {{ member.name }}? Your usual is ready at "
                        "{{ store.name }}." + _COUPON_EN),
            "zh_CN": _text("{{ member.name }}，该补货啦",
                           "您常买的商品可能快用完了，{{ store.name }}已为您备好。" + _COUPON_ZH,
                           "{{ member.name }}，常买的快用完了吗？{{ store.name }}已备好。"
                           + _COUPON_ZH)},
        offer=None, schedule="weekly", weekday=3, attribution_days=14),
    Play(
        code="vip_early_access",
        name="VIP early access",
        description="The best customers (RFM champions and loyal members, or a predicted "
                    "lifetime value of ¥5,000 or more): first look at new arrivals before "
                    "everyone else. No discount needed.",
        rules={"op": "any", "children": [
            {"field": "rfm_segment", "value": ["champions", "loyal"]},
            {"field": "clv_minor", "op": ">=", "value": 500_000}]},
        messages={
            "en": _text("{{ member.name }}, a first look just for you",
                        "Our new arrivals are in, and before anyone else sees them we "
                        "would like you to. Come to {{ store.name }} this week for early "
                        "access." + _COUPON_EN,
                        "{{ member.name }}, new arrivals: early access for you at "
                        "{{ store.name }} this week." + _COUPON_EN),
            "zh_CN": _text("{{ member.name }}，新品抢先看",
                           "新品已到店，在正式上架前，我们想先请您来看看。本周欢迎到"
                           "{{ store.name }}抢先体验。" + _COUPON_ZH,
                           "{{ member.name }}，新品到店，本周为您开放抢先体验。" + _COUPON_ZH)},
        offer=None, attribution_days=14),
)

_BY_CODE = {play.code: play for play in PLAYS}


def get(code: str) -> Play:
    play = _BY_CODE.get(code)
    if play is None:
        raise NotFound(f"No play {code!r}; one of {', '.join(_BY_CODE)}", "code")
    return play
