"""Use cases of promotions: keep definitions, build the book checkout prices with, count uses.

Design overview
---------------
Definitions. Managers and owners create and change promotions; every change is validated
by the pricing engine's models (``parse_promotion``: errors name the field, e.g.
``config.steps.1.spend_minor``), bumps ``version`` and is written to the audit log. An
owner's promotion may run in every store; a manager's must name stores (``audience.stores``)
and only their own, and a manager may only change promotions of their own stores.

The book. ``book(session)`` returns the active promotions compiled into the engine's
``PromotionBook``, once per transaction (``core.memo``). Compiling 200 promotions costs a
few milliseconds, so compiled books are also kept per process, keyed by the set of
``(id, version)`` pairs of the active promotions: one narrow query per transaction tells
whether the cached book is still the one the database describes. Every change of a
promotion bumps its version (and activation changes the set), so a stale book is never
used; random ids make the key unique across databases too (tests reuse one engine).

Counters. Limits are checked on ``promotion_usage`` / ``promotion_member_usage`` rows.
Checkout takes the rows of the *limited* promotions that may apply to the basket (those
whose schedule and audience admit the sale and whose selectors touch the basket) with
``SELECT ... FOR UPDATE`` in promotion-id order, member rows after promotion rows; it
prices with what they say and adds one use and the value given in the same transaction.
Two tills racing for the last use queue on the row; the second prices without it. Each
row carries its limit, so the database refuses to count past it (CHECK) should a lock ever
be missing. Promotions without limits take no locks and keep no counters: a popular offer
does not serialise the tills. When a limit is added to a promotion that had none, its
counters are rebuilt from the sales history (``USAGE_HISTORY``, provided by ``sales``).

Refunds never give uses back (the customer had the offer); they give back budget: the
discount a return takes back from the customer and the cashback reclaimed.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Select, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from patron.auth import audit
from patron.auth.enums import Role
from patron.auth.principal import Principal, require_role
from patron.catalog import queries as catalog
from patron.core.clock import Clock
from patron.core.errors import NotFound, PermissionDenied, ValidationFailed
from patron.core.ids import new_id
from patron.core.memo import forget, memo
from patron.core.money import format_minor
from patron.members import service as members
from patron.offers.promotion_models import (
    PromotionMemberUsage,
    PromotionRecord,
    PromotionUsage,
)
from patron.offers.promotion_schemas import PromotionCreate, PromotionUpdate
from patron.offers.promotions import (
    BasketLine,
    NearMiss,
    PricingContext,
    Promotion,
    PromotionBook,
    parse_promotion,
    refusal,
)
from patron.offers.promotions import PromotionUsage as Usage
from patron.offers.promotions.schemas import (
    BundleConfig,
    BuyXGetYConfig,
    Limits,
    MemberPriceConfig,
    PromotionConfig,
    Selector,
    SpendGiftConfig,
)

log = logging.getLogger(__name__)

MEMO_KEY = "offers.promotion_book"
_CACHE_SIZE = 16
_T = TypeVar("_T")


def for_update(stmt: Select[_T]) -> Select[_T]:
    """Row lock on PostgreSQL (ignored by SQLite, whose write transaction locks the file).

    A module-level function so the concurrency tests can take the lock away and show
    that they then catch the limit being exceeded.
    """
    # populate_existing: the row as locked, even if this session read it before
    # (an object in the identity map keeps its old values otherwise, and a write based
    # on them loses whatever committed between the read and the lock)
    return stmt.with_for_update().execution_options(populate_existing=True)


# ---------------------------------------------------------------- definitions


def _limits(record: PromotionRecord) -> dict[str, Any]:
    return {"per_member": record.per_member_limit, "total": record.total_limit,
            "budget_minor": record.budget_minor}


def _spec(record: PromotionRecord) -> dict[str, Any]:
    """The stored row as the engine's ``Promotion`` input."""
    return {"id": record.id, "name": record.name, "priority": record.priority,
            "exclusive": record.exclusive,
            "stackable_with_coupons": record.stackable_with_coupons,
            "schedule": record.schedule, "audience": record.audience,
            "limits": _limits(record), "config": record.config}


def to_engine(record: PromotionRecord) -> Promotion:
    """The engine's ``Promotion`` for a stored row."""
    return parse_promotion(_spec(record))


def _store_set(audience: Mapping[str, Any]) -> frozenset[uuid.UUID]:
    return frozenset(uuid.UUID(str(s)) for s in audience.get("stores") or ())


def store_ids(record: PromotionRecord) -> frozenset[uuid.UUID]:
    """The stores a promotion runs in; empty for every store."""
    return _store_set(record.audience)


def visible_to(actor: Principal, record: PromotionRecord) -> bool:
    """Every caller sees chain-wide promotions; store promotions are seen in their stores."""
    stores = _store_set(record.audience)
    return actor.all_stores or not stores or bool(stores & actor.store_ids)


def _may_manage(actor: Principal, stores: frozenset[uuid.UUID]) -> None:
    require_role(actor, Role.MANAGER, users_only=True)
    if actor.all_stores:
        return
    if not stores:
        raise PermissionDenied("Only the owner runs a promotion in every store; name your "
                               "stores in audience.stores")
    if not stores <= actor.store_ids:
        raise PermissionDenied("audience.stores names a store you don't manage")


def _check_references(session: Session, promotion: Promotion) -> None:
    """Stores and gift products must exist: a typo is refused here, not at the till."""
    for store_id in sorted(promotion.audience.stores):
        try:
            members.get_store(session, store_id=store_id)
        except NotFound:
            raise ValidationFailed(f"No store {store_id}", "audience.stores",
                                   code="unknown_store") from None
    config = promotion.config
    if isinstance(config, SpendGiftConfig) and not catalog.find_products(
            session, ids={config.gift_product_id}):
        raise ValidationFailed("No product has this id", "config.gift_product_id",
                               code="unknown_product")


def _dump(promotion: Promotion) -> dict[str, Any]:
    return promotion.model_dump(mode="json")


def _write(record: PromotionRecord, promotion: Promotion) -> None:
    data = _dump(promotion)
    record.name = promotion.name
    record.kind = promotion.config.kind
    record.priority = promotion.priority
    record.exclusive = promotion.exclusive
    record.stackable_with_coupons = promotion.stackable_with_coupons
    record.config = data["config"]
    record.schedule = data["schedule"]
    record.audience = data["audience"]
    record.per_member_limit = promotion.limits.per_member
    record.total_limit = promotion.limits.total
    record.budget_minor = promotion.limits.budget_minor


def _audit_details(promotion: Promotion) -> dict[str, Any]:
    data = _dump(promotion)
    data.pop("id", None)
    return data


def create_promotion(session: Session, *, clock: Clock, actor: Principal,
                     data: PromotionCreate) -> PromotionRecord:
    """A manager's or owner's new promotion; audited."""
    require_role(actor, Role.MANAGER, users_only=True)
    values = data.model_dump(mode="json", exclude={"active"})
    promotion = parse_promotion({"id": str(new_id()), **values})
    _may_manage(actor, frozenset(promotion.audience.stores))
    _check_references(session, promotion)
    now = clock.now()
    record = PromotionRecord(id=promotion.id, active=data.active, version=1,
                             created_by=actor.label, created_at=now, updated_at=now)
    _write(record, promotion)
    session.add(record)
    session.flush()
    session.add(PromotionUsage(promotion_id=record.id, uses=0, budget_spent_minor=0,
                               total_limit=record.total_limit,
                               budget_minor=record.budget_minor))
    session.flush()
    forget(session, MEMO_KEY)
    audit.record(session, clock=clock, actor=actor, action="promotion.created",
                 entity_type="promotion", entity_id=record.id,
                 details=_audit_details(promotion) | {"active": data.active})
    return record


def _locked(session: Session, promotion_id: uuid.UUID) -> PromotionRecord:
    record = session.scalar(for_update(select(PromotionRecord).where(
        PromotionRecord.id == promotion_id)).execution_options(populate_existing=True))
    if record is None:
        raise NotFound("No such promotion", "promotion_id")
    return record


def update_promotion(session: Session, *, clock: Clock, actor: Principal,
                     promotion_id: uuid.UUID, data: PromotionUpdate) -> PromotionRecord:
    """Change a promotion; what was already sold keeps the definition it was priced with.

    Limits may not drop below what was already used or spent. Audited with the fields
    that changed.
    """
    require_role(actor, Role.MANAGER, users_only=True)
    record = _locked(session, promotion_id)
    _may_manage(actor, _store_set(record.audience))
    changes = data.model_dump(mode="json", exclude_unset=True)
    for key in list(changes):
        if changes[key] is None:
            raise ValidationFailed(f"{key} cannot be empty", key, code="required")
    before = _dump(to_engine(record))
    promotion = parse_promotion(before | changes)
    _may_manage(actor, frozenset(promotion.audience.stores))
    _check_references(session, promotion)
    after = _dump(promotion)
    changed = sorted(k for k in after if after[k] != before[k])
    if not changed:
        return record
    _sync_counters(session, record.id, promotion.limits,
                   rebuild=promotion.limits.limited and not record.limited)
    _write(record, promotion)
    record.version += 1
    record.updated_at = clock.now()
    session.flush()
    forget(session, MEMO_KEY)
    audit.record(session, clock=clock, actor=actor, action="promotion.updated",
                 entity_type="promotion", entity_id=record.id,
                 details={k: after[k] for k in changed} | {"version": record.version})
    return record


def set_active(session: Session, *, clock: Clock, actor: Principal, promotion_id: uuid.UUID,
               active: bool) -> PromotionRecord:
    """Start or stop a promotion at once (its schedule still applies when active)."""
    require_role(actor, Role.MANAGER, users_only=True)
    record = _locked(session, promotion_id)
    _may_manage(actor, _store_set(record.audience))
    if record.active != active:
        record.active = active
        record.version += 1
        record.updated_at = clock.now()
        session.flush()
        forget(session, MEMO_KEY)
        audit.record(session, clock=clock, actor=actor,
                     action="promotion.activated" if active else "promotion.deactivated",
                     entity_type="promotion", entity_id=record.id,
                     details={"version": record.version})
    return record


def get_promotion(session: Session, *, actor: Principal,
                  promotion_id: uuid.UUID) -> PromotionRecord:
    record = session.get(PromotionRecord, promotion_id)
    if record is None or not visible_to(actor, record):
        raise NotFound("No such promotion", "promotion_id")
    return record


def list_promotions(session: Session, *, actor: Principal,
                    include_inactive: bool = False) -> list[PromotionRecord]:
    """The promotions the caller may see, in the order they are applied within a stage."""
    stmt = select(PromotionRecord).order_by(PromotionRecord.priority, PromotionRecord.id)
    if not include_inactive:
        stmt = stmt.where(PromotionRecord.active.is_(True))
    return [r for r in session.scalars(stmt) if visible_to(actor, r)]


def usage_of(session: Session, *, promotion_ids: Collection[uuid.UUID],
             ) -> dict[uuid.UUID, PromotionUsage]:
    if not promotion_ids:
        return {}
    return {u.promotion_id: u for u in session.scalars(select(PromotionUsage).where(
        PromotionUsage.promotion_id.in_(list(promotion_ids))))}


# ---------------------------------------------------------------- counters and limits


@dataclass(frozen=True)
class UsageHistory:
    """What the sales history says a promotion has used: the counters rebuilt."""

    uses: int = 0
    budget_spent_minor: int = 0
    member_uses: Mapping[uuid.UUID, int] = field(default_factory=dict)


#: Rebuilds a promotion's counters from the sales history; set by ``sales.service`` (which
#: owns the history) so that this domain does not import the one that imports it.
USAGE_HISTORY: Callable[[Session, uuid.UUID], UsageHistory] | None = None


def _sync_counters(session: Session, promotion_id: uuid.UUID, limits: Limits, *,
                   rebuild: bool) -> None:
    """Copy new limits onto the counters, refusing limits below what was already used.

    With ``rebuild`` (a limit added to a promotion that had none, so nothing was counted)
    the counters are first rebuilt from the sales history. Everything is checked before
    anything is written.
    """
    usage = session.scalar(for_update(select(PromotionUsage).where(
        PromotionUsage.promotion_id == promotion_id)).execution_options(populate_existing=True))
    if usage is None:
        usage = PromotionUsage(promotion_id=promotion_id, uses=0, budget_spent_minor=0)
        session.add(usage)
    rows = {r.member_id: r for r in session.scalars(for_update(select(PromotionMemberUsage)
            .where(PromotionMemberUsage.promotion_id == promotion_id)
            .order_by(PromotionMemberUsage.member_id)).execution_options(populate_existing=True))}
    uses, spent = usage.uses, usage.budget_spent_minor
    member_uses = {member_id: r.uses for member_id, r in rows.items()}
    if rebuild and USAGE_HISTORY is not None:
        history = USAGE_HISTORY(session, promotion_id)
        uses, spent = history.uses, history.budget_spent_minor
        member_uses = dict.fromkeys(rows, 0) | dict(history.member_uses)
    if limits.total is not None and uses > limits.total:
        raise ValidationFailed(f"This promotion was already used {uses} times",
                               "limits.total", code="limit_below_usage")
    if limits.budget_minor is not None and spent > limits.budget_minor:
        raise ValidationFailed(f"This promotion already gave away {spent}",
                               "limits.budget_minor", code="limit_below_usage")
    most = max(member_uses.values(), default=0)
    if limits.per_member is not None and most > limits.per_member:
        raise ValidationFailed(f"A member has already had this promotion {most} times",
                               "limits.per_member", code="limit_below_usage")
    usage.uses, usage.budget_spent_minor = uses, spent
    usage.total_limit, usage.budget_minor = limits.total, limits.budget_minor
    for member_id, count in sorted(member_uses.items()):
        row = rows.get(member_id)
        if row is None:
            session.add(PromotionMemberUsage(promotion_id=promotion_id, member_id=member_id,
                                             uses=count, per_member_limit=limits.per_member))
        else:
            row.uses, row.per_member_limit = count, limits.per_member
    session.flush()


def _selectors(config: PromotionConfig) -> list[Selector]:
    if isinstance(config, MemberPriceConfig):
        return [rule.items for rule in config.rules]
    if isinstance(config, BuyXGetYConfig):
        return [config.buy] + ([config.get] if config.get is not None else [])
    if isinstance(config, BundleConfig):
        return [c.items for c in config.components]
    return [config.items]


def _touches(promotion: Promotion, products: frozenset[uuid.UUID],
             categories: frozenset[uuid.UUID]) -> bool:
    """Whether the engine would consider the promotion for a basket of these products
    (the same test as its index: named products or categories, or everything)."""
    return any(s.everything or not s.products.isdisjoint(products)
               or not s.categories.isdisjoint(categories)
               for s in _selectors(promotion.config))


def limited_candidates(book: PromotionBook, *, context: PricingContext,
                       lines: Sequence[BasketLine]) -> list[uuid.UUID]:
    """Limited promotions that may apply to this sale: their counters must be read (and,
    at checkout, locked) before pricing. A superset of those that will apply."""
    limited = book.limited_ids()
    if not limited:
        return []
    products = frozenset(ln.product_id for ln in lines)
    categories = frozenset(ln.category_id for ln in lines if ln.category_id is not None)
    open_usage = PricingContext(
        occurred_at=context.occurred_at, store_id=context.store_id,
        store_timezone=context.store_timezone, member=context.member,
        holidays=context.holidays, usage={pid: Usage() for pid in limited})
    local = open_usage.local_moment()
    return sorted(pid for pid in limited
                  if _touches(book.promotions[pid], products, categories)
                  and refusal(book.promotions[pid], open_usage, local) is None)


def _insert_missing_member_rows(session: Session, rows: list[dict[str, Any]]) -> None:
    """Create member counters that don't exist yet, racing tills included: on PostgreSQL
    ``ON CONFLICT DO NOTHING`` waits for a concurrent insert of the same row to finish."""
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        session.execute(postgresql.insert(PromotionMemberUsage).values(rows).on_conflict_do_nothing())
    elif dialect == "sqlite":
        session.execute(sqlite.insert(PromotionMemberUsage).values(rows).on_conflict_do_nothing())
    else:  # pragma: no cover - patron runs on SQLite and PostgreSQL
        raise NotImplementedError(dialect)


def read_usage(session: Session, *, book: PromotionBook, promotion_ids: Sequence[uuid.UUID],
               member_id: uuid.UUID | None, lock: bool) -> dict[uuid.UUID, Usage]:
    """The counters of ``promotion_ids`` for the pricing context.

    With ``lock`` (checkout): member counters are created if missing, and every row is
    locked, promotion rows then member rows, each in id order (one order for every
    transaction, so two tills never wait on each other in a circle). Without (a quote):
    plain reads, nothing written.
    """
    if not promotion_ids:
        return {}
    ordered = sorted(promotion_ids)
    per_member = [pid for pid in ordered
                  if book.promotions[pid].limits.per_member is not None]
    stmt = select(PromotionUsage).where(PromotionUsage.promotion_id.in_(ordered)) \
        .order_by(PromotionUsage.promotion_id).execution_options(populate_existing=True)
    totals = {u.promotion_id: u for u in session.scalars(for_update(stmt) if lock else stmt)}
    mine: dict[uuid.UUID, int] = {}
    if member_id is not None and per_member:
        if lock:
            _insert_missing_member_rows(session, [
                {"promotion_id": pid, "member_id": member_id, "uses": 0,
                 "per_member_limit": book.promotions[pid].limits.per_member}
                for pid in per_member])
        mstmt = select(PromotionMemberUsage).where(
            PromotionMemberUsage.member_id == member_id,
            PromotionMemberUsage.promotion_id.in_(per_member)) \
            .order_by(PromotionMemberUsage.promotion_id) \
            .execution_options(populate_existing=True)
        mine = {r.promotion_id: r.uses
                for r in session.scalars(for_update(mstmt) if lock else mstmt)}
    return {pid: Usage(member_uses=mine.get(pid, 0), total_uses=totals[pid].uses,
                       budget_spent_minor=totals[pid].budget_spent_minor)
            for pid in ordered if pid in totals}


def record_uses(session: Session, *, book: PromotionBook,
                values: Mapping[uuid.UUID, int], member_id: uuid.UUID | None) -> None:
    """Add one use and the value given to each limited promotion of ``values``; their rows
    were locked by ``read_usage`` in this transaction."""
    limited = book.limited_ids()
    for pid, value in sorted(values.items()):
        if pid not in limited:
            continue
        usage = session.get(PromotionUsage, pid)
        assert usage is not None, "read_usage locks every limited promotion that can apply"
        usage.uses += 1
        usage.budget_spent_minor += value
        if member_id is not None and book.promotions[pid].limits.per_member is not None:
            row = session.get(PromotionMemberUsage, (pid, member_id))
            assert row is not None
            row.uses += 1
    session.flush()


def lock_budgets(session: Session, *, promotion_ids: Collection[uuid.UUID]) -> None:
    """Lock the counters of the budget-limited promotions among ``promotion_ids`` (id
    order) before a refund touches a wallet: the same order as checkout's."""
    ids = sorted(set(session.scalars(select(PromotionRecord.id).where(
        PromotionRecord.id.in_(list(promotion_ids)),
        PromotionRecord.budget_minor.is_not(None))))) if promotion_ids else []
    if ids:
        session.execute(for_update(select(PromotionUsage.promotion_id).where(
            PromotionUsage.promotion_id.in_(ids)).order_by(PromotionUsage.promotion_id)))


def give_back_budget(session: Session, *, amounts: Mapping[uuid.UUID, int]) -> None:
    """A refund took ``amounts`` back from the customer: the budget may give them again.

    Only promotions that keep counters (limited ones) are touched, in id order.
    """
    wanted = sorted(pid for pid, amount in amounts.items() if amount > 0)
    if not wanted:
        return
    limited = set(session.scalars(select(PromotionRecord.id).where(
        PromotionRecord.id.in_(wanted), PromotionRecord.budget_minor.is_not(None))))
    ids = [pid for pid in wanted if pid in limited]
    if not ids:
        return
    for usage in session.scalars(for_update(select(PromotionUsage).where(
            PromotionUsage.promotion_id.in_(ids)).order_by(PromotionUsage.promotion_id))
            .execution_options(populate_existing=True)):
        usage.budget_spent_minor = max(0, usage.budget_spent_minor
                                       - amounts[usage.promotion_id])
    session.flush()


# ---------------------------------------------------------------- the book


@dataclass(frozen=True)
class Catalogue:
    """The active promotions compiled for pricing, with the version of each."""

    book: PromotionBook
    versions: Mapping[uuid.UUID, int]


_books: OrderedDict[frozenset[tuple[uuid.UUID, int]], Catalogue] = OrderedDict()
_books_lock = threading.Lock()


def _compile(records: Iterable[PromotionRecord]) -> Catalogue:
    promotions, versions = [], {}
    for record in records:
        try:
            promotions.append(to_engine(record))
        except ValidationFailed as exc:  # fail closed: a row that doesn't parse never applies
            log.error("promotion %s does not parse and is left out: %s", record.id, exc)
            continue
        versions[record.id] = record.version
    return Catalogue(PromotionBook(promotions), versions)


def _load(session: Session) -> Catalogue:
    key = frozenset((pid, version) for pid, version in session.execute(
        select(PromotionRecord.id, PromotionRecord.version)
        .where(PromotionRecord.active.is_(True))))
    with _books_lock:
        cached = _books.get(key)
        if cached is not None:
            _books.move_to_end(key)
            return cached
    records = list(session.scalars(select(PromotionRecord).where(
        PromotionRecord.active.is_(True))))
    compiled = _compile(records)
    seen = frozenset((r.id, r.version) for r in records)  # what was read, maybe newer
    with _books_lock:
        _books[seen] = compiled
        while len(_books) > _CACHE_SIZE:
            _books.popitem(last=False)
    return compiled


def book(session: Session) -> Catalogue:
    """The active promotions, compiled; once per transaction, cached per process by the
    ``(id, version)`` pairs of the active rows (see the module docstring)."""
    return memo(session, MEMO_KEY, lambda: _load(session))


def definitions_book(definitions: Iterable[Mapping[str, Any]]) -> PromotionBook:
    """A book of promotions as they were at a sale (their stored snapshots)."""
    return PromotionBook(Promotion.model_validate(d) for d in definitions)


# ---------------------------------------------------------------- member facts


#: Which of the given saved segments a member is in now, for ``audience.segments``. The
#: campaigns domain (which owns segments and builds on offers) sets it when it is imported;
#: unset, nobody is in any segment and segment-restricted promotions do not apply.
#: Called as ``SEGMENTS(session, member_id, among, now, tz)``.
SEGMENTS: Callable[[Session, uuid.UUID, frozenset[uuid.UUID], datetime, str],
                   frozenset[uuid.UUID]] | None = None


def member_segments(session: Session, *, member_id: uuid.UUID, among: frozenset[uuid.UUID],
                    now: datetime, tz: str) -> frozenset[uuid.UUID]:
    """The segments among ``among`` (those the active promotions name) the member is in at
    ``now``, local days in the zone ``tz``."""
    if not among or SEGMENTS is None:
        return frozenset()
    return SEGMENTS(session, member_id, among, now, tz)


# ---------------------------------------------------------------- the till's hints


NEAR_MISS_TEXTS: Mapping[str, Mapping[str, str]] = {
    "promotions.near_miss.buy_x_get_y": {
        "en": "Add {missing_quantity} more to get {get_quantity} {reward_en}",
        "zh_CN": "再买{missing_quantity}件，{get_quantity}件{reward_zh}"},
    "promotions.near_miss.buy_more": {
        "en": "Buy {missing_quantity} more to get {get_quantity} {reward_en}",
        "zh_CN": "再买{missing_quantity}件指定商品，即可{get_quantity}件{reward_zh}"},
    "promotions.near_miss.add_reward": {
        "en": "Add {missing_quantity} of the offer item: {reward_en}",
        "zh_CN": "再加{missing_quantity}件活动商品即可{reward_zh}"},
    "promotions.near_miss.nth_item": {
        "en": "Add {missing_quantity} more: the {nth_en} item is {reward_en}",
        "zh_CN": "再买{missing_quantity}件，第{nth}件{reward_zh}"},
    "promotions.near_miss.volume": {
        "en": "Add {missing_quantity} more for {percent_off}% off",
        "zh_CN": "再买{missing_quantity}件，全部享{percent_off}%优惠"},
    "promotions.near_miss.bundle": {
        "en": "Add {missing_quantity} more for the bundle at {price}",
        "zh_CN": "再买{missing_quantity}件，即享套装价{price}"},
    "promotions.near_miss.spend_discount": {
        "en": "Spend {missing} more to get {amount_off} off",
        "zh_CN": "再消费{missing}，即可立减{amount_off}"},
    "promotions.near_miss.spend_percent": {
        "en": "Spend {missing} more for {percent_off}% off",
        "zh_CN": "再消费{missing}，即可享{percent_off}%优惠"},
    "promotions.near_miss.spend_gift": {
        "en": "Spend {missing} more for a free gift",
        "zh_CN": "再消费{missing}，即可获赠礼品"},
}
LANGUAGES = ("en", "zh_CN")


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def near_miss_texts(miss: NearMiss, *, currency: str) -> dict[str, str]:
    """The hint in every language of the till ("Add 1 more to get 1 free", "再买1件，...").

    The engine gives a message key and its parameters; amounts are shown in the
    deployment's currency. Kept here rather than in the web catalogue: the API serves the
    till in either language, and services do not import the web layer.
    """
    p = miss.params
    percent = int(p.get("percent_off", 0) or 0)
    values: dict[str, Any] = dict(p) | {
        "missing": format_minor(int(p.get("missing_minor", 0) or 0), currency),
        "amount_off": format_minor(int(p.get("amount_off_minor", 0) or 0), currency),
        "price": format_minor(int(p.get("price_minor", 0) or 0), currency),
        "nth_en": _ordinal(int(p.get("nth", 0) or 0)),
        "reward_en": "free" if percent >= 100 else f"{percent}% off",
        "reward_zh": "免费" if percent >= 100 else f"享{percent}%优惠",
    }
    texts = NEAR_MISS_TEXTS.get(miss.message_key)
    if texts is None:
        return {}
    return {language: texts[language].format(**values) for language in LANGUAGES}


# ---------------------------------------------------------------- member merge


def _merge_member_usage(session: Session, _clock: Clock, survivor_id: uuid.UUID,
                        duplicate_id: uuid.UUID) -> int:
    """One person, one count: the duplicate's uses are added to the survivor's, capped at
    the limit (the merged member cannot use the offer again either way)."""
    theirs = list(session.scalars(select(PromotionMemberUsage).where(
        PromotionMemberUsage.member_id == duplicate_id)))
    moved = 0
    for row in theirs:
        ours = session.get(PromotionMemberUsage, (row.promotion_id, survivor_id))
        if ours is None:
            session.add(PromotionMemberUsage(promotion_id=row.promotion_id,
                                             member_id=survivor_id, uses=row.uses,
                                             per_member_limit=row.per_member_limit))
        else:
            total = ours.uses + row.uses
            ours.uses = total if ours.per_member_limit is None \
                else min(total, ours.per_member_limit)
        session.delete(row)
        moved += 1
    session.flush()
    return moved


members.MERGE_HOOKS["promotion_member_usage"] = _merge_member_usage
