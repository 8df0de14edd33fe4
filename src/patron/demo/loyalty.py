"""The loyalty programme as the demo's members lived it, replayed sale by sale.

Design overview
---------------
Tens of thousands of members with a few hundred thousand sales cannot go through
``sales.service.checkout`` (minutes, and "now" would be today for every sale), so this
module replays what checkout and the nightly jobs would have written, in memory, and the
build bulk-inserts the result. It follows the real code step by step and calls the
domains' pure rules for every amount and date, so the ledgers are the ones the services
would have produced:

* **At each sale** (checkout's order): the member's current tier prices the basket; a
  paid-membership fee may join it; the best usable coupon applies
  (``offers.rules.discount_for``, once per sale); then the tier's discount
  (``core.money.proportion`` spread with ``allocate``); points may pay part
  (``loyalty.rules.points_value_minor``, oldest lots first) and stored value may pay
  part (``wallet.rules.split_spend``), the rest is card or cash; a bought plan starts or
  renews a paid period and grants its tier; the sale earns points
  (``loyalty.rules.points_for`` with the tier's and the birthday month's multipliers) into
  a pending lot that expires per ``loyalty.rules.expires_at``; the tier is re-evaluated
  on the rolling 12 months of spend (upgrades at once, as ``evaluate_tier``); coffee
  items give stamps on the stamp card. A stored-value top-up, when the member makes one,
  is booked just before the sale with the bonus of ``wallet.rules.bonus_for``.
* **The nightly run** (00:15, ``jobs.daily``): pending lots are released, lots expiring
  within the notice period are marked notified, expired lots get an EXPIRE entry; paid
  periods are marked notified a week before they end and expire when they end (the paid
  tier is released); tiers whose holding period has passed are reviewed and may be
  downgraded (``loyalty.rules.held_until``); unused coupons and stamp rewards expire.
* **The care run** (09:00): birthday coupons on the member's (solar or lunar) birthday,
  win-back coupons for valuable members 90 days away (and, lately, a call for their home
  store), each with its ``care_occasions`` row so the real rule does not serve the
  occasion again. New members get a welcome coupon at enrolment; a friend's referral is
  rewarded at the referred member's first purchase (``offers.service.on_first_purchase``).

Each member's events are processed in time order from a heap (nightly-run steps in the
jobs' order, then sales). Invariants the rows keep, as ``patron doctor`` checks them:
every balance equals the sum of its ledger and the ``*_after`` columns run through it;
the points in the lots equal the account's available and pending points; a sale's
payments add up to its total; a redeemed coupon has exactly one redemption. Money is in
minor units, points are integers.
"""

from __future__ import annotations

import bisect
import heapq
import random
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from fractions import Fraction
from operator import itemgetter
from typing import Any

import numpy as np

from patron.care import calendar
from patron.core.money import allocate, proportion
from patron.demo.catalogue import ProductRef
from patron.demo.ids import IdSource
from patron.demo.members import MemberDraft, StoreRef
from patron.demo.programme import NIGHTLY_RUN, Programme, TemplateRef, TierRef
from patron.demo.purchases import Payment, SaleDraft, Schedule
from patron.loyalty import rules as loyalty_rules
from patron.loyalty.enums import ExpiryPolicy, Rounding
from patron.members.enums import Calendar
from patron.offers import rules as offer_rules
from patron.offers.enums import CouponSource, CouponStatus
from patron.wallet import rules as wallet_rules
from patron.wallet.enums import SpendOrder

MINOR_PER_MAJOR = 100  # CNY: fen

# Event kinds; at one instant they run in this order (the nightly jobs' order, then care).
RELEASE, NOTICE, EXPIRE, PLAN_NOTICE, PLAN_END, REVIEW, COUPON_END, REWARD_END = range(8)
BIRTHDAY, WINBACK, ISSUE, SALE = 8, 9, 10, 11
PLAN_NOTICE_DAYS = 7  # membership.EXPIRING_NOTICE
EARN_CHECK = 97  # see Replay.points_for
YEAR_AT_LEAST = timedelta(days=365)  # 12 months are 365 or 366 days

# Behaviour: how members use what the programme gives them.
COUPON_USE = 0.75  # a usable coupon is used at a sale
REDEEM_FROM_POINTS = 1_000  # points a member waits for before spending them
REWARD_USE = 0.7  # a stamp reward is used at the next coffee purchase
WALLET_PAY = 0.9  # a member with stored value pays with it
TOPUP_AGAIN = 0.35  # a member whose stored value ran low tops up again at a visit
PLUS_RENEW = 0.3  # per visit in the last 30 days of a paid period
PLUS_MIN_SPEND = 150_000  # rolling spend from which a member is offered the plan


@dataclass(slots=True)
class Lot:
    id: uuid.UUID
    sale_id: uuid.UUID | None
    points: int
    remaining: int
    pending: bool
    earned_at: datetime
    available_at: datetime
    expires_at: datetime
    release_run: datetime  # the nightly runs that release, announce and expire it
    notice_run: datetime
    expire_run: datetime
    notified_at: datetime | None = None


@dataclass(slots=True)
class CouponRec:
    id: uuid.UUID
    template: TemplateRef
    member_id: uuid.UUID
    code: str
    source: CouponSource
    source_ref: str
    issued_at: datetime
    valid_until: datetime
    status: CouponStatus = CouponStatus.ISSUED


@dataclass(slots=True)
class Period:
    id: uuid.UUID
    sale_id: uuid.UUID
    starts_at: datetime
    ends_at: datetime
    status: str = "active"
    notified_at: datetime | None = None


@dataclass(slots=True)
class Reward:
    id: uuid.UUID
    card_id: uuid.UUID
    member_id: uuid.UUID
    earned_at: datetime
    expires_at: datetime
    sale_id: uuid.UUID
    status: str = "available"
    redeemed: tuple[datetime, uuid.UUID, uuid.UUID, str, str] | None = None  # at, store...
    closed_at: datetime | None = None


@dataclass(frozen=True)
class WinbackCall:
    """A call the win-back rule asked the home store to make (created by the feedback
    stage through ``feedback.service.create_callback``)."""

    member_id: uuid.UUID
    store_id: uuid.UUID
    at: datetime
    due_on: date
    days_away: int


@dataclass
class LoyaltyRows:
    """What the replay wrote, as rows for ``bulk.insert_rows`` (columns below)."""

    points_accounts: list[tuple[Any, ...]] = field(default_factory=list)
    points_lots: list[tuple[Any, ...]] = field(default_factory=list)
    points_entries: list[tuple[Any, ...]] = field(default_factory=list)
    member_tiers: list[tuple[Any, ...]] = field(default_factory=list)
    tier_changes: list[tuple[Any, ...]] = field(default_factory=list)
    memberships: list[tuple[Any, ...]] = field(default_factory=list)
    wallet_accounts: list[tuple[Any, ...]] = field(default_factory=list)
    wallet_entries: list[tuple[Any, ...]] = field(default_factory=list)
    coupons: list[tuple[Any, ...]] = field(default_factory=list)
    coupon_redemptions: list[tuple[Any, ...]] = field(default_factory=list)
    care_occasions: list[tuple[Any, ...]] = field(default_factory=list)
    referral_codes: list[tuple[Any, ...]] = field(default_factory=list)
    referral_attributions: list[tuple[Any, ...]] = field(default_factory=list)
    referral_rewards: list[tuple[Any, ...]] = field(default_factory=list)
    stamp_cards: list[tuple[Any, ...]] = field(default_factory=list)
    stamp_entries: list[tuple[Any, ...]] = field(default_factory=list)
    stamp_rewards: list[tuple[Any, ...]] = field(default_factory=list)
    stamp_sales: list[tuple[Any, ...]] = field(default_factory=list)
    winback_calls: list[WinbackCall] = field(default_factory=list)
    # when each member's points ledger last moved (complaint compensation comes after it)
    last_points_at: dict[uuid.UUID, datetime] = field(default_factory=dict)

    def tables(self) -> list[tuple[str, tuple[str, ...], list[tuple[Any, ...]]]]:
        """(table, columns, rows) in an order the foreign keys accept."""
        return [
            ("points_accounts", POINTS_ACCOUNT_COLUMNS, self.points_accounts),
            ("points_lots", POINTS_LOT_COLUMNS, self.points_lots),
            ("points_entries", POINTS_ENTRY_COLUMNS, self.points_entries),
            ("member_tiers", MEMBER_TIER_COLUMNS, self.member_tiers),
            ("tier_changes", TIER_CHANGE_COLUMNS, self.tier_changes),
            ("memberships", MEMBERSHIP_COLUMNS, self.memberships),
            ("wallet_accounts", WALLET_ACCOUNT_COLUMNS, self.wallet_accounts),
            ("wallet_entries", WALLET_ENTRY_COLUMNS, self.wallet_entries),
            ("coupons", COUPON_COLUMNS, self.coupons),
            ("coupon_redemptions", REDEMPTION_COLUMNS, self.coupon_redemptions),
            ("care_occasions", OCCASION_COLUMNS, self.care_occasions),
            ("referral_codes", REFERRAL_CODE_COLUMNS, self.referral_codes),
            ("referral_attributions", ATTRIBUTION_COLUMNS, self.referral_attributions),
            ("referral_rewards", REWARD_COLUMNS, self.referral_rewards),
            ("stamp_cards", STAMP_CARD_COLUMNS, self.stamp_cards),
            ("stamp_rewards", STAMP_REWARD_COLUMNS, self.stamp_rewards),
            ("stamp_entries", STAMP_ENTRY_COLUMNS, self.stamp_entries),
            ("stamp_sales", STAMP_SALE_COLUMNS, self.stamp_sales),
        ]


POINTS_ACCOUNT_COLUMNS = ("id", "member_id", "available", "pending", "debt", "lifetime_earned",
                          "updated_at")
POINTS_LOT_COLUMNS = ("id", "account_id", "sale_id", "points", "remaining", "is_pending",
                      "earned_at", "available_at", "expires_at", "expiring_notified_at")
POINTS_ENTRY_COLUMNS = ("id", "account_id", "kind", "available_delta", "pending_delta",
                        "debt_delta", "available_after", "pending_after", "debt_after",
                        "lot_id", "sale_id", "store_id", "actor_label", "reason", "occurred_at")
MEMBER_TIER_COLUMNS = ("member_id", "tier_id", "since", "held_until", "source")
TIER_CHANGE_COLUMNS = ("member_id", "from_tier_id", "to_tier_id", "reason", "qualifying_value",
                       "at")
MEMBERSHIP_COLUMNS = ("id", "member_id", "plan_id", "sale_id", "starts_at", "ends_at", "status",
                      "expiring_notified_at")
WALLET_ACCOUNT_COLUMNS = ("id", "member_id", "principal_minor", "bonus_minor", "created_at",
                          "updated_at")
WALLET_ENTRY_COLUMNS = ("id", "account_id", "kind", "principal_delta_minor",
                        "bonus_delta_minor", "principal_after_minor", "bonus_after_minor",
                        "store_id", "sale_id", "reverses_id", "actor_label", "reason",
                        "occurred_at")
COUPON_COLUMNS = ("id", "template_id", "member_id", "code", "status", "source", "source_ref",
                  "issued_at", "issued_by", "valid_from", "valid_until")
REDEMPTION_COLUMNS = ("id", "coupon_id", "template_id", "member_id", "store_id", "sale_id",
                      "reference", "eligible_minor", "discount_minor", "actor_label",
                      "redeemed_at")
OCCASION_COLUMNS = ("id", "rule", "member_id", "occasion", "created_at", "message_id",
                    "coupon_code")
REFERRAL_CODE_COLUMNS = ("id", "member_id", "code", "created_at")
ATTRIBUTION_COLUMNS = ("id", "referred_member_id", "referrer_member_id", "code", "actor_label",
                       "attributed_at")
REWARD_COLUMNS = ("id", "referred_member_id", "referrer_member_id", "sale_id", "purchase_minor",
                  "outcome", "referrer_coupon_id", "referred_coupon_id", "occurred_at")
STAMP_CARD_COLUMNS = ("id", "member_id", "programme_id", "stamps", "debt", "created_at",
                      "updated_at")
STAMP_ENTRY_COLUMNS = ("id", "card_id", "kind", "stamps_delta", "debt_delta", "stamps_after",
                       "debt_after", "reward_id", "sale_id", "store_id", "actor_label",
                       "reason", "occurred_at")
STAMP_REWARD_COLUMNS = ("id", "card_id", "member_id", "programme_id", "status", "earned_at",
                        "expires_at", "earned_sale_id", "redeemed_at", "redeemed_store_id",
                        "redeemed_sale_id", "reference", "redeemed_by", "closed_at")
STAMP_SALE_COLUMNS = ("id", "card_id", "sale_id", "store_id", "items", "stamps",
                      "items_refunded", "stamps_removed", "awarded_at")


def _utc_day(at: datetime) -> date:
    return at.astimezone(UTC).date()


class Replay:
    """Shared state of one replay: the programme, the sales, the id source, the rows."""

    def __init__(self, *, programme: Programme, members: list[MemberDraft],
                 sales: list[SaleDraft], when: Schedule, stores: list[StoreRef],
                 products: list[ProductRef], labels: dict[uuid.UUID, str], start_on: date,
                 spend_order: SpendOrder, rng: np.random.Generator,
                 rnd: random.Random, advance: Callable[[int], None] | None = None) -> None:
        self.programme = programme
        self.advance = advance
        self.t = programme.timeline
        self.members = members
        self.sales = sales
        self.when = when
        self.stores = stores
        self.products = products
        self.labels = labels
        self.spend_order = spend_order
        self.ids = IdSource(rng)
        self.rnd = rnd
        self.rows = LoyaltyRows()
        self.tier_rules = [loyalty_rules.TierRule(t.id, t.rank, t.threshold)
                           for t in programme.tiers]
        self.tier_by_id = {t.id: t for t in programme.tiers}
        self.plan_tier = self.tier_by_id[programme.plan.tier_id]
        self.coffee = programme.stamps.category
        self.codes: set[str] = set()
        t = self.t
        first = t.opened_at.astimezone(t.tz).date() - timedelta(days=1)
        self.runs = [datetime.combine(first + timedelta(days=k), NIGHTLY_RUN, tzinfo=t.tz)
                     .astimezone(UTC)
                     for k in range((t.now.astimezone(t.tz).date() - first).days + 800)]
        self.earned = 0  # earns so far; every EARN_CHECK-th is also priced by points_for
        self.shifts: dict[tuple[date, int], timedelta] = {}
        self.birthday_dates: dict[tuple[str, int, int, bool], list[date]] = {}
        days = max((d.day for d in sales), default=0) + 1
        self.day_on = [start_on + timedelta(days=k) for k in range(days)]  # a sale's local day
        self.care_day = self.t.care_at.astimezone(self.t.tz).date()
        self.first_care_run = (self.t.care_run(self.care_day) if self.t.care_run(self.care_day)
                               >= self.t.care_at else
                               self.t.care_run(self.care_day + timedelta(days=1)))
        # referral rewards found before the members are replayed: referrer -> coupons
        self.referrer_coupons: dict[int, list[CouponRec]] = {}
        self.referred_coupons: dict[int, CouponRec] = {}

    def birthdays_of(self, key: tuple[str, int, int, bool]) -> list[date]:
        """The solar dates a (calendar, month, day, leap) birthday fell on from the chain's
        opening to now (``care.calendar.occasion_dates``); members share them."""
        days = self.birthday_dates.get(key)
        if days is None:
            cal, month, day, leap = key
            t = self.t
            days = self.birthday_dates[key] = calendar.occasion_dates(
                calendar.Occasion(Calendar(cal), month, day, None, leap),
                t.opened_at.astimezone(t.tz).date().replace(day=1), t.now.astimezone(t.tz).date())
        return days

    def months_later(self, at: datetime, months: int) -> datetime:
        """``loyalty.rules.add_months`` of a UTC instant: it moves the date and keeps the
        time of day, so the shift is worked out once per date and month count."""
        key = (at.date(), months)
        shift = self.shifts.get(key)
        if shift is None:
            midnight = datetime.combine(key[0], datetime.min.time(), tzinfo=UTC)
            shift = self.shifts[key] = loyalty_rules.add_months(midnight, months) - midnight
        return at + shift

    def expires_at(self, earned_at: datetime) -> datetime:
        """``loyalty.rules.expires_at`` under the programme's policy."""
        p = self.programme
        if p.expiry_policy is ExpiryPolicy.MONTHS:
            return self.months_later(earned_at, p.expiry_months)
        expires = loyalty_rules.expires_at(earned_at, policy=p.expiry_policy,
                                           months=p.expiry_months, tz=self.t.tz.key)
        assert expires is not None, "the demo's programme lets points expire"
        return expires

    def next_run(self, at: datetime) -> datetime:
        """``Timeline.next_run``, from a table of the nights (it is asked a million times)."""
        k = bisect.bisect_left(self.runs, at)
        return self.runs[k] if k < len(self.runs) else self.t.next_run(at)

    def points_for(self, base_minor: int, tier_pct: int, birthday_pct: int | None,
                   at: datetime, product: ProductRef) -> int:
        """Points a sale paying ``base_minor`` earns (checkout's ``points_for`` call).

        Without product, category or promotion multipliers the basket earns
        ``base x rate x tier % x birthday %`` rounded once, in whole integers; that
        arithmetic is used, and every ``EARN_CHECK``-th sale is priced by
        ``loyalty.rules.points_for`` as well to prove they agree.
        """
        p = self.programme
        numerator = base_minor * p.points_per_major * tier_pct * (birthday_pct or 100)
        denominator = MINOR_PER_MAJOR * 100 * 100
        if p.rounding is Rounding.FLOOR:
            points = numerator // denominator
        else:
            points = loyalty_rules.round_points(Fraction(numerator, denominator), p.rounding)
        self.earned += 1
        if self.earned % EARN_CHECK == 1:
            exact = loyalty_rules.points_for(
                [loyalty_rules.EarnLine(base_minor, product.id, product.category_id)],
                points_per_major=p.points_per_major, minor_per_major=MINOR_PER_MAJOR,
                multipliers=(), tier_pct=tier_pct, birthday_pct=birthday_pct, now=at,
                rounding=p.rounding)
            assert exact == max(0, points), (base_minor, tier_pct, birthday_pct, exact, points)
        return max(0, points)

    # ------------------------------------------------------------ codes and coupons

    def _code(self, length: int) -> str:
        alphabet = offer_rules.ALPHABET
        while True:
            body = "".join(self.rnd.choices(alphabet, k=length - 1))
            code = body + offer_rules.check_character(body)
            if code not in self.codes:
                self.codes.add(code)
                return code

    def coupon(self, template: TemplateRef, member: MemberDraft, at: datetime,
               source: CouponSource, source_ref: str) -> CouponRec:
        return CouponRec(id=self.ids.at(at), template=template, member_id=member.id,
                         code=self._code(offer_rules.COUPON_CODE_LENGTH), source=source,
                         source_ref=source_ref, issued_at=at,
                         valid_until=at + timedelta(days=template.valid_days))

    def write_coupon(self, c: CouponRec) -> None:
        self.rows.coupons.append((c.id, c.template.id, c.member_id, c.code, c.status.value,
                                  c.source.value, c.source_ref[:64], c.issued_at, "system",
                                  c.issued_at, c.valid_until))

    # ------------------------------------------------------------ referrals

    def settle_referrals(self, first_sale: dict[int, int]) -> None:
        """Referral codes, attributions and first-purchase rewards (``offers.service``'s
        ``attribute_referral`` and ``on_first_purchase``) for members referred by a friend
        after the referral rule was switched on."""
        p, rows = self.programme, self.rows
        codes: dict[int, str] = {}
        for m in self.members:
            if m.referred_by is None or m.joined_at < self.t.care_at or m.index not in first_sale:
                continue
            referrer = self.members[m.referred_by]
            if m.referred_by not in codes:
                codes[m.referred_by] = self._code(offer_rules.REFERRAL_CODE_LENGTH)
                created = max(referrer.joined_at, m.joined_at - timedelta(days=2))
                rows.referral_codes.append((self.ids.at(created), referrer.id,
                                            codes[m.referred_by], created))
            rows.referral_attributions.append((
                self.ids.at(m.joined_at), m.id, referrer.id, codes[m.referred_by],
                self.labels[m.enrolled_by], m.joined_at))
            i = first_sale[m.index]
            at = self.when.at[i] + timedelta(milliseconds=1)
            amount = self.sales[i].total_minor  # no tier, coupon or points on a first sale
            reward_id = self.ids.at(at)
            mine = theirs = None
            if amount >= p.referral_min_purchase_minor:
                theirs = self.coupon(p.referrer, referrer, at, CouponSource.REFERRAL,
                                     str(reward_id))
                mine = self.coupon(p.welcome, m, at, CouponSource.REFERRAL, str(reward_id))
                self.referrer_coupons.setdefault(referrer.index, []).append(theirs)
                self.referred_coupons[m.index] = mine
            rows.referral_rewards.append((
                reward_id, m.id, referrer.id, self.when.sale_ids[i], amount,
                "rewarded" if mine else "below_minimum", theirs.id if theirs else None,
                mine.id if mine else None, at))

    # ------------------------------------------------------------ the whole replay

    def run(self) -> LoyaltyRows:
        by_member: dict[int, list[int]] = {}
        for i in self.when.order:
            if self.sales[i].member >= 0:
                by_member.setdefault(self.sales[i].member, []).append(i)
        self.settle_referrals({m: idx[0] for m, idx in by_member.items()})
        spend = np.zeros(len(self.members))
        for k, idx in by_member.items():
            spend[k] = sum(self.sales[i].total_minor for i in idx)
        rank = np.empty(len(self.members))
        rank[np.argsort(spend, kind="stable")] = np.linspace(0.0, 1.0, len(self.members))
        for member in self.members:
            Life(self, member, by_member.get(member.index, []), float(rank[member.index])).live()
            if self.advance is not None and member.index % 1_000 == 999:
                self.advance(1_000)
        rows = self.rows
        # production rows are appended in time order: so are these (stable for ties)
        for table, column in ((rows.points_lots, 6), (rows.points_entries, 14),
                              (rows.wallet_entries, 12),
                              (rows.tier_changes, 5), (rows.stamp_entries, 12)):
            table.sort(key=itemgetter(column))
        return rows


class Life:
    """One member's programme history: their points, tier, wallet, coupons, plan, card."""

    def __init__(self, replay: Replay, member: MemberDraft, sales: list[int],
                 spend_rank: float) -> None:
        self.r = replay
        self.p = replay.programme
        self.m = member
        self.sales = sales
        self.heap: list[tuple[datetime, int, int, Any]] = []
        self.counter = 0
        rnd = replay.rnd
        # points
        self.account: uuid.UUID | None = None
        self.available = self.pending = self.lifetime = 0
        self.lots: list[Lot] = []
        self.open_from = 0  # lots before this index hold no points
        self.notice_from = self.expire_from = 0  # the next lots the nightly run looks at
        self.waiting: deque[Lot] = deque()  # pending lots, oldest first
        self.points_at: datetime | None = None
        # tier
        self.tier: TierRef | None = None
        self.tier_since: datetime | None = None
        self.held_until: date | None = None
        self.tier_source = "earned"
        self.tier_version = 0
        self.window: deque[tuple[datetime, int]] = deque()  # sales of the last 12 months
        self.window_sum = 0
        self.history: list[tuple[datetime, int]] = []  # every sale: (at, total)
        # stored value
        top = spend_rank >= 0.95
        self.wallet_holder = rnd.random() < (0.55 if top else 0.35 if spend_rank >= 0.85
                                             else 0.16 if spend_rank >= 0.5 else 0.06)
        self.wallet_id: uuid.UUID | None = None
        self.wallet_at: datetime | None = None
        self.wallet_updated: datetime | None = None
        self.principal = self.bonus = 0
        self.topup_wanted = self.wallet_holder
        self.topup_sizes = (100_000, 200_000) if top else (50_000, 100_000) \
            if spend_rank >= 0.6 else (50_000,)
        # habits
        self.redeems = rnd.random() < 0.6
        self.plus_minded = rnd.random() < 0.25
        self.birthdays = self._birthdays()
        # coupons, paid plan, stamp card
        self.coupons: list[CouponRec] = []
        self.periods: list[Period] = []
        self.card: uuid.UUID | None = None
        self.card_at: datetime | None = None
        self.card_updated: datetime | None = None
        self.stamps = 0
        self.rewards: list[Reward] = []

    # ------------------------------------------------------------ scheduling

    def push(self, at: datetime, kind: int, item: Any = None) -> None:
        self.counter += 1
        heapq.heappush(self.heap, (at, kind, self.counter, item))

    def live(self) -> None:
        r, t = self.r, self.r.t
        for i in self.sales:
            self.push(r.when.at[i], SALE, i)
        joined = self.m.joined_at
        if joined >= t.care_at and self.m.referred_by is None:  # referred: see referrals
            self.push(joined, ISSUE, r.coupon(self.p.welcome, self.m, joined,
                                              CouponSource.CAMPAIGN, "welcome"))
        if self.m.index in r.referred_coupons:
            coupon = r.referred_coupons[self.m.index]
            self.push(coupon.issued_at, ISSUE, coupon)
        for coupon in r.referrer_coupons.get(self.m.index, []):
            self.push(coupon.issued_at, ISSUE, coupon)
        for on in self.birthdays[1]:
            run = t.care_run(on)
            if run >= r.first_care_run and run > joined:
                self.push(run, BIRTHDAY, on)
        handlers: dict[int, Callable[[datetime, Any], None]] = {
            PLAN_NOTICE: self._plan_notice, PLAN_END: self._plan_end, REVIEW: self._review,
            COUPON_END: self._coupon_end, REWARD_END: self._reward_end,
            BIRTHDAY: self._birthday, WINBACK: self._winback, ISSUE: self._issue,
            SALE: self._sale}
        heap, now, lots, waiting = self.heap, t.now, self.lots, self.waiting
        far = datetime.max.replace(tzinfo=UTC)
        # Lots are released, announced and expired in the order they were earned, so those
        # three nightly steps are streams over the lots, merged here with the heap of
        # everything else (at one instant: release, notice, expiry, then the heap's kinds).
        while True:
            release = waiting[0].release_run if waiting else far
            notice = lots[self.notice_from].notice_run if self.notice_from < len(lots) else far
            expire = lots[self.expire_from].expire_run if self.expire_from < len(lots) else far
            other = heap[0][0] if heap else far
            first = min(release, notice, expire, other)
            if first > now:
                break
            if release == first:
                self._release_due(first)
            elif notice == first:
                self._notice(first, lots[self.notice_from])
                self.notice_from += 1
            elif expire == first:
                self._expire(first, lots[self.expire_from])
                self.expire_from += 1
            else:
                at, kind, _, item = heapq.heappop(heap)
                handlers[kind](at, item)
        self._write()

    def _birthdays(self) -> tuple[set[tuple[int, int]], list[date]]:
        """(year, month) pairs that are the member's birthday month, and the birthdays on
        which the care rule greeted them (from the day the rules were switched on)."""
        if self.m.birthday is None:
            return set(), []
        cal, _, month, day, leap = self.m.birthday
        first = self.m.joined_at.astimezone(self.r.t.tz).date().replace(day=1)
        days = [d for d in self.r.birthdays_of((cal, month, day, leap)) if d >= first]
        return {(d.year, d.month) for d in days}, [d for d in days if d >= self.r.care_day]

    # ------------------------------------------------------------ points

    def _entry(self, at: datetime, kind: str, available: int = 0, pending: int = 0,
               lot: Lot | None = None, sale_id: uuid.UUID | None = None,
               store_id: uuid.UUID | None = None, actor: str = "system",
               reason: str = "") -> None:
        self.available += available
        self.pending += pending
        assert self.available >= 0
        assert self.pending >= 0
        self.r.rows.points_entries.append((
            self.r.ids.at(at), self.account, kind, available, pending, 0, self.available,
            self.pending, 0, lot.id if lot else None, sale_id, store_id, actor, reason, at))
        self.points_at = at

    def _release_due(self, now: datetime) -> None:
        while self.waiting and self.waiting[0].available_at <= now:
            lot = self.waiting.popleft()
            lot.pending = False
            if lot.remaining:
                self._entry(now, "release", available=lot.remaining, pending=-lot.remaining,
                            lot=lot, sale_id=lot.sale_id)

    def _notice(self, at: datetime, lot: Lot) -> None:
        if lot.remaining and lot.notified_at is None \
                and at < lot.expires_at <= at + timedelta(days=self.p.expiring_notice_days):
            lot.notified_at = at

    def _expire(self, at: datetime, lot: Lot) -> None:
        if lot.remaining:
            self._release_due(at)
            points, lot.remaining = lot.remaining, 0
            self._entry(at, "expire", available=-points, lot=lot, reason="expired")

    def _earn(self, at: datetime, points: int, sale_id: uuid.UUID, store_id: uuid.UUID,
              actor: str, reason: str) -> None:
        r, p = self.r, self.p
        if self.account is None:
            self.account = r.ids.at(at)
        self._release_due(at)
        self.lifetime += points
        pending = p.pending_days > 0
        expires = r.expires_at(at)
        available_at = at + timedelta(days=p.pending_days if pending else 0)
        lot = Lot(id=r.ids.at(at), sale_id=sale_id, points=points, remaining=points,
                  pending=pending, earned_at=at, available_at=available_at, expires_at=expires,
                  release_run=r.next_run(available_at),
                  notice_run=r.next_run(expires - timedelta(days=p.expiring_notice_days)),
                  expire_run=r.next_run(expires))
        self.lots.append(lot)
        if pending:
            self.waiting.append(lot)
        self._entry(at, "earn", available=0 if pending else points,
                    pending=points if pending else 0, lot=lot, sale_id=sale_id,
                    store_id=store_id, actor=actor, reason=reason)

    def _matured(self, now: datetime) -> int:
        """Points usable now: available plus pending lots past their return window
        (``loyalty.service.balance``)."""
        return self.available + sum(lot.remaining for lot in self.waiting
                                    if lot.available_at <= now)

    def _redeem(self, at: datetime, points: int, sale_id: uuid.UUID, store_id: uuid.UUID,
                actor: str, reason: str) -> None:
        self._release_due(at)
        left = points
        while left:
            lot = self.lots[self.open_from]
            take = min(left, lot.remaining)
            lot.remaining -= take
            left -= take
            if not lot.remaining:
                self.open_from += 1
        self._entry(at, "redeem", available=-points, sale_id=sale_id, store_id=store_id,
                    actor=actor, reason=reason)

    # ------------------------------------------------------------ tiers

    def _spend_since(self, now: datetime) -> int:
        """Spend of the rolling 12 months (``sales.queries.member_net_spend``)."""
        window = self.window
        if window and window[0][0] < now - YEAR_AT_LEAST:  # else nothing can have left it
            since = self.r.months_later(now, -12)
            while window and window[0][0] < since:
                self.window_sum -= window.popleft()[1]
        return self.window_sum

    def _change_tier(self, at: datetime, new: TierRef, reason: str, value: int,
                     source: str, held_until: date) -> None:
        self.r.rows.tier_changes.append((self.m.id, self.tier.id if self.tier else None, new.id,
                                         reason, value, at))
        self.tier, self.tier_since = new, at
        self.held_until, self.tier_source = held_until, source
        self._schedule_review()

    def _schedule_review(self) -> None:
        self.tier_version += 1
        if self.tier_source != "paid" and self.held_until is not None:
            # the review runs when the run's UTC date reaches held_until
            due = datetime.combine(self.held_until, datetime.min.time(), tzinfo=UTC)
            self.push(self.r.next_run(due), REVIEW, self.tier_version)

    def _evaluate(self, now: datetime, allow_downgrade: bool) -> None:
        """``loyalty.service.evaluate_tier``."""
        value = self._spend_since(now)
        target = loyalty_rules.qualifying_tier(value, self.r.tier_rules)
        if target is None:
            return
        new = self.r.tier_by_id[target.id]
        current = self.tier
        if current is not None and new.rank == current.rank:
            return
        downgrade = current is not None and new.rank < current.rank
        still_held = self.tier_source == "paid" or bool(
            self.held_until and self.held_until > _utc_day(now))
        if downgrade and (not allow_downgrade or still_held):
            return
        held = loyalty_rules.held_until(now, grace_days=self.p.downgrade_grace_days).date()
        self._change_tier(now, new, "qualified" if current is None or new.rank > current.rank
                          else "downgraded", value, "earned", held)

    def _review(self, at: datetime, version: int) -> None:
        """``loyalty.service.review_tiers`` for this member."""
        if version != self.tier_version or self.tier_source == "paid" \
                or self.held_until is None or self.held_until > _utc_day(at):
            return
        self._evaluate(at, allow_downgrade=True)
        if self.held_until is not None and self.held_until <= _utc_day(at):
            self.held_until = loyalty_rules.held_until(at, grace_days=0).date()
            self._schedule_review()

    # ------------------------------------------------------------ paid membership

    def _paid_until(self) -> datetime | None:
        active = [p.ends_at for p in self.periods if p.status == "active"]
        return max(active) if active else None

    def _wants_plan(self, at: datetime) -> bool:
        if at < self.r.t.plus_at:
            return False
        paid_until = self._paid_until()
        if paid_until is not None and paid_until > at:  # a renewal moves paid_until on
            return paid_until - at <= timedelta(days=30) and self.r.rnd.random() < PLUS_RENEW
        rank = self.tier.rank if self.tier else 0
        return (self.plus_minded and rank < self.r.plan_tier.rank
                and self._spend_since(at) >= PLUS_MIN_SPEND and self.r.rnd.random() < 0.15)

    def _start_plan(self, at: datetime, sale_id: uuid.UUID) -> None:
        """``membership.start_from_sale`` and its ``_grant_tier``."""
        plan = self.p.plan
        start = max(at, self._paid_until() or at)
        end = start + timedelta(days=plan.duration_days)
        period = Period(self.r.ids.at(at), sale_id, start, end)
        self.periods.append(period)
        self.push(self.r.next_run(end - timedelta(days=PLAN_NOTICE_DAYS)), PLAN_NOTICE, period)
        self.push(self.r.next_run(end), PLAN_END, period)
        granted = self.r.plan_tier
        if self.tier is not None and self.tier.rank > granted.rank:
            return
        if self.tier is None or self.tier.id != granted.id:
            self._change_tier(at, granted, "paid membership", 0, "paid", _utc_day(end))
        else:
            self.held_until, self.tier_source = _utc_day(end), "paid"
            self._schedule_review()

    def _plan_notice(self, at: datetime, period: Period) -> None:
        if period.status == "active" and period.notified_at is None \
                and at < period.ends_at <= at + timedelta(days=PLAN_NOTICE_DAYS):
            period.notified_at = at

    def _plan_end(self, at: datetime, period: Period) -> None:
        """``membership.run_daily``: expire the period, release a paid tier."""
        if period.status != "active":
            return
        period.status = "expired"
        running = any(p.status == "active" and p.starts_at <= at < p.ends_at
                      for p in self.periods)
        if not running and self.tier_source == "paid":
            self.tier_source, self.held_until = "earned", _utc_day(at)
            self._schedule_review()

    # ------------------------------------------------------------ coupons

    def _issue(self, at: datetime, coupon: CouponRec) -> None:
        self.coupons.append(coupon)
        self.push(self.r.next_run(coupon.valid_until), COUPON_END, coupon)

    def _coupon_end(self, at: datetime, coupon: CouponRec) -> None:
        if coupon.status is CouponStatus.ISSUED:
            coupon.status = CouponStatus.EXPIRED

    def _occasion(self, at: datetime, rule: str, occasion: str, coupon: CouponRec) -> None:
        self.r.rows.care_occasions.append((self.r.ids.at(at), rule, self.m.id, occasion, at,
                                           None, coupon.code))
        self._issue(at, coupon)

    def _birthday(self, at: datetime, on: date) -> None:
        """The care birthday rule at 09:00 on the day: a greeting with the coupon."""
        cal, _, month, day, leap = self.m.birthday or ("solar", None, 1, 1, False)
        spec = calendar.Occasion(Calendar(cal), month, day, None, leap)
        year = calendar.celebration_year(spec, on)
        self._occasion(at, "birthday", f"{year}", self.r.coupon(
            self.p.birthday, self.m, at, CouponSource.BIRTHDAY, f"birthday:{year}"))

    def _winback(self, at: datetime, last_at: datetime) -> None:
        """The care win-back rule, 90 days after the last visit, for members who spent
        enough in the year before it (``care.service.winback``)."""
        if self.history[-1][0] != last_at:
            return  # they came back
        since = last_at - timedelta(days=self.p.winback_window_days)
        k = bisect.bisect_left(self.history, (since, -1))
        if sum(total for _, total in self.history[k:]) < self.p.winback_min_spend_minor:
            return
        t = self.r.t
        last_day = last_at.astimezone(t.tz).date()
        self._occasion(at, "winback", last_day.isoformat(), self.r.coupon(
            self.p.winback, self.m, at, CouponSource.CARE, f"winback:{last_day.isoformat()}"))
        if at >= t.callbacks_at:
            today = at.astimezone(t.tz).date()
            home = self.r.stores[self.m.home_store].id
            self.r.rows.winback_calls.append(WinbackCall(
                self.m.id, home, at, today + timedelta(days=self.p.winback_callback_due_days),
                (today - last_day).days))

    def _best_coupon(self, at: datetime, lines: list[tuple[int, int, int, int]]
                     ) -> tuple[CouponRec, offer_rules.Discount] | None:
        usable = [c for c in self.coupons if c.status is CouponStatus.ISSUED
                  and c.issued_at <= at < c.valid_until]
        if not usable:
            return None
        products = self.r.products
        # checkout quotes a line a promotion reduced as one unit at what is left of it
        quote = [offer_rules.QuoteLine(products[p].id, products[p].category_id, q, price)
                 if not disc else
                 offer_rules.QuoteLine(products[p].id, products[p].category_id, 1,
                                       q * price - disc)
                 for p, q, price, disc in lines]
        best: tuple[CouponRec, offer_rules.Discount] | None = None
        for coupon in usable:
            try:
                found = offer_rules.discount_for(coupon.template.terms, quote)
            except offer_rules.Refusal:
                continue
            if best is None or found.discount_minor > best[1].discount_minor:
                best = (coupon, found)
        return best

    # ------------------------------------------------------------ stored value

    def _wallet(self, at: datetime, kind: str, principal: int, bonus: int,
                store_id: uuid.UUID, actor: str, sale_id: uuid.UUID | None = None,
                reason: str = "") -> uuid.UUID:
        if self.wallet_id is None:
            self.wallet_id, self.wallet_at = self.r.ids.at(at), at
        self.wallet_updated = at
        self.principal += principal
        self.bonus += bonus
        assert self.principal >= 0
        assert self.bonus >= 0
        entry_id = self.r.ids.at(at)
        self.r.rows.wallet_entries.append((
            entry_id, self.wallet_id, kind, principal, bonus, self.principal, self.bonus,
            store_id, sale_id, None, actor, reason, at))
        return entry_id

    # ------------------------------------------------------------ stamps

    def _stamp(self, at: datetime, kind: str, stamps: int, sale_id: uuid.UUID,
               store_id: uuid.UUID, reward: Reward | None = None) -> None:
        self.stamps += stamps
        self.card_updated = at
        self.r.rows.stamp_entries.append((
            self.r.ids.at(at), self.card, kind, stamps, 0, self.stamps, 0,
            reward.id if reward else None, sale_id, store_id, "system", "", at))

    def _reward_end(self, at: datetime, reward: Reward) -> None:
        if reward.status == "available":
            reward.status, reward.closed_at = "expired", at

    def _stamps_for_sale(self, at: datetime, items: int, sale_id: uuid.UUID,
                         store_id: uuid.UUID, receipt: str, actor: str) -> None:
        """Use an earned reward now and then, then ``cards.service.stamps_for_sale``."""
        r, programme = self.r, self.p.stamps
        for reward in self.rewards:
            if reward.status == "available" and reward.expires_at > at \
                    and r.rnd.random() < REWARD_USE:
                reward.status = "redeemed"
                reward.redeemed = (at, store_id, sale_id, receipt, actor)
                break
        if self.card is None:
            self.card, self.card_at = r.ids.at(at), at
        r.rows.stamp_sales.append((r.ids.at(at), self.card, sale_id, store_id, items, items,
                                   0, 0, at))
        self._stamp(at, "earn", items, sale_id, store_id)
        while self.stamps >= programme.stamps_needed:
            expires = at + timedelta(days=programme.valid_days)
            reward = Reward(r.ids.at(at), self.card, self.m.id, at, expires, sale_id)
            self.rewards.append(reward)
            self.push(r.next_run(expires), REWARD_END, reward)
            self._stamp(at, "reward", -programme.stamps_needed, sale_id, store_id, reward)

    # ------------------------------------------------------------ a sale

    def _sale(self, at: datetime, i: int) -> None:
        r, p = self.r, self.p
        d = r.sales[i]
        sale_id, receipt = r.when.sale_ids[i], r.when.receipts[i]
        actor = r.labels[r.when.cashiers[i]]
        store_id = r.stores[d.store].id
        tier = self.tier
        d.tier_id = tier.id if tier else None
        lines = list(d.lines)
        if self.wallet_holder and self.topup_wanted and len(self.history) >= 1:
            amount = r.rnd.choice(self.topup_sizes)
            bonus = wallet_rules.bonus_for(amount, p.bonus_tiers, at)
            self._wallet(at - timedelta(seconds=90), "topup", amount, bonus, store_id, actor)
            self.topup_wanted = False
        plan = self._wants_plan(at)
        if plan:
            lines.append((p.plan.product, 1, p.plan.price_minor, 0))
        best = self._best_coupon(at, lines)
        if best is not None and r.rnd.random() < COUPON_USE:
            coupon, found = best
            lines = [(pr, q, price, disc + share) for (pr, q, price, disc), share
                     in zip(lines, found.line_discounts, strict=True)]
            d.discounts.append(("coupon", coupon.code, coupon.template.name,
                                found.discount_minor))
            coupon.status = CouponStatus.REDEEMED
            r.rows.coupon_redemptions.append((
                r.ids.at(at), coupon.id, coupon.template.id, self.m.id, store_id, sale_id,
                receipt, found.eligible_minor, found.discount_minor, actor, at))
        if tier is not None and tier.discount_pct:
            net = [q * price - disc for _, q, price, disc in lines]
            amount = proportion(sum(net), tier.discount_pct, 100)
            if amount > 0:
                lines = [(pr, q, price, disc + share) for (pr, q, price, disc), share
                         in zip(lines, allocate(amount, net), strict=True)]
                d.discounts.append(("tier", tier.code, f"{tier.name} -{tier.discount_pct}%",
                                    amount))
        d.lines = lines
        total = d.total_minor
        payments: list[Payment] = []
        due = total
        if self.redeems and self.account is not None and due >= MINOR_PER_MAJOR:
            usable = self._matured(at)
            if usable >= REDEEM_FROM_POINTS and r.rnd.random() < 0.35:
                value = loyalty_rules.points_value_minor(
                    1, points_per_major_redeemed=p.points_per_major_redeemed,
                    minor_per_major=MINOR_PER_MAJOR)
                step = p.points_per_major_redeemed  # one major unit's worth of points
                points = min(usable, int(due / value)) // step * step
                if points:
                    worth = int(loyalty_rules.points_value_minor(
                        points, points_per_major_redeemed=p.points_per_major_redeemed,
                        minor_per_major=MINOR_PER_MAJOR))
                    self._redeem(at, points, sale_id, store_id, actor, receipt)
                    d.points_redeemed = points
                    payments.append(("points", worth, str(points)))
                    due -= worth
        balance = self.principal + self.bonus
        if balance and due and r.rnd.random() < WALLET_PAY:
            amount = min(balance, due)
            from_principal, from_bonus = wallet_rules.split_spend(
                amount, self.principal, self.bonus, r.spend_order)
            entry = self._wallet(at, "spend", -from_principal, -from_bonus, store_id, actor,
                                 sale_id, receipt)
            payments.append(("wallet", amount, str(entry)))
            due -= amount
            if self.principal + self.bonus < 5_000 and r.rnd.random() < TOPUP_AGAIN:
                self.topup_wanted = True
        if payments:
            if due:
                payments.append(("card" if r.rnd.random() < 0.8 else "cash", due, None))
            d.payments = payments
        if plan:
            self._start_plan(at, sale_id)
        # checkout has flushed the sale: it counts towards the tier from here on
        self.window.append((at, total))
        self.window_sum += total
        self.history.append((at, total))
        base = total - sum(amount for method, amount, _ in payments if method == "points")
        local_day = r.day_on[d.day]
        points = r.points_for(base, tier.multiplier_pct if tier else 100,
                              p.birthday_multiplier_pct
                              if (local_day.year, local_day.month) in self.birthdays[0]
                              else None, at, r.products[lines[0][0]])
        if points:
            self._earn(at, points, sale_id, store_id, actor, receipt)
            d.points_earned = points
        self._evaluate(at, allow_downgrade=False)
        if at >= r.t.stamps_at:
            items = sum(q for pr, q, _, _ in d.lines if r.products[pr].category == r.coffee)
            if items:
                self._stamps_for_sale(at, items, sale_id, store_id, receipt, actor)
        run = r.t.care_run(local_day + timedelta(days=p.winback_days_away + 1))
        if run >= r.first_care_run:
            self.push(run, WINBACK, at)

    # ------------------------------------------------------------ rows

    def _write(self) -> None:
        rows, m = self.r.rows, self.m
        if self.account is not None:
            assert self.points_at is not None
            rows.points_accounts.append((self.account, m.id, self.available, self.pending, 0,
                                         self.lifetime, self.points_at))
            rows.last_points_at[m.id] = self.points_at
            assert self.available == sum(lot.remaining for lot in self.lots if not lot.pending)
            rows.points_lots.extend(
                (lot.id, self.account, lot.sale_id, lot.points, lot.remaining, lot.pending,
                 lot.earned_at, lot.available_at, lot.expires_at, lot.notified_at)
                for lot in self.lots)
        if self.tier is not None:
            assert self.tier_since is not None
            rows.member_tiers.append((m.id, self.tier.id, self.tier_since, self.held_until,
                                      self.tier_source))
        rows.memberships.extend((period.id, m.id, self.p.plan.id, period.sale_id,
                                 period.starts_at, period.ends_at, period.status,
                                 period.notified_at) for period in self.periods)
        if self.wallet_id is not None:
            rows.wallet_accounts.append((self.wallet_id, m.id, self.principal, self.bonus,
                                         self.wallet_at, self.wallet_updated))
        for coupon in self.coupons:
            self.r.write_coupon(coupon)
        if self.card is not None:
            assert self.card_at is not None
            rows.stamp_cards.append((self.card, m.id, self.p.stamps.id, self.stamps, 0,
                                     self.card_at, self.card_updated))
            for w in self.rewards:
                used: tuple[Any, ...] = w.redeemed or (None,) * 5
                rows.stamp_rewards.append((w.id, w.card_id, w.member_id, self.p.stamps.id,
                                           w.status, w.earned_at, w.expires_at, w.sale_id,
                                           *used, w.closed_at))


def replay(*, programme: Programme, members: list[MemberDraft], sales: list[SaleDraft],
           when: Schedule, stores: list[StoreRef], products: list[ProductRef],
           labels: dict[uuid.UUID, str], start_on: date, spend_order: SpendOrder,
           rng: np.random.Generator, rnd: random.Random,
           advance: Callable[[int], None] | None = None) -> LoyaltyRows:
    """Replay the programme over the sales (which gain their loyalty discounts, points,
    tier and payments in place); returns the rows of every loyalty table."""
    return Replay(programme=programme, members=members, sales=sales, when=when,
                  stores=stores, products=products, labels=labels, start_on=start_on,
                  spend_order=spend_order, rng=rng, rnd=rnd, advance=advance).run()


__all__: Sequence[str] = ("LoyaltyRows", "WinbackCall", "replay")
