"""The demo brand's loyalty rules, set up through the services as an owner would.

Everything here is configuration, a few dozen rows: the points programme and its tiers,
the top-up bonus rules, a paid membership plan, coupon templates, the referral rule, the
care rules, a coffee stamp card and a pet-grooming visit package. Each is created by the
domain's own service (validated and audited like a change made in the admin), at the
moment in the demo's history the brand introduced it (``Timeline``), so the audit log reads
like the brand's history and the simulation in ``demo.loyalty`` knows from when each rule
applies.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from patron.auth.principal import Principal
from patron.cards import service as cards
from patron.cards.enums import RewardKind, StampBasis
from patron.cards.schemas import PackageProductCreate, StampProgrammeCreate
from patron.care import service as care
from patron.catalog import service as catalog
from patron.catalog.schemas import CategoryCreate, ProductCreate
from patron.core.clock import FixedClock
from patron.demo.catalogue import CATEGORY_INDEX, ProductRef
from patron.loyalty import membership
from patron.loyalty import service as loyalty
from patron.loyalty.enums import ExpiryPolicy, Rounding, TierBasis
from patron.offers import rules as offer_rules
from patron.offers import service as offers
from patron.offers.enums import CouponKind, Validity
from patron.offers.schemas import CouponTemplateCreate, ReferralRuleIn
from patron.wallet import rules as wallet_rules
from patron.wallet import service as wallet

NIGHTLY_RUN = time(0, 15)  # the worker's loyalty.daily job ("15 0 * * *", brand time zone)
CARE_RUN = time(9, 0)  # the care.daily job, in each store's zone


@dataclass(frozen=True)
class Timeline:
    """When the brand introduced each part of its programme, and the instant "now".

    ``now`` is the last nightly run of the loyalty jobs (00:15 on ``end_on``): history
    stops at the start of that day, and every ledger is as those jobs left it. Features
    start a fixed number of days before the end, never before the chain opened, so a short
    demo (the tests') still has some of everything. Instants are UTC, like the rows'
    (comparing datetimes of two zones costs a zone lookup each time).
    """

    tz: ZoneInfo
    opened_at: datetime  # the chain, its points programme, tiers and stored value
    plus_at: datetime  # the paid membership plan
    packages_at: datetime  # the pet-grooming visit package
    care_at: datetime  # coupon templates, care rules, the referral rule
    stamps_at: datetime  # the coffee stamp card
    gift_cards_at: datetime  # a corporate batch of gift cards
    callbacks_at: datetime  # win-back calls for the staff switched on
    now: datetime

    @classmethod
    def of(cls, *, start_on: date, end_on: date, tz: ZoneInfo) -> Timeline:
        def local(on: date, at: time = time(9, 0)) -> datetime:
            return datetime.combine(on, at, tzinfo=tz).astimezone(UTC)

        opened = local(start_on - timedelta(days=30), time(8, 30))

        def days_before_end(days: int) -> datetime:
            return max(local(end_on - timedelta(days=days), time(8, 30)),
                       opened + timedelta(days=1))

        return cls(tz=tz, opened_at=opened, plus_at=days_before_end(420),
                   packages_at=days_before_end(150), care_at=days_before_end(120),
                   stamps_at=days_before_end(120), gift_cards_at=days_before_end(75),
                   callbacks_at=days_before_end(14), now=local(end_on, NIGHTLY_RUN))

    def next_run(self, at: datetime) -> datetime:
        """The first nightly run at or after ``at`` (the zone has no daylight saving)."""
        local = at.astimezone(self.tz)
        run = datetime.combine(local.date(), NIGHTLY_RUN, tzinfo=self.tz)
        if run < local:
            run += timedelta(days=1)
        return run.astimezone(UTC)

    def care_run(self, on: date) -> datetime:
        """The care rules' run on the local day ``on``."""
        return datetime.combine(on, CARE_RUN, tzinfo=self.tz).astimezone(UTC)


@dataclass(frozen=True)
class TierSpec:
    code: str
    name: str
    threshold_minor: int  # rolling 12-month spend
    multiplier_pct: int
    discount_pct: int


TIERS = (
    TierSpec("associate", "注册会员", 0, 100, 0),
    TierSpec("member", "正式会员", 50_000, 100, 0),
    TierSpec("silver", "银卡会员", 300_000, 125, 2),
    TierSpec("gold", "金卡会员", 1_000_000, 150, 5),
)
BONUS_RULES = (("充 1000 送 100", 100_000, 10_000), ("充 2000 送 300", 200_000, 30_000))
PLUS_PRICE_MINOR = 19_900
PACKAGE_PRICE_MINOR = 69_800


@dataclass(frozen=True)
class TierRef:
    id: uuid.UUID
    code: str
    name: str
    rank: int
    threshold: int
    multiplier_pct: int
    discount_pct: int


@dataclass(frozen=True)
class TemplateRef:
    id: uuid.UUID
    name: str
    terms: offer_rules.Terms
    valid_days: int


@dataclass(frozen=True)
class PlanRef:
    id: uuid.UUID
    product: int  # index into the demo's products
    price_minor: int
    duration_days: int
    tier_id: uuid.UUID


@dataclass(frozen=True)
class StampRef:
    id: uuid.UUID
    stamps_needed: int
    valid_days: int
    category: int  # the qualifying category (index into CATEGORIES)


@dataclass(frozen=True)
class Staff:
    """The demo's people as principals: who acts in the services' audit trail."""

    owner: Principal
    managers: dict[uuid.UUID, Principal]  # by store id
    cashiers: dict[uuid.UUID, Principal]
    labels: dict[uuid.UUID, str]  # user id -> username (the ledgers' actor label)


@dataclass(frozen=True)
class Programme:
    """The rules the simulation applies, read back from what the services stored."""

    timeline: Timeline
    tiers: tuple[TierRef, ...]  # by rank
    points_per_major: int
    points_per_major_redeemed: int
    pending_days: int
    expiry_policy: ExpiryPolicy
    expiry_months: int
    expiring_notice_days: int
    birthday_multiplier_pct: int
    downgrade_grace_days: int
    rounding: Rounding
    bonus_tiers: tuple[wallet_rules.BonusTier, ...]
    welcome: TemplateRef
    birthday: TemplateRef
    winback: TemplateRef
    referrer: TemplateRef
    apology: TemplateRef
    referral_min_purchase_minor: int
    winback_days_away: int
    winback_min_spend_minor: int
    winback_window_days: int
    winback_callback_due_days: int
    plan: PlanRef
    stamps: StampRef
    package_product_id: uuid.UUID
    grooming_products: tuple[int, ...]  # indices of the services a package visit covers


def _template(session: Session, clock: FixedClock, actor: Principal,
              data: CouponTemplateCreate) -> TemplateRef:
    template = offers.create_template(session, clock=clock, actor=actor, data=data)
    assert data.valid_days is not None
    return TemplateRef(
        id=template.id, name=template.name, valid_days=data.valid_days,
        terms=offer_rules.Terms(kind=data.kind, amount_minor=data.amount_minor,
                                percent=data.percent, cap_minor=data.cap_minor,
                                min_spend_minor=data.min_spend_minor, scope=data.scope))


def _add_product(products: list[ProductRef], product_id: uuid.UUID, category_id: uuid.UUID,
                 price_minor: int) -> int:
    """Make a product created after the purchase simulation known to the sale rows."""
    products.append(ProductRef(index=len(products), id=product_id, category=-1,
                               category_id=category_id, price_minor=price_minor,
                               cycle_days=None, season=None, popularity=0.0))
    return len(products) - 1


def set_up(session: Session, *, timeline: Timeline, staff: Staff,
           products: list[ProductRef], coffee_category_id: uuid.UUID) -> Programme:
    """Create the brand's programme through the services; ``products`` gains the new
    service products (membership fee, grooming) so sales can sell them."""
    owner = staff.owner
    t = timeline

    clock = FixedClock(t.opened_at)
    program = loyalty.get_program(session, clock=clock)
    loyalty.update_program(session, clock=clock, actor=owner, changes={
        "points_per_major": 1, "rounding": Rounding.FLOOR, "pending_days": 7,
        "expiry_policy": ExpiryPolicy.MONTHS, "expiry_months": 12, "expiring_notice_days": 30,
        "points_per_major_redeemed": 100, "birthday_multiplier_pct": 200,
        "tier_basis": TierBasis.SPEND, "downgrade_grace_days": 30})
    tiers = []
    for rank, spec in enumerate(TIERS):
        tier = loyalty.create_tier(session, clock=clock, actor=owner, code=spec.code,
                                   name=spec.name, rank=rank, threshold=spec.threshold_minor,
                                   points_multiplier_pct=spec.multiplier_pct,
                                   discount_pct=spec.discount_pct)
        tiers.append(TierRef(tier.id, spec.code, spec.name, rank, spec.threshold_minor,
                             spec.multiplier_pct, spec.discount_pct))
    for name, minimum, bonus in BONUS_RULES:
        wallet.create_bonus_rule(session, clock=clock, actor=owner, name=name,
                                 min_topup_minor=minimum, bonus_minor=bonus)
    silver = next(tier for tier in tiers if tier.code == "silver")

    clock = FixedClock(t.plus_at)
    services = catalog.create_category(session, clock=clock, actor=owner, data=CategoryCreate(
        code="services", name="会员与服务", replenish_days=None))
    fee = catalog.create_product(session, clock=clock, actor=owner, data=ProductCreate(
        sku="SVC-001", name="Plus 会员年费", category_id=services.id,
        price_minor=PLUS_PRICE_MINOR))
    plan = membership.create_plan(
        session, clock=clock, actor=owner, code="plus", name="Plus 会员", product_id=fee.id,
        duration_days=365, tier_id=silver.id,
        benefits="一年银卡权益：全场 98 折，积分 1.25 倍，生日月双倍积分")
    plan_ref = PlanRef(plan.id, _add_product(products, fee.id, services.id, PLUS_PRICE_MINOR),
                       PLUS_PRICE_MINOR, plan.duration_days, silver.id)

    clock = FixedClock(t.packages_at)
    grooming = []
    for sku, name, price in (("SVC-002", "宠物洗护（小型犬/猫）", 8_800),
                             ("SVC-003", "宠物洗护（中大型犬）", 12_800)):
        product = catalog.create_product(session, clock=clock, actor=owner, data=ProductCreate(
            sku=sku, name=name, category_id=services.id, price_minor=price))
        grooming.append((product.id, _add_product(products, product.id, services.id, price)))
    package = cards.create_package_product(session, clock=clock, actor=owner,
                                           data=PackageProductCreate(
        name="宠物洗护 10 次卡", visits=10, price_minor=PACKAGE_PRICE_MINOR, valid_days=365,
        service_ids=[product_id for product_id, _ in grooming]))

    clock = FixedClock(t.care_at)
    days = Validity.DAYS
    welcome = _template(session, clock, owner, CouponTemplateCreate(
        name="新会员礼 满100减20", description="入会当天起 30 天内有效", kind=CouponKind.FIXED,
        amount_minor=2_000, min_spend_minor=10_000, validity=days, valid_days=30,
        per_member_limit=1))
    birthday = _template(session, clock, owner, CouponTemplateCreate(
        name="生日礼 9折（最高减50）", description="生日当月专享", kind=CouponKind.PERCENT,
        percent=10, cap_minor=5_000, validity=days, valid_days=30))
    winback = _template(session, clock, owner, CouponTemplateCreate(
        name="好久不见 满150减30", description="欢迎回来", kind=CouponKind.FIXED,
        amount_minor=3_000, min_spend_minor=15_000, validity=days, valid_days=30))
    referrer = _template(session, clock, owner, CouponTemplateCreate(
        name="推荐有礼 满100减20", description="感谢推荐好友", kind=CouponKind.FIXED,
        amount_minor=2_000, min_spend_minor=10_000, validity=days, valid_days=60))
    apology = _template(session, clock, owner, CouponTemplateCreate(
        name="致歉券 满50减30", description="给您添麻烦了", kind=CouponKind.FIXED,
        amount_minor=3_000, min_spend_minor=5_000, validity=days, valid_days=60))
    referral_min = 5_000
    offers.set_referral_rule(session, clock=clock, actor=owner, data=ReferralRuleIn(
        active=True, referrer_template_id=referrer.id, referred_template_id=welcome.id,
        min_purchase_minor=referral_min))
    rules: list[tuple[str, dict[str, object]]] = [
        ("receipt", {"channels": ["sms", "email"]}),
        ("birthday", {"coupon_template_id": str(birthday.id)}),
        ("replenishment", {"days_before": 3}),
        ("winback", {"coupon_template_id": str(winback.id), "callback": False}),
        ("points_expiring", {}), ("tier_upgraded", {}), ("membership_renewal", {}),
        ("complaint_followup", {"survey": True}),
    ]
    for code, config in rules:
        care.set_rule(session, clock=clock, actor=owner, code=code, enabled=True, config=config)

    clock = FixedClock(t.stamps_at)
    stamps = cards.create_programme(session, clock=clock, actor=owner, data=StampProgrammeCreate(
        name="咖啡集点卡 买9送1", basis=StampBasis.ITEM, stamps_needed=9,
        reward_kind=RewardKind.FREE_ITEM, valid_days=90, category_ids=[coffee_category_id]))

    care.set_rule(session, clock=FixedClock(t.callbacks_at), actor=owner, code="winback",
                  enabled=True, config={"callback": True, "callback_due_days": 3})
    winback_config = care.rule_config(session, "winback")

    return Programme(
        timeline=t, tiers=tuple(tiers), points_per_major=program.points_per_major,
        points_per_major_redeemed=program.points_per_major_redeemed,
        pending_days=program.pending_days, expiry_policy=ExpiryPolicy(program.expiry_policy),
        expiry_months=program.expiry_months,
        expiring_notice_days=program.expiring_notice_days,
        birthday_multiplier_pct=program.birthday_multiplier_pct,
        downgrade_grace_days=program.downgrade_grace_days, rounding=Rounding(program.rounding),
        bonus_tiers=tuple(wallet.active_bonus_tiers(session)),
        welcome=welcome, birthday=birthday, winback=winback, referrer=referrer,
        apology=apology, referral_min_purchase_minor=referral_min,
        winback_days_away=int(winback_config["days_away"]),
        winback_min_spend_minor=int(winback_config["min_spend_minor"]),
        winback_window_days=int(winback_config["spend_window_days"]),
        winback_callback_due_days=int(winback_config["callback_due_days"]), plan=plan_ref,
        stamps=StampRef(stamps.id, stamps.stamps_needed, stamps.valid_days or 90,
                        CATEGORY_INDEX["coffee"]),
        package_product_id=package.id, grooming_products=tuple(i for _, i in grooming))
