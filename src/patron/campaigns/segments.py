"""Segments: a tree of rules about members, compiled to one SQL query.

Design overview
---------------
A segment is a tree: *groups* (``{"op": "all" | "any", "children": [...]}``) whose leaves
are *conditions* (``{"field": "p_alive", "op": "<", "value": 0.5}``); any node may carry
``"negate": true``. The tree arrives as plain JSON and is parsed here (:func:`parse_rules`)
rather than by a pydantic discriminated union, so that every problem names the field the
way the rule builder shows it (``rules.children.2.value``), without a union tag in the path,
and all problems of a tree are reported at once.

Conditions read three kinds of facts:

* the member's own fields: tier, home store, tags, join date, birthday month (solar; lunar
  birthdays are the care rule's business), SMS/e-mail consent, gender;
* behaviour: purchases (a *purchase* is a sale in status ``completed``; spend is the net
  ``total - refunded`` of every sale), products or categories bought (a line not returned
  in full; the category is the product's current one), coupons used, wallet and points
  balances, complaints;
* scores of the latest analytics snapshot (``member_scores`` of the latest succeeded run):
  RFM segment, ``p_alive``, CLV, lifecycle stage, loyalty type, next purchase date, and
  the member's portrait and automatic tags (``member_profiles`` of the same day). A
  member the snapshot does not score matches no score condition; without any snapshot
  score conditions match nobody.

"Within N days" is the rolling window ``[now - N days, now]``; a date (``joined before
2026-01-01``) is the brand's local midnight starting that day; "this month" and "today" are
the brand's local ones (DESIGN.md rule 7).

:func:`member_filter` turns a tree into one boolean SQL expression over ``members`` and
:func:`members_query` into one ``SELECT`` (never a loop over members in Python). Every
condition compiles to a *two-valued* predicate (``EXISTS``, ``IN (subquery)`` over non-NULL
ids, or a comparison guarded by ``IS NOT NULL``), so ``NOT`` of a condition is exactly the
complement and SQL's three-valued logic cannot silently drop members. How each kind of fact
is reached, and why (the indexes the planner can use on both SQLite and PostgreSQL):

* sales in a short window (at most :data:`SET_WINDOW_DAYS`): one set of recent buyers
  (``members.id IN (SELECT member_id FROM sales WHERE store_id IN (every store) AND
  occurred_at >= ...)``, with ``GROUP BY ... HAVING`` for counts and spend), read through
  the ``(store_id, occurred_at)`` index: the only index of ``sales`` that leads to a time
  range (``store_id IN`` every store is what lets the planner use it);
* sales over a long window or ever: correlated ``EXISTS`` / scalar subqueries, which seek
  the ``(member_id, occurred_at)`` index once per member still in question;
* small or member-keyed tables (tiers, tags, redemptions, complaints, balances, scores):
  ``members.id IN (SELECT member_id ...)``, computed once; the planner may drive the query
  from that set through the members' primary key when it is the smaller side. Sibling
  score conditions share one pass over the snapshot;
* balances, counts and spend where zero satisfies the comparison (``points < 100``):
  members *without* a row have zero, so this is ``NOT IN`` the rows that fail it.

The forms were chosen by ``bench/segments.py`` (1,000,000 members, about three million
sales, on SQLite without ``ANALYZE``); the figures are in docs/performance.md.

This module reads other domains' tables: it is the one place where "who matches" is decided
in SQL, and a service call per domain could not be combined into one query. It only reads.
"""

from __future__ import annotations

import operator
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any, ClassVar, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlalchemy import (
    ColumnElement,
    Select,
    String,
    and_,
    cast,
    false,
    func,
    not_,
    or_,
    select,
    true,
)
from sqlalchemy.orm import Session

from patron.analytics.portrait_tables import MemberProfile
from patron.analytics.tables import LIFECYCLE_STAGES, LOYALTY_TYPES, RFM_SEGMENTS, MemberScore
from patron.analytics.tags import TAG_CODES
from patron.analytics.tags import mask as tag_mask
from patron.core.errors import FieldProblem, ValidationFailed
from patron.feedback.models import Complaint
from patron.loyalty.models import MemberTier, PointsAccount, Tier
from patron.members.models import Member, MemberTag, Store
from patron.offers.models import CouponRedemption
from patron.sales.models import Sale, SaleLine
from patron.wallet.models import WalletAccount

MAX_DEPTH = 6
MAX_NODES = 100
MAX_CHILDREN = 50
MAX_VALUES = 200
MAX_DAYS = 3650
#: A purchase window at most this long is read as a set of recent sales (see the module
#: docstring); a longer one, or "ever", is checked per member.
SET_WINDOW_DAYS = 90

CompareOp = Literal["<", "<=", ">", ">=", "="]
COMPARE: dict[str, Callable[[Any, Any], Any]] = {
    "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge, "=": operator.eq}
#: The comparison that holds exactly when the key's does not.
COMPLEMENT: dict[str, Callable[[Any, Any], Any]] = {
    "<": operator.ge, "<=": operator.gt, ">": operator.le, ">=": operator.lt, "=": operator.ne}

Days = Annotated[int, Field(ge=1, le=MAX_DAYS)]
Minor = Annotated[int, Field(ge=0, le=10**15)]
Code = Annotated[str, Field(min_length=1, max_length=64)]


@dataclass(frozen=True)
class Scope:
    """When and where a segment is evaluated: the instant, the brand's zone and the
    analytics snapshot its score conditions read (None: there is none)."""

    now: datetime
    tz: str = "UTC"
    scores_as_of: date | None = None
    #: Set by :func:`member_filter` for conditions ANDed with a narrowing one (see there).
    narrowed: bool = False

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.tz)

    @property
    def today(self) -> date:
        return self.now.astimezone(self.zone).date()

    def since(self, days: int) -> datetime:
        return self.now - timedelta(days=days)

    def midnight(self, day: date) -> datetime:
        """The instant the brand's local ``day`` starts, in UTC."""
        return datetime.combine(day, time(), self.zone).astimezone(UTC)


# ---------------------------------------------------------------- the tree


class Condition(BaseModel):
    """A leaf of the tree. Subclasses name their ``field`` and compile themselves."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    negate: bool = False
    kind: ClassVar[str] = "member"  # member, behaviour or score: for the builder's menu

    def problems(self) -> list[tuple[str, str]]:
        """Problems pydantic cannot see (a value that does not fit the op): (field, message)."""
        return []

    def sql(self, scope: Scope) -> ColumnElement[bool]:
        raise NotImplementedError


@dataclass(frozen=True)
class Group:
    """``all`` (AND) or ``any`` (OR) of its children, optionally negated."""

    op: Literal["all", "any"]
    children: tuple[Rule, ...]
    negate: bool = False

    def dump(self) -> dict[str, Any]:
        out: dict[str, Any] = {"op": self.op, "children": [dump_rules(c) for c in self.children]}
        if self.negate:
            out["negate"] = True
        return out


def _unique(values: Sequence[Any]) -> list[Any]:
    return list(dict.fromkeys(values))


class _ValuesIn(Condition):
    """A condition whose ``value`` is a non-empty list of choices."""

    @field_validator("value", mode="after", check_fields=False)
    @classmethod
    def _dedupe(cls, value: list[Any]) -> list[Any]:
        return _unique(value)


# -- the member's own fields


class TierIs(_ValuesIn):
    """The member's current tier is one of these tier codes."""

    field: Literal["tier"]
    value: list[Code] = Field(min_length=1, max_length=MAX_VALUES)

    def sql(self, scope: Scope) -> ColumnElement[bool]:
        return Member.id.in_(select(MemberTier.member_id)
                             .join(Tier, Tier.id == MemberTier.tier_id)
                             .where(Tier.code.in_(self.value)))


class HomeStoreIs(_ValuesIn):
    """The member's home store is one of these stores."""

    field: Literal["home_store"]
    value: list[uuid.UUID] = Field(min_length=1, max_length=MAX_VALUES)

    def sql(self, scope: Scope) -> ColumnElement[bool]:
        return Member.home_store_id.in_(self.value)


class HasTags(_ValuesIn):
    """The member carries ``any`` (at least one) or ``all`` of these tags."""

    field: Literal["tags"]
    op: Literal["any", "all"] = "any"
    value: list[Code] = Field(min_length=1, max_length=MAX_VALUES)

    @field_validator("value", mode="before")
    @classmethod
    def _normalise(cls, value: Any) -> Any:
        # as members.rules.normalise_tag stores them: outer spaces off, inner runs of one
        if isinstance(value, list):
            return [" ".join(v.split()) if isinstance(v, str) else v for v in value]
        return value

    def sql(self, scope: Scope) -> ColumnElement[bool]:
        tagged = select(MemberTag.member_id).where(MemberTag.tag.in_(self.value))
        if self.op == "all":
            tagged = tagged.group_by(MemberTag.member_id).having(
                func.count() == len(self.value))
        return Member.id.in_(tagged)


class Joined(Condition):
    """Joined ``before`` a day, ``on_or_after`` a day, or ``within_days`` N days."""

    field: Literal["joined"]
    op: Literal["before", "on_or_after", "within_days"]
    value: date | int

    def problems(self) -> list[tuple[str, str]]:
        return _date_or_days(self.op, self.value)

    def sql(self, scope: Scope) -> ColumnElement[bool]:
        if self.op == "within_days":
            return Member.joined_at >= scope.since(_as_days(self.value))
        start = scope.midnight(_as_date(self.value))
        return Member.joined_at < start if self.op == "before" else Member.joined_at >= start


class BirthdayMonth(Condition):
    """The member's solar birthday falls in one of these months, or in the ``current`` or
    ``next`` month (the brand's local month when the segment is evaluated)."""

    field: Literal["birthday_month"]
    value: list[Annotated[int, Field(ge=1, le=12)]] | Literal["current", "next"]

    def months(self, scope: Scope) -> list[int]:
        if self.value == "current":
            return [scope.today.month]
        if self.value == "next":
            return [scope.today.month % 12 + 1]
        return _unique(list(self.value))

    def problems(self) -> list[tuple[str, str]]:
        if isinstance(self.value, list) and not self.value:
            return [("value", "Name at least one month")]
        return []

    def sql(self, scope: Scope) -> ColumnElement[bool]:
        return and_(or_(Member.birthday_calendar.is_(None), Member.birthday_calendar == "solar"),
                    Member.birth_month.is_not(None), Member.birth_month.in_(self.months(scope)))


class Consent(Condition):
    """The member has (``value: true``) or has not given consent for the channel."""

    field: Literal["sms_consent", "email_consent"]
    value: bool = True

    def sql(self, scope: Scope) -> ColumnElement[bool]:
        column = Member.sms_consent if self.field == "sms_consent" else Member.email_consent
        return column.is_(self.value)


GenderChoice = Literal["female", "male", "other", "unknown"]


class GenderIs(_ValuesIn):
    """The member's gender is one of these (``unknown``: not given)."""

    field: Literal["gender"]
    value: list[GenderChoice] = Field(min_length=1, max_length=4)

    def sql(self, scope: Scope) -> ColumnElement[bool]:
        known = [v for v in self.value if v != "unknown"]
        parts: list[ColumnElement[bool]] = []
        if known:
            parts.append(and_(Member.gender.is_not(None), Member.gender.in_(known)))
        if "unknown" in self.value:
            parts.append(Member.gender.is_(None))
        return or_(*parts)


# -- behaviour


def _cmp(op: str, left: Any, right: Any) -> ColumnElement[bool]:
    result: ColumnElement[bool] = COMPARE[op](left, right)
    return result


def _purchased(since: datetime | None = None) -> list[ColumnElement[bool]]:
    """Which sales are the member's purchases (completed), correlated to the outer
    ``members`` row, since ``since`` if given."""
    where = [Sale.member_id == Member.id, Sale.status == "completed"]
    if since is not None:
        where.append(Sale.occurred_at >= since)
    return where


def _bought_since(since: datetime | None = None) -> ColumnElement[bool]:
    return select(Sale.id).where(*_purchased(since)).exists()


def _recent(scope: Scope, since: datetime) -> bool:
    """Read this window as a set? Only when it is short and the members it is checked for
    have not already been narrowed down by a sibling condition (then a seek per member is
    cheaper than collecting every recent buyer)."""
    return not scope.narrowed and scope.now - since <= timedelta(days=SET_WINDOW_DAYS)


def _recent_sales(since: datetime) -> list[ColumnElement[bool]]:
    """Members' sales since ``since``, not correlated. ``store_id IN (every store)`` lets
    the planner range-scan ``ix_sales_store_occurred (store_id, occurred_at)`` once per
    store: the only index of ``sales`` that leads to a time range."""
    return [Sale.store_id.in_(select(Store.id)), Sale.occurred_at >= since,
            Sale.member_id.is_not(None)]


def _recent_buyers(since: datetime) -> ColumnElement[bool]:
    """The member made a purchase since ``since``, as a set of recent buyers."""
    return Member.id.in_(select(Sale.member_id).where(*_recent_sales(since),
                                                      Sale.status == "completed"))


def _bought_after(scope: Scope, since: datetime) -> ColumnElement[bool]:
    """A purchase since ``since``: a set when the window is short, else per member."""
    return _recent_buyers(since) if _recent(scope, since) else _bought_since(since)


def _grouped(aggregate: Any, op: str, value: int, since: datetime,
             *where: ColumnElement[bool]) -> ColumnElement[bool]:
    """``aggregate`` over each member's recent sales compared with ``value``, as a set
    (``GROUP BY member HAVING``). Members without such sales have an aggregate of zero:
    when zero passes, this is every member *except* those whose aggregate fails."""
    def members(having: ColumnElement[bool]) -> Any:
        return (select(Sale.member_id).where(*_recent_sales(since), *where)
                .group_by(Sale.member_id).having(having))
    if COMPARE[op](0, value):
        return not_(Member.id.in_(members(COMPLEMENT[op](aggregate, value))))
    return Member.id.in_(members(_cmp(op, aggregate, value)))


class LastPurchase(Condition):
    """When the member last bought: ``ever`` / ``never``; ``within_days`` N (bought in the
    last N days) / ``not_within_days`` N (no purchase in the last N days, including never);
    ``before`` a day (bought, but not since) / ``on_or_after`` a day."""

    kind: ClassVar[str] = "behaviour"
    field: Literal["last_purchase"]
    op: Literal["ever", "never", "within_days", "not_within_days", "before", "on_or_after"]
    value: date | int | None = None

    def problems(self) -> list[tuple[str, str]]:
        if self.op in ("ever", "never"):
            return [] if self.value is None else [("value", f"'{self.op}' takes no value")]
        return _date_or_days(self.op.removeprefix("not_"), self.value)

    def sql(self, scope: Scope) -> ColumnElement[bool]:
        if self.op == "ever":
            return _bought_since()
        if self.op == "never":
            return not_(_bought_since())
        if self.op in ("within_days", "not_within_days"):
            recent = _bought_after(scope, scope.since(_as_days(self.value)))
            return recent if self.op == "within_days" else not_(recent)
        start = scope.midnight(_as_date(self.value))
        if self.op == "on_or_after":
            return _bought_after(scope, start)
        return and_(_bought_since(), not_(_bought_after(scope, start)))


class PurchaseCount(Condition):
    """How many purchases the member made in the last ``days`` days (ever when omitted)."""

    kind: ClassVar[str] = "behaviour"
    field: Literal["purchase_count"]
    op: CompareOp
    value: Annotated[int, Field(ge=0, le=1_000_000)]
    days: Days | None = None

    def sql(self, scope: Scope) -> ColumnElement[bool]:
        since = scope.since(self.days) if self.days else None
        if since is not None and _recent(scope, since):
            return _grouped(func.count(Sale.id), self.op, self.value, since,
                            Sale.status == "completed")
        counted = select(func.count(Sale.id)).where(*_purchased(since)).scalar_subquery()
        return _cmp(self.op, counted, self.value)


class Spend(Condition):
    """What the member spent, net of refunds, in the last ``days`` days (ever when
    omitted), in minor units."""

    kind: ClassVar[str] = "behaviour"
    field: Literal["spend"]
    op: CompareOp
    value: Minor
    days: Days | None = None

    def sql(self, scope: Scope) -> ColumnElement[bool]:
        net = func.coalesce(func.sum(Sale.total_minor - Sale.refunded_minor), 0)
        if self.days and _recent(scope, scope.since(self.days)):
            return _grouped(net, self.op, self.value, scope.since(self.days))
        stmt = select(net).where(Sale.member_id == Member.id)
        if self.days:
            stmt = stmt.where(Sale.occurred_at >= scope.since(self.days))
        return _cmp(self.op, stmt.scalar_subquery(), self.value)


class Bought(_ValuesIn):
    """The member bought one of these products (``of: product``) or something in one of
    these categories (``of: category``), ever or in the last ``days`` days."""

    kind: ClassVar[str] = "behaviour"
    field: Literal["bought"]
    of: Literal["product", "category"]
    value: list[uuid.UUID] = Field(min_length=1, max_length=MAX_VALUES)
    days: Days | None = None

    def sql(self, scope: Scope) -> ColumnElement[bool]:
        from patron.catalog.models import Product

        products: Any = (self.value if self.of == "product" else
                         select(Product.id).where(Product.category_id.in_(self.value)))
        if self.days and _recent(scope, scope.since(self.days)):
            return Member.id.in_(
                select(Sale.member_id).join(SaleLine, SaleLine.sale_id == Sale.id)
                .where(*_recent_sales(scope.since(self.days)),
                       SaleLine.quantity > SaleLine.refunded_quantity,
                       SaleLine.product_id.in_(products)))
        stmt = (select(SaleLine.id).join(Sale, Sale.id == SaleLine.sale_id)
                .where(Sale.member_id == Member.id,
                       SaleLine.quantity > SaleLine.refunded_quantity,
                       SaleLine.product_id.in_(products)))
        if self.days:
            stmt = stmt.where(Sale.occurred_at >= scope.since(self.days))
        return stmt.exists()


class UsedCoupon(Condition):
    """The member redeemed a coupon (of one of these templates, if given), ever or in the
    last ``days`` days."""

    kind: ClassVar[str] = "behaviour"
    field: Literal["used_coupon"]
    value: list[uuid.UUID] = Field(default_factory=list, max_length=MAX_VALUES)
    days: Days | None = None

    def sql(self, scope: Scope) -> ColumnElement[bool]:
        used = select(CouponRedemption.member_id).where(CouponRedemption.member_id.is_not(None))
        if self.value:
            used = used.where(CouponRedemption.template_id.in_(_unique(self.value)))
        if self.days:
            used = used.where(CouponRedemption.redeemed_at >= scope.since(self.days))
        return Member.id.in_(used)


def _balance(column: Any, member_id: Any, op: str, value: int) -> ColumnElement[bool]:
    """A balance compared with ``value``; a member without an account has zero."""
    if COMPARE[op](0, value):  # zero passes: every member except the accounts that fail
        failing = select(member_id).where(COMPLEMENT[op](column, value))
        return not_(Member.id.in_(failing))
    return Member.id.in_(select(member_id).where(_cmp(op, column, value)))


class WalletBalance(Condition):
    """Stored value (principal + bonus) compared with ``value`` minor units."""

    kind: ClassVar[str] = "behaviour"
    field: Literal["wallet_balance"]
    op: CompareOp
    value: Minor

    def sql(self, scope: Scope) -> ColumnElement[bool]:
        return _balance(WalletAccount.principal_minor + WalletAccount.bonus_minor,
                        WalletAccount.member_id, self.op, self.value)


class PointsBalance(Condition):
    """Available points compared with ``value``."""

    kind: ClassVar[str] = "behaviour"
    field: Literal["points_balance"]
    op: CompareOp
    value: Annotated[int, Field(ge=0, le=10**15)]

    def sql(self, scope: Scope) -> ColumnElement[bool]:
        return _balance(PointsAccount.available, PointsAccount.member_id, self.op, self.value)


class Complaints(Condition):
    """The member made a complaint (``op: open``: one still open or in progress), ever or
    opened in the last ``days`` days."""

    kind: ClassVar[str] = "behaviour"
    field: Literal["complaints"]
    op: Literal["any", "open"] = "any"
    days: Days | None = None

    def sql(self, scope: Scope) -> ColumnElement[bool]:
        made = select(Complaint.member_id).where(Complaint.member_id.is_not(None))
        if self.op == "open":
            made = made.where(Complaint.status.in_(("open", "in_progress")))
        if self.days:
            made = made.where(Complaint.opened_at >= scope.since(self.days))
        return Member.id.in_(made)


# -- scores of the latest snapshot


class _Score(Condition):
    kind: ClassVar[str] = "score"

    def predicate(self, scope: Scope) -> ColumnElement[bool]:
        raise NotImplementedError

    def sql(self, scope: Scope) -> ColumnElement[bool]:
        if scope.scores_as_of is None:
            return false()
        return Member.id.in_(select(MemberScore.member_id).where(
            MemberScore.as_of == scope.scores_as_of, self.predicate(scope)))


class RfmSegmentIs(_Score, _ValuesIn):
    """The member's RFM segment is one of these."""

    field: Literal["rfm_segment"]
    value: list[Literal[RFM_SEGMENTS]] = Field(min_length=1)  # type: ignore[valid-type]

    def predicate(self, scope: Scope) -> ColumnElement[bool]:
        return MemberScore.rfm_segment.in_(self.value)


class LifecycleStageIs(_Score, _ValuesIn):
    """The member's lifecycle stage is one of these."""

    field: Literal["lifecycle_stage"]
    value: list[Literal[LIFECYCLE_STAGES]] = Field(min_length=1)  # type: ignore[valid-type]

    def predicate(self, scope: Scope) -> ColumnElement[bool]:
        return MemberScore.lifecycle_stage.in_(self.value)


class LoyaltyTypeIs(_Score, _ValuesIn):
    """The member's loyalty type (trust, inertia, latent, none) is one of these."""

    field: Literal["loyalty_type"]
    value: list[Literal[LOYALTY_TYPES]] = Field(min_length=1)  # type: ignore[valid-type]

    def predicate(self, scope: Scope) -> ColumnElement[bool]:
        return MemberScore.loyalty_type.in_(self.value)


class PAlive(_Score):
    """The probability that the member is still a customer (BG/NBD) compared with ``value``."""

    field: Literal["p_alive"]
    op: Literal["<", "<=", ">", ">="]
    value: Annotated[float, Field(ge=0, le=1)]

    def predicate(self, scope: Scope) -> ColumnElement[bool]:
        return and_(MemberScore.p_alive.is_not(None),
                    _cmp(self.op, MemberScore.p_alive, self.value))


class Clv(_Score):
    """The member's predicted customer lifetime value compared with ``value`` minor units."""

    field: Literal["clv_minor"]
    op: CompareOp
    value: Minor

    def predicate(self, scope: Scope) -> ColumnElement[bool]:
        return and_(MemberScore.clv_minor.is_not(None),
                    _cmp(self.op, MemberScore.clv_minor, self.value))


class NextPurchaseDue(_Score):
    """The member's predicted next purchase falls in the next ``value`` days (local days,
    today included), or up to ``overdue_days`` days in the past."""

    field: Literal["next_purchase_on"]
    op: Literal["within_days"] = "within_days"
    value: Annotated[int, Field(ge=0, le=MAX_DAYS)]
    overdue_days: Annotated[int, Field(ge=0, le=MAX_DAYS)] = 0

    def window(self, scope: Scope) -> tuple[date, date]:
        today = scope.today
        return today - timedelta(days=self.overdue_days), today + timedelta(days=self.value)

    def predicate(self, scope: Scope) -> ColumnElement[bool]:
        first, last = self.window(scope)
        return and_(MemberScore.next_purchase_on.is_not(None),
                    MemberScore.next_purchase_on >= first, MemberScore.next_purchase_on <= last)


# -- portraits of the latest snapshot (``analytics.portraits``; docs/portraits.md): the
# member's profile row of the snapshot's day, reached from its scores row, so these combine
# with the other score conditions in one pass over the snapshot.


def _profiled(scope: Scope, where: ColumnElement[bool]) -> ColumnElement[bool]:
    return MemberScore.member_id.in_(select(MemberProfile.member_id).where(
        MemberProfile.as_of == scope.scores_as_of, where))


class PortraitIs(_Score, _ValuesIn):
    """The member's portrait (behaviour cluster, e.g. P3: stable across refreshes) is one
    of these."""

    field: Literal["portrait"]
    value: list[Annotated[str, Field(pattern=r"^P[0-9]{1,6}$")]] = Field(
        min_length=1, max_length=MAX_VALUES)

    def predicate(self, scope: Scope) -> ColumnElement[bool]:
        return _profiled(scope, MemberProfile.portrait_code.in_(self.value))


class HasInferredTag(_Score, _ValuesIn):
    """The member carries ``any`` (at least one) or ``all`` of these automatic tags (high
    value, dormant, discount hunter, new parent, …; each defined in docs/portraits.md)."""

    field: Literal["inferred_tags"]
    op: Literal["any", "all"] = "any"
    value: list[Literal[TAG_CODES]] = Field(min_length=1)  # type: ignore[valid-type]

    def predicate(self, scope: Scope) -> ColumnElement[bool]:
        wanted = tag_mask(self.value)
        bits = MemberProfile.tag_bits.bitwise_and(wanted)
        return _profiled(scope, bits != 0 if self.op == "any" else bits == wanted)


CONDITIONS: dict[str, type[Condition]] = {}
for _model in (TierIs, HomeStoreIs, HasTags, Joined, BirthdayMonth, Consent, GenderIs,
               LastPurchase, PurchaseCount, Spend, Bought, UsedCoupon, WalletBalance,
               PointsBalance, Complaints, RfmSegmentIs, LifecycleStageIs, LoyaltyTypeIs,
               PAlive, Clv, NextPurchaseDue, PortraitIs, HasInferredTag):
    for _name in _model.model_fields["field"].annotation.__args__:  # type: ignore[union-attr]
        CONDITIONS[_name] = _model

Rule = Group | Condition
#: Conditions whose members are usually few and that compile to a set the planner can
#: drive the query from.
NARROWING = (TierIs, HasTags, UsedCoupon, Complaints, _Score)


def _as_date(value: date | int | None) -> date:
    assert isinstance(value, date)  # checked by the condition's problems()
    return value


def _as_days(value: date | int | None) -> int:
    assert isinstance(value, int)  # checked by the condition's problems()
    return value


def _date_or_days(op: str, value: date | int | None) -> list[tuple[str, str]]:
    if op == "within_days":
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_DAYS:
            return [("value", f"'within_days' takes a number of days (1-{MAX_DAYS})")]
    elif not isinstance(value, date):
        return [("value", f"'{op}' takes a day (YYYY-MM-DD)")]
    return []


# ---------------------------------------------------------------- parsing


@dataclass
class _Parser:
    problems: list[FieldProblem] = field(default_factory=list)
    nodes: int = 0

    def fail(self, path: str, message: str, code: str = "invalid") -> None:
        if not any(p.field == path for p in self.problems):
            self.problems.append(FieldProblem(path, message, code))

    def node(self, data: object, path: str, depth: int) -> Rule | None:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            self.fail(path, f"A segment has at most {MAX_NODES} rules", "too_many_rules")
            return None
        if not isinstance(data, dict):
            self.fail(path, "A rule is an object: a group {op, children} or a condition "
                      "{field, ...}", "rule_type")
            return None
        if "field" in data:
            return self.condition(data, path)
        if "children" in data or data.get("op") in ("all", "any"):
            return self.group(data, path, depth)
        self.fail(path, "A rule is a group (op 'all' or 'any' with children) or a condition "
                  "(with a field)", "rule_type")
        return None

    def group(self, data: dict[str, Any], path: str, depth: int) -> Group | None:
        for key in data:
            if key not in ("op", "children", "negate"):
                self.fail(f"{path}.{key}", "A group has only op, children and negate",
                          "extra_forbidden")
        op, children, negate = data.get("op"), data.get("children"), data.get("negate", False)
        ok = True
        if op not in ("all", "any"):
            self.fail(f"{path}.op", "A group's op is 'all' or 'any'")
            ok = False
        if not isinstance(negate, bool):
            self.fail(f"{path}.negate", "negate is true or false")
            ok = False
        if depth >= MAX_DEPTH:
            self.fail(path, f"Groups nest at most {MAX_DEPTH} deep", "too_deep")
            return None
        if not isinstance(children, list) or not children:
            self.fail(f"{path}.children", "A group needs a list of at least one rule")
            return None
        if len(children) > MAX_CHILDREN:
            self.fail(f"{path}.children", f"A group has at most {MAX_CHILDREN} rules")
            return None
        parsed = [self.node(child, f"{path}.children.{i}", depth + 1)
                  for i, child in enumerate(children)]
        if not ok or any(p is None for p in parsed):
            return None
        return Group(op="all" if op == "all" else "any",
                     children=tuple(p for p in parsed if p is not None), negate=negate)

    def condition(self, data: dict[str, Any], path: str) -> Condition | None:
        name = data.get("field")
        model = CONDITIONS.get(name) if isinstance(name, str) else None
        if model is None:
            self.fail(f"{path}.field", f"Unknown field {name!r}; one of "
                      f"{', '.join(sorted(CONDITIONS))}", "unknown_field")
            return None
        try:
            condition = model.model_validate(data)
        except ValidationError as exc:
            for error in exc.errors():
                self.fail(_error_path(path, model, error["loc"]), error["msg"], error["type"])
            return None
        found = condition.problems()
        for where, message in found:
            self.fail(f"{path}.{where}", message)
        return None if found else condition


def _error_path(path: str, model: type[BaseModel], loc: tuple[int | str, ...]) -> str:
    """``rules.children.2`` + ``('value', 'date')`` -> ``rules.children.2.value``: list
    indexes and the model's own field names are kept, union member tags are not."""
    parts = [path]
    for i, part in enumerate(loc):
        if isinstance(part, int) or i == 0 or part in model.model_fields:
            parts.append(str(part))
    return ".".join(parts)


def parse_rules(data: object, path: str = "rules") -> Rule:
    """The rule tree of ``data``; raises :class:`ValidationFailed` listing every problem,
    each naming its field (``rules.children.2.value``)."""
    parser = _Parser()
    rule = parser.node(data, path, 0)
    if parser.problems or rule is None:
        first = parser.problems[0] if parser.problems else FieldProblem(path, "Invalid rules")
        raise ValidationFailed(f"The segment's rules are not valid: {first.field}: "
                               f"{first.message}", first.field, problems=parser.problems)
    return rule


def dump_rules(rule: Rule) -> dict[str, Any]:
    """The tree as JSON (what is stored and returned), defaults left out."""
    if isinstance(rule, Group):
        return rule.dump()
    out = rule.model_dump(mode="json", exclude_defaults=True)
    full = rule.model_dump(mode="json")
    return out | {key: full[key] for key in ("field", "op", "value") if key in full}


def walk(rule: Rule) -> Iterable[Condition]:
    """Every condition of the tree."""
    if isinstance(rule, Group):
        for child in rule.children:
            yield from walk(child)
    else:
        yield rule


def uses_scores(rule: Rule) -> bool:
    return any(isinstance(c, _Score) for c in walk(rule))


def home_stores(rule: Rule) -> frozenset[uuid.UUID] | None:
    """The stores a segment is restricted to by its top level, or None (brand-wide).

    Restricted means every member it can match has a home store in the set: the root is a
    (not negated) ``home_store`` condition, or an ``all`` group (not negated) with such a
    condition among its direct children (several: their intersection).
    """
    if isinstance(rule, HomeStoreIs):
        return None if rule.negate else frozenset(rule.value)
    if isinstance(rule, Group) and rule.op == "all" and not rule.negate:
        found: frozenset[uuid.UUID] | None = None
        for child in rule.children:
            if isinstance(child, HomeStoreIs) and not child.negate:
                found = frozenset(child.value) if found is None else found & set(child.value)
        return found
    return None


def restrict_to_stores(rule: Rule, stores: Iterable[uuid.UUID]) -> Group:
    """``rule`` AND the member's home store is one of ``stores``."""
    return Group(op="all", children=(HomeStoreIs(field="home_store", value=sorted(stores)),
                                     rule))


# ---------------------------------------------------------------- compiling


def member_filter(rule: Rule, scope: Scope) -> ColumnElement[bool]:
    """The rule tree as one boolean SQL expression over ``members`` (two-valued).

    Sibling score conditions (not negated) become one ``IN`` over the snapshot with their
    predicates combined by the group's AND / OR: the snapshot has one row per member, so
    this is the same set, read once instead of once per condition.

    In an ``all`` group with a *narrowing* condition (a score, tier, tag, coupon or
    complaint condition, not negated: a set the planner can drive the query from), the
    other conditions are compiled for few members (``scope.narrowed``): purchase windows
    are then checked per member rather than collected as sets.
    """
    if isinstance(rule, Group):
        scores = [c for c in rule.children if isinstance(c, _Score) and not c.negate]
        others = [c for c in rule.children if not (isinstance(c, _Score) and not c.negate)]
        if rule.op == "all" and not scope.narrowed and any(
                isinstance(c, NARROWING) and not c.negate for c in rule.children):
            scope = replace(scope, narrowed=True)
        parts = [member_filter(child, scope) for child in others]
        if len(scores) == 1:
            parts.insert(0, member_filter(scores[0], scope))
        elif scores and scope.scores_as_of is None:
            parts.insert(0, false())
        elif scores:
            predicates = [c.predicate(scope) for c in scores]
            parts.insert(0, Member.id.in_(select(MemberScore.member_id).where(
                MemberScore.as_of == scope.scores_as_of,
                and_(*predicates) if rule.op == "all" else or_(*predicates))))
        combined = and_(true(), *parts) if rule.op == "all" else or_(false(), *parts)
        return not_(combined) if rule.negate else combined
    expression = rule.sql(scope)
    return not_(expression) if rule.negate else expression


def members_query(rule: Rule, scope: Scope, *, columns: Sequence[Any] = (),
                  stores: Iterable[uuid.UUID] | None = None) -> Select[Any]:
    """``SELECT <columns> FROM members WHERE active AND <rules>`` (default column: the
    member's id), limited to members of ``stores`` when given."""
    stmt = select(*(columns or (Member.id,))).where(Member.status == "active",
                                                    member_filter(rule, scope))
    if stores is not None:
        stmt = stmt.where(Member.home_store_id.in_(sorted(stores)))
    return stmt


def member_ids(session: Session, rule: Rule, scope: Scope, *,
               stores: Iterable[uuid.UUID] | None = None) -> list[uuid.UUID]:
    """The ids of the matching members (what a launch assigns), from :func:`members_query`.

    Read as text straight from the DBAPI cursor (32 hex digits on SQLite, the canonical
    form on PostgreSQL): at a million members a SQLAlchemy ``Row`` and a type conversion
    per member cost more than the query itself.
    """
    stmt = members_query(rule, scope, columns=(cast(Member.id, String),), stores=stores)
    result = session.connection().execute(stmt)
    cursor = result.cursor
    ids: list[uuid.UUID] = []
    while chunk := cursor.fetchmany(50_000):
        ids.extend(uuid.UUID(text) for (text,) in chunk)
    result.close()
    return ids


def count_query(rule: Rule, scope: Scope, *,
                stores: Iterable[uuid.UUID] | None = None) -> Select[Any]:
    """``SELECT count(*) FROM members WHERE ...``: one statement."""
    stmt = select(func.count()).select_from(Member).where(Member.status == "active",
                                                          member_filter(rule, scope))
    if stores is not None:
        stmt = stmt.where(Member.home_store_id.in_(sorted(stores)))
    return stmt


def describe_fields() -> list[dict[str, Any]]:
    """The fields the rule builder offers: name, kind, description and JSON schema."""
    return [{"field": name, "kind": model.kind,
             "description": " ".join((model.__doc__ or "").split()),
             "schema": model.model_json_schema()}
            for name, model in CONDITIONS.items()]
