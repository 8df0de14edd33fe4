"""Use cases of stamp cards (集点卡), visit packages (计次卡) and gift cards (礼品卡).

Design overview
---------------
Every change of stamps, visits or gift-card value runs lock -> check -> append entry ->
update the cached balance, inside the caller's transaction (services flush, never
commit). On PostgreSQL the card, package or gift-card row is locked with ``SELECT ... FOR
UPDATE`` (``for_update``, a module-level function so the concurrency tests can take the
lock away); on SQLite the caller's write transaction (``BEGIN IMMEDIATE``) already holds
the database's write lock. CHECK constraints stand behind both: a bug can fail a request,
never take a balance below zero. ``verify`` proves every cached figure equals its ledger.

Lock order: a member's stamp cards in programme-id order, then that card's rewards; one
package at a time; a gift card, then the card its balance moved to.

Stamps. ``stamps_for_sale`` gives each active programme's stamps at most once per sale
(``StampSale`` is UNIQUE per card and sale; a second call gives nothing). New stamps pay
off stamp debt first; a card that reaches ``stamps_needed`` turns them into a reward at
once, as many as it fills. ``reverse_stamps_for_sale`` is cumulative over a sale's
refunds (``rules.stamps_to_remove``) and never takes a card below zero: stamps come off
the card first; then unused, unexpired rewards of the programme are revoked, newest first,
their stamps going back onto the card less what is still to remove; what is left after
that -- the stamps went into a reward that was already used or has expired -- becomes
stamp *debt* on the card, recorded as a DEBT entry, which the member's next stamps pay
off. A reward is redeemed at most once: its row is locked and its status moves from
``available`` to ``redeemed``.

Visit packages. ``sell_package`` books the bought visits; ``use_visit`` takes one, and
refuses with a 422 on ``package_id`` when none are left (``no_visits_left``), when the
package has expired (``package_expired``) or was refunded (``package_refunded``).
``refund_package`` closes the package and returns the minor units due for the unused
visits (``rules.package_refund_minor``); an expired package's visits are forfeited by the
daily job (``expire_packages``) and are not refunded.

Gift cards. Bearer value: a code and a PIN (stored hashed). Wrong PINs must be counted
even though the request that sent one fails and rolls back, so PIN-protected calls are
two steps at every boundary: ``check_pin`` in a transaction of its own (it records the
attempt and never raises for a wrong PIN; the 5th wrong PIN in a row locks the card for
15 minutes), then the value-moving call, which checks the PIN again under the row lock.
A transfer closes the old card and opens a new code with the whole balance (two entries
that cancel out); void and expiry take the balance to zero with one entry each.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Select, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from patron.auth import audit
from patron.auth.enums import Role
from patron.auth.principal import Principal, require_role, require_store
from patron.cards import rules
from patron.cards.enums import (
    GiftCardEntryKind,
    GiftCardStatus,
    PackageStatus,
    RewardKind,
    RewardStatus,
    StampBasis,
    StampEntryKind,
    VisitEntryKind,
)
from patron.cards.models import (
    GiftCard,
    GiftCardBatch,
    GiftCardEntry,
    MemberPackage,
    PackageProduct,
    PackageProductService,
    StampCard,
    StampEntry,
    StampProgramme,
    StampProgrammeTarget,
    StampReward,
    StampSale,
    VisitEntry,
)
from patron.cards.schemas import (
    PackageProductCreate,
    PackageProductUpdate,
    StampProgrammeCreate,
    StampProgrammeUpdate,
)
from patron.catalog import service as catalog
from patron.core.clock import Clock
from patron.core.errors import (
    Conflict,
    InsufficientBalance,
    NotFound,
    PatronError,
    ValidationFailed,
)
from patron.core.events import emit
from patron.core.ids import new_id
from patron.members import service as members
from patron.members.enums import MemberStatus

MAX_AMOUNT_MINOR = 100_000_000
MAX_BATCH = 1_000
_T = TypeVar("_T")
SaleLineTuple = tuple[uuid.UUID, uuid.UUID | None, int]  # (product_id, category_id, quantity)


def for_update(stmt: Select[_T]) -> Select[_T]:
    """Row lock on PostgreSQL (ignored by SQLite, whose write transaction locks the file).

    A module-level function so the concurrency tests can take the lock away and show
    that they then catch the lost update.
    """
    # populate_existing: the row as locked, even if this session read it before
    # (an object in the identity map keeps its old values otherwise, and a write based
    # on them loses whatever committed between the read and the lock)
    return stmt.with_for_update().execution_options(populate_existing=True)


def _label(actor: Principal | None) -> str:
    return actor.label if actor else "system"


def _store_for(session: Session, actor: Principal | None, store_id: uuid.UUID | None
               ) -> uuid.UUID | None:
    """The store a card operation is booked to: the one named (which must exist and be
    the actor's), else the actor's own."""
    if store_id is None:
        return actor.default_store_id if actor is not None else None
    members.get_store(session, store_id=store_id)  # an unknown store: 404 naming store_id
    if actor is not None:
        require_store(actor, store_id)
    return store_id


def _active_member(session: Session, member_id: uuid.UUID, field_name: str = "member_id"
                   ) -> None:
    member = members.get_member(session, member_id=member_id)
    if member.status != MemberStatus.ACTIVE.value:
        raise ValidationFailed("The member is not active", field_name, code="not_active")


def _check_amount(amount_minor: int, field_name: str = "amount_minor") -> None:
    if amount_minor <= 0:
        raise ValidationFailed("Amount must be a positive number of minor units", field_name)
    if amount_minor > MAX_AMOUNT_MINOR:
        raise ValidationFailed(f"Amount must be at most {MAX_AMOUNT_MINOR} minor units",
                               field_name)


def _check_products(session: Session, ids: Sequence[uuid.UUID], field_name: str) -> None:
    if not rules.distinct(ids):
        raise ValidationFailed(f"{field_name} has duplicates", field_name)
    missing = set(ids) - set(catalog.get_products(session, ids=ids))
    if missing:
        raise ValidationFailed(f"Unknown product {sorted(missing)[0]}", field_name,
                               code="unknown_product")


def _check_categories(session: Session, ids: Sequence[uuid.UUID], field_name: str) -> None:
    if not rules.distinct(ids):
        raise ValidationFailed(f"{field_name} has duplicates", field_name)
    missing = set(ids) - set(catalog.categories_by_id(session, ids))
    if missing:
        raise ValidationFailed(f"Unknown category {sorted(missing)[0]}", field_name,
                               code="unknown_category")


# ================================================================ stamp programmes

PROGRAMME_TERMS = ("basis", "stamps_needed", "reward_kind", "reward_product_id",
                   "product_ids", "category_ids")


def programme_targets(programme: StampProgramme) -> rules.Targets:
    return rules.Targets(
        frozenset(t.product_id for t in programme.targets if t.product_id is not None),
        frozenset(t.category_id for t in programme.targets if t.category_id is not None))


def _target_rows(product_ids: Iterable[uuid.UUID], category_ids: Iterable[uuid.UUID]
                 ) -> list[StampProgrammeTarget]:
    return ([StampProgrammeTarget(product_id=p) for p in product_ids]
            + [StampProgrammeTarget(category_id=c) for c in category_ids])


def _check_programme(session: Session, values: dict[str, Any]) -> None:
    """Refuse impossible terms, naming the field (the CHECKs agree)."""
    kind = RewardKind(values["reward_kind"])
    product = values["reward_product_id"]
    if kind is RewardKind.PRODUCT:
        if product is None:
            raise ValidationFailed("A 'product' reward names the free product",
                                   "reward_product_id", code="required")
        _check_products(session, [product], "reward_product_id")
    elif product is not None:
        raise ValidationFailed("A 'free_item' reward takes no reward_product_id",
                               "reward_product_id")
    if not values["product_ids"] and not values["category_ids"]:
        raise ValidationFailed("Name the qualifying products or categories", "product_ids",
                               code="required")
    _check_products(session, values["product_ids"], "product_ids")
    _check_categories(session, values["category_ids"], "category_ids")


def create_programme(session: Session, *, clock: Clock, actor: Principal,
                     data: StampProgrammeCreate) -> StampProgramme:
    """A manager's "buy N, get one free" card."""
    require_role(actor, Role.MANAGER, users_only=True)
    values = data.model_dump()
    _check_programme(session, values)
    now = clock.now()
    programme = StampProgramme(
        name=data.name, basis=data.basis.value, stamps_needed=data.stamps_needed,
        reward_kind=data.reward_kind.value, reward_product_id=data.reward_product_id,
        valid_days=data.valid_days, active=True, created_at=now, updated_at=now,
        targets=_target_rows(data.product_ids, data.category_ids))
    session.add(programme)
    session.flush()
    audit.record(session, clock=clock, actor=actor, action="stamp_programme.created",
                 entity_type="stamp_programme", entity_id=programme.id,
                 details={"name": data.name, "stamps_needed": data.stamps_needed})
    return programme


def get_programme(session: Session, *, programme_id: uuid.UUID) -> StampProgramme:
    programme = session.get(StampProgramme, programme_id)
    if programme is None:
        raise NotFound("No such stamp programme", "programme_id")
    return programme


def list_programmes(session: Session, *, include_inactive: bool = False
                    ) -> list[StampProgramme]:
    stmt = select(StampProgramme).order_by(StampProgramme.name, StampProgramme.id)
    if not include_inactive:
        stmt = stmt.where(StampProgramme.active.is_(True))
    return list(session.scalars(stmt))


def update_programme(session: Session, *, clock: Clock, actor: Principal,
                     programme_id: uuid.UUID, data: StampProgrammeUpdate) -> StampProgramme:
    """Change a programme; its terms are frozen once a member holds a card of it."""
    require_role(actor, Role.MANAGER, users_only=True)
    programme = get_programme(session, programme_id=programme_id)
    changes = data.model_dump(exclude_unset=True)
    for key in ("name", "active", "basis", "stamps_needed", "reward_kind", "product_ids",
                "category_ids"):
        if key in changes and changes[key] is None:
            raise ValidationFailed(f"{key} cannot be empty", key, code="required")
    terms = [k for k in PROGRAMME_TERMS if k in changes]
    if terms:
        has_cards = session.scalar(select(StampCard.id).where(
            StampCard.programme_id == programme.id).limit(1)) is not None
        if has_cards:
            raise Conflict("Members hold cards of this programme: its terms can no longer "
                           "change", terms[0], code="programme_terms_frozen")
        targets = programme_targets(programme)
        values: dict[str, Any] = {
            "basis": programme.basis, "stamps_needed": programme.stamps_needed,
            "reward_kind": programme.reward_kind,
            "reward_product_id": programme.reward_product_id,
            "product_ids": sorted(targets.product_ids),
            "category_ids": sorted(targets.category_ids)} | changes
        _check_programme(session, values)
        if "product_ids" in changes or "category_ids" in changes:
            programme.targets.clear()
            session.flush()  # the old rows go before the new ones meet the UNIQUE index
            programme.targets.extend(_target_rows(values["product_ids"],
                                                  values["category_ids"]))
    for key, value in changes.items():
        if key not in ("product_ids", "category_ids"):
            setattr(programme, key, value.value if hasattr(value, "value") else value)
    programme.updated_at = clock.now()
    session.flush()
    audit.record(session, clock=clock, actor=actor, action="stamp_programme.updated",
                 entity_type="stamp_programme", entity_id=programme.id,
                 details={"fields": sorted(changes)})
    return programme


# ================================================================ stamp cards


@dataclass(frozen=True)
class StampAward:
    """What a sale gave one card."""

    programme_id: uuid.UUID
    programme_name: str
    card_id: uuid.UUID
    stamps: int  # given by this sale (including those that paid off debt)
    debt_settled: int
    stamps_on_card: int
    stamps_needed: int
    reward_ids: list[uuid.UUID] = field(default_factory=list)


@dataclass(frozen=True)
class StampReversal:
    """What a refund took back from one card."""

    programme_id: uuid.UUID
    card_id: uuid.UUID
    stamps_removed: int
    rewards_revoked: list[uuid.UUID]
    debt_added: int
    stamps_on_card: int


def _locked_card(session: Session, member_id: uuid.UUID, programme_id: uuid.UUID
                 ) -> StampCard | None:
    return session.scalar(for_update(select(StampCard).where(
        StampCard.member_id == member_id, StampCard.programme_id == programme_id))
        .execution_options(populate_existing=True))


def _card(session: Session, *, clock: Clock, member_id: uuid.UUID,
          programme_id: uuid.UUID) -> StampCard:
    """The member's card of the programme, locked; made on first use."""
    card = _locked_card(session, member_id, programme_id)
    if card is not None:
        return card
    now = clock.now()
    try:  # two first sales racing to make the card: the loser uses the winner's
        with session.begin_nested():
            session.add(StampCard(member_id=member_id, programme_id=programme_id, stamps=0,
                                  debt=0, created_at=now, updated_at=now))
    except IntegrityError:
        pass
    card = _locked_card(session, member_id, programme_id)
    assert card is not None
    return card


def _append_stamps(session: Session, *, clock: Clock, card: StampCard, kind: StampEntryKind,
                   stamps: int = 0, debt: int = 0, reward_id: uuid.UUID | None = None,
                   sale_id: uuid.UUID | None = None, store_id: uuid.UUID | None = None,
                   actor_label: str = "system", reason: str = "") -> StampEntry:
    stamps_after, debt_after = card.stamps + stamps, card.debt + debt
    if stamps_after < 0 or debt_after < 0:
        raise InsufficientBalance("Not enough stamps", "stamps")
    entry = StampEntry(
        id=new_id(), card_id=card.id, kind=kind.value, stamps_delta=stamps, debt_delta=debt,
        stamps_after=stamps_after, debt_after=debt_after, reward_id=reward_id,
        sale_id=sale_id, store_id=store_id, actor_label=actor_label, reason=reason,
        occurred_at=clock.now())
    card.stamps, card.debt = stamps_after, debt_after
    card.updated_at = entry.occurred_at
    session.add(entry)
    return entry


def _settle_debt(session: Session, *, clock: Clock, card: StampCard,
                 sale_id: uuid.UUID | None, store_id: uuid.UUID | None) -> int:
    settle = min(card.stamps, card.debt)
    if settle:
        _append_stamps(session, clock=clock, card=card, kind=StampEntryKind.DEBT_SETTLE,
                       stamps=-settle, debt=-settle, sale_id=sale_id, store_id=store_id,
                       reason="new stamps pay off stamp debt")
    return settle


def _fill(session: Session, *, clock: Clock, card: StampCard, programme: StampProgramme,
          sale_id: uuid.UUID | None, store_id: uuid.UUID | None) -> list[uuid.UUID]:
    """Turn every full set of stamps on the card into a reward."""
    made: list[uuid.UUID] = []
    rewards, _left = rules.rewards_from(card.stamps, programme.stamps_needed)
    now = clock.now()
    for _ in range(rewards):
        reward = StampReward(
            id=new_id(), card_id=card.id, member_id=card.member_id, programme_id=programme.id,
            status=RewardStatus.AVAILABLE.value, earned_at=now,
            expires_at=rules.expires_after(now, programme.valid_days),
            earned_sale_id=sale_id)
        session.add(reward)
        session.flush()
        _append_stamps(session, clock=clock, card=card, kind=StampEntryKind.REWARD,
                       stamps=-programme.stamps_needed, reward_id=reward.id, sale_id=sale_id,
                       store_id=store_id)
        emit(session, clock=clock, type="stamp_reward.earned", subject_id=card.member_id,
             store_id=store_id,
             payload={"member_id": str(card.member_id), "reward_id": str(reward.id),
                      "programme_id": str(programme.id), "programme_name": programme.name,
                      "expires_at": reward.expires_at.isoformat() if reward.expires_at
                      else None})
        made.append(reward.id)
    return made


def stamps_for_sale(session: Session, *, clock: Clock, member_id: uuid.UUID,
                    sale_id: uuid.UUID, store_id: uuid.UUID | None,
                    lines: Sequence[SaleLineTuple]) -> list[StampAward]:
    """Give the stamps a sale earns on every active programme; checkout calls this after
    flushing the sale (``sale_id`` is a foreign key). A sale gives stamps at most once: a
    second call for the same sale gives nothing. Rewards are made as soon as a card fills.
    """
    sold = [rules.SoldLine(p, c, q) for p, c, q in lines]
    if any(line.quantity <= 0 for line in sold):
        raise ValidationFailed("Quantities must be positive", "lines")
    members.get_member(session, member_id=member_id)
    awards: list[StampAward] = []
    programmes = list(session.scalars(select(StampProgramme).where(
        StampProgramme.active.is_(True)).order_by(StampProgramme.id)))  # the lock order
    for programme in programmes:
        basis = StampBasis(programme.basis)
        items = rules.qualifying_items(sold, programme_targets(programme))
        stamps = rules.stamps_for(basis, items)
        if not stamps:
            continue
        card = _card(session, clock=clock, member_id=member_id, programme_id=programme.id)
        if session.scalar(select(StampSale.id).where(
                StampSale.card_id == card.id, StampSale.sale_id == sale_id)) is not None:
            continue  # this sale's stamps were given already
        session.add(StampSale(card_id=card.id, sale_id=sale_id, store_id=store_id,
                              items=items, stamps=stamps, items_refunded=0,
                              stamps_removed=0, awarded_at=clock.now()))
        _append_stamps(session, clock=clock, card=card, kind=StampEntryKind.EARN,
                       stamps=stamps, sale_id=sale_id, store_id=store_id)
        settled = _settle_debt(session, clock=clock, card=card, sale_id=sale_id,
                               store_id=store_id)
        reward_ids = _fill(session, clock=clock, card=card, programme=programme,
                           sale_id=sale_id, store_id=store_id)
        session.flush()
        awards.append(StampAward(programme.id, programme.name, card.id, stamps, settled,
                                 card.stamps, programme.stamps_needed, reward_ids))
    return awards


def _remove_stamps(session: Session, *, clock: Clock, card: StampCard,
                   programme: StampProgramme, remove: int, sale_id: uuid.UUID | None,
                   store_id: uuid.UUID | None, actor_label: str) -> StampReversal:
    """Take ``remove`` stamps off the card without going below zero (module docstring)."""
    now = clock.now()
    unused = list(session.scalars(for_update(select(StampReward).where(
        StampReward.member_id == card.member_id, StampReward.programme_id == programme.id,
        StampReward.status == RewardStatus.AVAILABLE.value,
        or_(StampReward.expires_at.is_(None), StampReward.expires_at > now))
        .order_by(StampReward.earned_at.desc(), StampReward.id.desc()))
        .execution_options(populate_existing=True)))
    plan = rules.plan_removal(remove=remove, stamps=card.stamps, unused_rewards=len(unused),
                              needed=programme.stamps_needed)
    revoked = unused[:plan.rewards_revoked]
    for reward in revoked:
        reward.status, reward.closed_at = RewardStatus.REVOKED.value, now
        _append_stamps(session, clock=clock, card=card, kind=StampEntryKind.REWARD_REVOKED,
                       stamps=programme.stamps_needed, reward_id=reward.id, sale_id=sale_id,
                       store_id=store_id, actor_label=actor_label,
                       reason="refund: the reward's stamps are taken back")
    taken = plan.from_card + plan.from_rewards
    if taken:
        _append_stamps(session, clock=clock, card=card, kind=StampEntryKind.REVERSE,
                       stamps=-taken, sale_id=sale_id, store_id=store_id,
                       actor_label=actor_label, reason="refund")
    if plan.debt:
        _append_stamps(session, clock=clock, card=card, kind=StampEntryKind.DEBT,
                       debt=plan.debt, sale_id=sale_id, store_id=store_id,
                       actor_label=actor_label,
                       reason="refund: the reward these stamps made was already used or "
                              "has expired")
    return StampReversal(programme.id, card.id, taken, [r.id for r in revoked], plan.debt,
                         card.stamps)


def reverse_stamps_for_sale(session: Session, *, clock: Clock, member_id: uuid.UUID,
                            sale_id: uuid.UUID, lines_refunded: Sequence[SaleLineTuple],
                            actor: Principal | None = None) -> list[StampReversal]:
    """Take back the stamps of refunded items; checkout calls this with the lines of each
    refund (not cumulative: each refund's own quantities). See the module docstring for
    the rule when the stamps already became a reward; returns what changed per card."""
    refunded = [rules.SoldLine(p, c, q) for p, c, q in lines_refunded]
    if any(line.quantity <= 0 for line in refunded):
        raise ValidationFailed("Quantities must be positive", "lines_refunded")
    rows = session.execute(
        select(StampSale.id, StampCard.programme_id)
        .join(StampCard, StampCard.id == StampSale.card_id)
        .where(StampSale.sale_id == sale_id).order_by(StampCard.programme_id)).all()
    reversals: list[StampReversal] = []
    for award_id, programme_id in rows:
        programme = get_programme(session, programme_id=programme_id)
        # the member's card now: after a merge the stamps live on the survivor's card
        card = _card(session, clock=clock, member_id=member_id, programme_id=programme_id)
        award = session.scalar(for_update(select(StampSale).where(StampSale.id == award_id))
                               .execution_options(populate_existing=True))
        assert award is not None
        items = rules.qualifying_items(refunded, programme_targets(programme))
        award.items_refunded = min(award.items, award.items_refunded + items)
        should = rules.stamps_to_remove(StampBasis(programme.basis), items=award.items,
                                        stamps=award.stamps,
                                        items_refunded=award.items_refunded)
        remove = should - award.stamps_removed
        if remove <= 0:
            continue
        award.stamps_removed = should
        reversal = _remove_stamps(session, clock=clock, card=card, programme=programme,
                                  remove=remove, sale_id=sale_id, store_id=award.store_id,
                                  actor_label=_label(actor))
        session.flush()
        reversals.append(reversal)
    return reversals


def _reward_state(reward: StampReward, now: datetime) -> RewardStatus:
    status = RewardStatus(reward.status)
    if status is RewardStatus.AVAILABLE and reward.expires_at is not None \
            and reward.expires_at <= now:
        return RewardStatus.EXPIRED
    return status


@dataclass(frozen=True)
class RewardRedeemed:
    reward: StampReward
    programme: StampProgramme


def redeem_stamp_reward(session: Session, *, clock: Clock, actor: Principal | None,
                        member_id: uuid.UUID, reward_id: uuid.UUID,
                        store_id: uuid.UUID | None = None, sale_id: uuid.UUID | None = None,
                        reference: str | None = None) -> RewardRedeemed:
    """Use a reward, at most once: 409 ``reward_already_redeemed`` for a used one, 422 on
    ``reward_id`` for an expired or revoked one. The till then gives the programme's free
    product, or takes 100 % off one qualifying item (``rules.free_item``)."""
    store = _store_for(session, actor, store_id)
    reward = session.scalar(for_update(select(StampReward).where(StampReward.id == reward_id))
                            .execution_options(populate_existing=True))
    if reward is None or reward.member_id != member_id:
        raise NotFound("The member has no such reward", "reward_id", code="reward_unknown")
    now = clock.now()
    state = _reward_state(reward, now)
    if state is RewardStatus.REDEEMED:
        raise Conflict("This reward has already been used", "reward_id",
                       code="reward_already_redeemed")
    if state is RewardStatus.EXPIRED:
        raise ValidationFailed("This reward has expired", "reward_id", code="reward_expired")
    if state is RewardStatus.REVOKED:
        raise ValidationFailed("This reward was taken back by a refund", "reward_id",
                               code="reward_revoked")
    reward.status = RewardStatus.REDEEMED.value
    reward.redeemed_at, reward.redeemed_store_id = now, store
    reward.redeemed_sale_id, reward.reference = sale_id, reference
    reward.redeemed_by = _label(actor)
    session.flush()
    programme = get_programme(session, programme_id=reward.programme_id)
    emit(session, clock=clock, type="stamp_reward.redeemed", subject_id=member_id,
         store_id=store,
         payload={"member_id": str(member_id), "reward_id": str(reward.id),
                  "programme_id": str(programme.id),
                  "sale_id": str(sale_id) if sale_id else None})
    return RewardRedeemed(reward, programme)


def expire_stamp_rewards(session: Session, *, clock: Clock) -> int:
    """The daily job: unused rewards past their date become ``expired`` (redeeming one is
    refused by time already; this makes the status say so)."""
    now = clock.now()
    result = session.execute(
        update(StampReward)
        .where(StampReward.status == RewardStatus.AVAILABLE.value,
               StampReward.expires_at.is_not(None), StampReward.expires_at <= now)
        .values(status=RewardStatus.EXPIRED.value, closed_at=now)
        .execution_options(synchronize_session="fetch"))
    return int(getattr(result, "rowcount", 0) or 0)


@dataclass(frozen=True)
class CardView:
    card: StampCard
    programme: StampProgramme
    rewards: list[StampReward]


def member_stamp_cards(session: Session, *, clock: Clock, member_id: uuid.UUID
                       ) -> list[CardView]:
    """The member's cards with the rewards they can use now."""
    now = clock.now()
    cards = list(session.scalars(select(StampCard).where(StampCard.member_id == member_id)
                                 .order_by(StampCard.created_at, StampCard.id)))
    rewards = list(session.scalars(select(StampReward).where(
        StampReward.member_id == member_id,
        StampReward.status == RewardStatus.AVAILABLE.value)
        .order_by(StampReward.earned_at, StampReward.id)))
    views = []
    for card in cards:
        programme = get_programme(session, programme_id=card.programme_id)
        usable = [r for r in rewards if r.programme_id == card.programme_id
                  and _reward_state(r, now) is RewardStatus.AVAILABLE]
        views.append(CardView(card, programme, usable))
    return views


def stamp_entries(session: Session, *, card_id: uuid.UUID, limit: int = 100
                  ) -> list[StampEntry]:
    return list(session.scalars(select(StampEntry).where(StampEntry.card_id == card_id)
                                .order_by(StampEntry.seq.desc()).limit(limit)))


# ================================================================ visit packages


def _package_values(product: PackageProduct) -> dict[str, Any]:
    return {"name": product.name, "visits": product.visits,
            "price_minor": product.price_minor, "valid_days": product.valid_days}


def service_ids(product: PackageProduct) -> list[uuid.UUID]:
    return sorted(s.product_id for s in product.services)


def create_package_product(session: Session, *, clock: Clock, actor: Principal,
                           data: PackageProductCreate) -> PackageProduct:
    """A manager's "10 haircuts for 880.00, valid a year"."""
    require_role(actor, Role.MANAGER, users_only=True)
    _check_products(session, data.service_ids, "service_ids")
    now = clock.now()
    product = PackageProduct(
        name=data.name, visits=data.visits, price_minor=data.price_minor,
        valid_days=data.valid_days, active=True, created_at=now, updated_at=now,
        services=[PackageProductService(product_id=p) for p in data.service_ids])
    session.add(product)
    session.flush()
    audit.record(session, clock=clock, actor=actor, action="package_product.created",
                 entity_type="package_product", entity_id=product.id,
                 details=_package_values(product))
    return product


def get_package_product(session: Session, *, package_product_id: uuid.UUID
                        ) -> PackageProduct:
    product = session.get(PackageProduct, package_product_id)
    if product is None:
        raise NotFound("No such package product", "package_product_id")
    return product


def list_package_products(session: Session, *, include_inactive: bool = False
                          ) -> list[PackageProduct]:
    stmt = select(PackageProduct).order_by(PackageProduct.name, PackageProduct.id)
    if not include_inactive:
        stmt = stmt.where(PackageProduct.active.is_(True))
    return list(session.scalars(stmt))


def update_package_product(session: Session, *, clock: Clock, actor: Principal,
                           package_product_id: uuid.UUID,
                           data: PackageProductUpdate) -> PackageProduct:
    """Name, price, visits, validity and active change for future sales only; the services
    are frozen once a package has been sold (sold packages read them from here)."""
    require_role(actor, Role.MANAGER, users_only=True)
    product = get_package_product(session, package_product_id=package_product_id)
    changes = data.model_dump(exclude_unset=True)
    for key, value in changes.items():
        if value is None:
            raise ValidationFailed(f"{key} cannot be empty", key, code="required")
    if "service_ids" in changes:
        if session.scalar(select(MemberPackage.id).where(
                MemberPackage.package_product_id == product.id).limit(1)) is not None:
            raise Conflict("Packages of this product have been sold: its services can no "
                           "longer change", "service_ids", code="package_terms_frozen")
        _check_products(session, changes["service_ids"], "service_ids")
        product.services.clear()
        session.flush()
        product.services.extend(PackageProductService(product_id=p)
                                for p in changes["service_ids"])
    for key, value in changes.items():
        if key != "service_ids":
            setattr(product, key, value)
    product.updated_at = clock.now()
    session.flush()
    audit.record(session, clock=clock, actor=actor, action="package_product.updated",
                 entity_type="package_product", entity_id=product.id,
                 details={"fields": sorted(changes)})
    return product


def _append_visits(session: Session, *, clock: Clock, package: MemberPackage,
                   kind: VisitEntryKind, delta: int, actor_label: str,
                   product_id: uuid.UUID | None = None, store_id: uuid.UUID | None = None,
                   sale_id: uuid.UUID | None = None, reference: str | None = None,
                   reverses_id: uuid.UUID | None = None, reason: str = "") -> VisitEntry:
    after = package.visits_left + delta
    if after < 0 or after > package.visits_total:
        raise InsufficientBalance("No visits left on this package", "package_id",
                                  code="no_visits_left")
    entry = VisitEntry(
        id=new_id(), package_id=package.id, kind=kind.value, delta=delta,
        visits_left_after=after, product_id=product_id, store_id=store_id, sale_id=sale_id,
        reference=reference, reverses_id=reverses_id, actor_label=actor_label, reason=reason,
        occurred_at=clock.now())
    package.visits_left = after
    package.updated_at = entry.occurred_at
    session.add(entry)
    return entry


def sell_package(session: Session, *, clock: Clock, actor: Principal | None,
                 member_id: uuid.UUID, package_product_id: uuid.UUID,
                 store_id: uuid.UUID | None = None, sale_id: uuid.UUID | None = None,
                 price_minor: int | None = None) -> MemberPackage:
    """Sell a package to a member: N visits, valid for the product's days from now.

    ``price_minor`` is what the customer paid for it if not the list price (a discounted
    line at the till); the pro-rata refund is computed from it. ``sale_id`` is the
    checkout's sale (flush it first: it is a foreign key)."""
    store = _store_for(session, actor, store_id)
    product = get_package_product(session, package_product_id=package_product_id)
    if not product.active:
        raise ValidationFailed("This package is no longer sold", "package_product_id",
                               code="not_active")
    _active_member(session, member_id)
    price = product.price_minor if price_minor is None else price_minor
    if not 0 <= price <= MAX_AMOUNT_MINOR:
        raise ValidationFailed(f"price_minor must be between 0 and {MAX_AMOUNT_MINOR}",
                               "price_minor")
    now = clock.now()
    package = MemberPackage(
        member_id=member_id, package_product_id=product.id, name=product.name,
        visits_total=product.visits, visits_left=0, price_minor=price,
        status=PackageStatus.ACTIVE.value, sold_at=now,
        expires_at=rules.package_expires_at(now, product.valid_days), store_id=store,
        sale_id=sale_id, updated_at=now)
    session.add(package)
    session.flush()
    _append_visits(session, clock=clock, package=package, kind=VisitEntryKind.SELL,
                   delta=product.visits, actor_label=_label(actor), store_id=store,
                   sale_id=sale_id)
    session.flush()
    emit(session, clock=clock, type="package.sold", subject_id=member_id, store_id=store,
         payload={"member_id": str(member_id), "package_id": str(package.id),
                  "name": package.name, "visits": package.visits_total,
                  "price_minor": price, "expires_at": package.expires_at.isoformat()})
    return package


def _locked_package(session: Session, *, member_id: uuid.UUID, package_id: uuid.UUID
                    ) -> MemberPackage:
    package = session.scalar(for_update(select(MemberPackage).where(
        MemberPackage.id == package_id)).execution_options(populate_existing=True))
    if package is None or package.member_id != member_id:
        raise NotFound("The member has no such package", "package_id",
                       code="package_unknown")
    return package


def is_usable(package: MemberPackage, *, now: datetime) -> bool:
    return (package.status == PackageStatus.ACTIVE.value and package.visits_left > 0
            and package.expires_at > now)


def _check_open(package: MemberPackage, now: datetime) -> None:
    """Refuse a closed package with a 422 naming ``package_id``."""
    if package.status == PackageStatus.REFUNDED.value:
        raise ValidationFailed("This package was refunded", "package_id",
                               code="package_refunded")
    if package.status == PackageStatus.EXPIRED.value or package.expires_at <= now:
        raise ValidationFailed(
            f"This package expired at {package.expires_at.isoformat()}", "package_id",
            code="package_expired")


def use_visit(session: Session, *, clock: Clock, actor: Principal | None,
              member_id: uuid.UUID, package_id: uuid.UUID,
              product_id: uuid.UUID | None = None, store_id: uuid.UUID | None = None,
              sale_id: uuid.UUID | None = None, reference: str | None = None) -> VisitEntry:
    """Take one visit. Refused (422 on ``package_id``) when the package has expired, was
    refunded or has no visits left; (422 on ``product_id``) for a service it does not
    cover."""
    store = _store_for(session, actor, store_id)
    package = _locked_package(session, member_id=member_id, package_id=package_id)
    now = clock.now()
    _check_open(package, now)
    if package.visits_left == 0:
        raise ValidationFailed("No visits left on this package", "package_id",
                               code="no_visits_left")
    if product_id is not None:
        product = get_package_product(session, package_product_id=package.package_product_id)
        if product_id not in service_ids(product):
            raise ValidationFailed("This package does not cover this service", "product_id",
                                   code="service_not_covered")
    entry = _append_visits(session, clock=clock, package=package, kind=VisitEntryKind.USE,
                           delta=-1, actor_label=_label(actor), product_id=product_id,
                           store_id=store, sale_id=sale_id, reference=reference)
    if package.visits_left == 0:
        package.status, package.closed_at = PackageStatus.USED_UP.value, now
    session.flush()
    emit(session, clock=clock, type="package.visit_used", subject_id=member_id,
         store_id=store,
         payload={"member_id": str(member_id), "package_id": str(package.id),
                  "visits_left": package.visits_left, "expires_at":
                  package.expires_at.isoformat()})
    return entry


def return_visit(session: Session, *, clock: Clock, actor: Principal | None,
                 entry_id: uuid.UUID, reason: str = "") -> VisitEntry:
    """Give back a used visit (the sale of the service was refunded), at most once; refused
    when the package has expired or was refunded since."""
    original = session.scalar(select(VisitEntry).where(VisitEntry.id == entry_id))
    if original is None or original.kind != VisitEntryKind.USE.value:
        raise NotFound("No such visit", "entry_id")
    package = session.scalar(for_update(select(MemberPackage).where(
        MemberPackage.id == original.package_id)).execution_options(populate_existing=True))
    assert package is not None
    if session.scalar(select(VisitEntry.id).where(VisitEntry.reverses_id == original.id)):
        raise Conflict("This visit was given back already", "entry_id",
                       code="visit_already_returned")
    _check_open(package, clock.now())
    entry = _append_visits(session, clock=clock, package=package,
                           kind=VisitEntryKind.USE_RETURN, delta=1, actor_label=_label(actor),
                           product_id=original.product_id, store_id=original.store_id,
                           sale_id=original.sale_id, reverses_id=original.id, reason=reason)
    package.status, package.closed_at = PackageStatus.ACTIVE.value, None
    session.flush()
    return entry


@dataclass(frozen=True)
class PackageRefund:
    package: MemberPackage
    refund_minor: int
    visits_refunded: int


def refund_package(session: Session, *, clock: Clock, actor: Principal | None,
                   member_id: uuid.UUID, package_id: uuid.UUID,
                   reason: str = "") -> PackageRefund:
    """Close a package and return the minor units due for its unused visits, pro rata of
    the price paid (``rules.package_refund_minor``); paying them out is the caller's part.
    An expired package is refused (``package_expired``: its visits are forfeit), as is one
    with no visits left (``no_visits_left``) or one refunded before."""
    package = _locked_package(session, member_id=member_id, package_id=package_id)
    if package.status == PackageStatus.REFUNDED.value:
        raise Conflict("This package was refunded already", "package_id",
                       code="package_already_refunded")
    now = clock.now()
    _check_open(package, now)
    if package.visits_left == 0:
        raise ValidationFailed("No visits left on this package to refund", "package_id",
                               code="no_visits_left")
    left = package.visits_left
    amount = rules.package_refund_minor(price_minor=package.price_minor,
                                        visits_total=package.visits_total, visits_left=left)
    _append_visits(session, clock=clock, package=package, kind=VisitEntryKind.REFUND,
                   delta=-left, actor_label=_label(actor), reason=reason)
    package.status, package.closed_at = PackageStatus.REFUNDED.value, now
    package.refunded_minor = amount
    session.flush()
    emit(session, clock=clock, type="package.refunded", subject_id=member_id,
         payload={"member_id": str(member_id), "package_id": str(package.id),
                  "visits_refunded": left, "refund_minor": amount})
    if actor is not None:
        audit.record(session, clock=clock, actor=actor, action="package.refunded",
                     entity_type="member_package", entity_id=package.id,
                     details={"visits_refunded": left, "refund_minor": amount,
                              "reason": reason})
    return PackageRefund(package, amount, left)


def expire_packages(session: Session, *, clock: Clock) -> int:
    """The daily job: active packages past their date lose their visits (one EXPIRE entry
    each) and become ``expired``. Returns how many packages expired."""
    now = clock.now()
    due = list(session.scalars(select(MemberPackage.id).where(
        MemberPackage.status == PackageStatus.ACTIVE.value, MemberPackage.expires_at <= now)
        .order_by(MemberPackage.id)))
    expired = 0
    for package_id in due:
        package = session.scalar(for_update(select(MemberPackage).where(
            MemberPackage.id == package_id)).execution_options(populate_existing=True))
        if package is None or package.status != PackageStatus.ACTIVE.value:
            continue
        left = package.visits_left
        if left:
            _append_visits(session, clock=clock, package=package, kind=VisitEntryKind.EXPIRE,
                           delta=-left, actor_label="system", reason="expired")
        package.status, package.closed_at = PackageStatus.EXPIRED.value, now
        emit(session, clock=clock, type="package.expired", subject_id=package.member_id,
             payload={"member_id": str(package.member_id), "package_id": str(package.id),
                      "visits_forfeited": left})
        expired += 1
    session.flush()
    return expired


def list_member_packages(session: Session, *, member_id: uuid.UUID,
                         include_closed: bool = True) -> list[MemberPackage]:
    stmt = (select(MemberPackage).where(MemberPackage.member_id == member_id)
            .order_by(MemberPackage.sold_at.desc(), MemberPackage.id.desc()))
    if not include_closed:
        stmt = stmt.where(MemberPackage.status == PackageStatus.ACTIVE.value)
    return list(session.scalars(stmt))


def package_service_ids(session: Session, *, packages: Sequence[MemberPackage]
                        ) -> dict[uuid.UUID, list[uuid.UUID]]:
    """Services each package covers, keyed by package id."""
    product_ids = {p.package_product_id for p in packages}
    rows = session.execute(select(PackageProductService.package_product_id,
                                  PackageProductService.product_id)
                           .where(PackageProductService.package_product_id.in_(product_ids)))
    by_product: dict[uuid.UUID, list[uuid.UUID]] = {}
    for product_id, service in rows:
        by_product.setdefault(product_id, []).append(service)
    return {p.id: sorted(by_product.get(p.package_product_id, [])) for p in packages}


def visit_entries(session: Session, *, package_id: uuid.UUID) -> list[VisitEntry]:
    return list(session.scalars(select(VisitEntry).where(VisitEntry.package_id == package_id)
                                .order_by(VisitEntry.seq)))


# ================================================================ gift cards


class WrongPin(ValidationFailed):
    def __init__(self, attempts_left: int) -> None:
        super().__init__(f"Wrong PIN ({attempts_left} more tries before the card locks "
                         f"for {rules.PIN_LOCK.seconds // 60} minutes)", "pin",
                         code="wrong_pin")


class GiftCardLocked(PatronError):
    """Too many wrong PINs: 429 until ``locked_until``."""

    def __init__(self, locked_until: datetime) -> None:
        super().__init__(f"Too many wrong PINs: the card is locked until "
                         f"{locked_until.isoformat()}", "pin", "gift_card_locked", 429)
        self.locked_until = locked_until


@dataclass(frozen=True)
class IssuedCard:
    """A new card and its PIN; the PIN is never stored in the clear and cannot be shown
    again."""

    card: GiftCard
    pin: str


@dataclass(frozen=True)
class PinCheck:
    ok: bool
    failures: int
    locked_until: datetime | None

    def raise_for_failure(self) -> None:
        if self.ok:
            return
        if self.locked_until is not None:
            raise GiftCardLocked(self.locked_until)
        raise WrongPin(rules.MAX_PIN_FAILURES - self.failures)


@dataclass(frozen=True)
class GiftCardTransfer:
    card: GiftCard  # the old card (closed) or the card now attached to a member
    new_card: IssuedCard | None


def _fresh_codes(session: Session, count: int) -> list[str]:
    codes: set[str] = set()
    while len(codes) < count:
        wanted = {rules.new_gift_card_code() for _ in range(count - len(codes))}
        taken = set(session.scalars(select(GiftCard.code).where(GiftCard.code.in_(wanted))))
        codes |= wanted - taken
    return sorted(codes)


def _append_value(session: Session, *, clock: Clock, card: GiftCard, kind: GiftCardEntryKind,
                  delta_minor: int, actor_label: str, store_id: uuid.UUID | None = None,
                  sale_id: uuid.UUID | None = None, reference: str | None = None,
                  counterpart_card_id: uuid.UUID | None = None,
                  reverses_id: uuid.UUID | None = None, reason: str = "") -> GiftCardEntry:
    after = card.balance_minor + delta_minor
    if after < 0:
        raise InsufficientBalance("Not enough value on the gift card", "amount_minor")
    entry = GiftCardEntry(
        id=new_id(), card_id=card.id, kind=kind.value, delta_minor=delta_minor,
        balance_after_minor=after, counterpart_card_id=counterpart_card_id,
        reverses_id=reverses_id, store_id=store_id, sale_id=sale_id, reference=reference,
        actor_label=actor_label, reason=reason, occurred_at=clock.now())
    card.balance_minor = after
    card.updated_at = entry.occurred_at
    session.add(entry)
    session.flush()
    return entry


def _new_card(session: Session, *, clock: Clock, code: str, value_minor: int,
              actor_label: str, kind: GiftCardEntryKind, batch_id: uuid.UUID | None = None,
              store_id: uuid.UUID | None = None, sale_id: uuid.UUID | None = None,
              member_id: uuid.UUID | None = None, expires_at: datetime | None = None,
              transferred_from: GiftCard | None = None) -> IssuedCard:
    pin = rules.new_pin()
    now = clock.now()
    card = GiftCard(
        code=code, pin_hash=rules.hash_pin(code, pin), batch_id=batch_id,
        status=GiftCardStatus.ACTIVE.value, face_value_minor=value_minor, balance_minor=0,
        member_id=member_id, store_id=store_id, sale_id=sale_id,
        transferred_from_id=transferred_from.id if transferred_from else None,
        issued_at=now, expires_at=expires_at, failed_pin_attempts=0, void_reason="",
        updated_at=now)
    session.add(card)
    session.flush()
    _append_value(session, clock=clock, card=card, kind=kind, delta_minor=value_minor,
                  actor_label=actor_label, store_id=store_id, sale_id=sale_id,
                  counterpart_card_id=transferred_from.id if transferred_from else None)
    return IssuedCard(card, pin)


def issue_gift_cards(session: Session, *, clock: Clock, actor: Principal, name: str,
                     count: int, face_value_minor: int, valid_days: int | None = None,
                     store_id: uuid.UUID | None = None
                     ) -> tuple[GiftCardBatch, list[IssuedCard]]:
    """A manager issues a batch of cards of one face value; returns them with their PINs
    (shown this once). ``valid_days`` None: the cards never expire."""
    require_role(actor, Role.MANAGER, users_only=True)
    if not 1 <= count <= MAX_BATCH:
        raise ValidationFailed(f"count must be between 1 and {MAX_BATCH}", "count")
    _check_amount(face_value_minor, "face_value_minor")
    if valid_days is not None and valid_days <= 0:
        raise ValidationFailed("valid_days must be positive", "valid_days")
    store = _store_for(session, actor, store_id)
    now = clock.now()
    expires_at = rules.expires_after(now, valid_days)
    batch = GiftCardBatch(name=name, face_value_minor=face_value_minor, count=count,
                          expires_at=expires_at, store_id=store, actor_label=actor.label,
                          created_at=now)
    session.add(batch)
    session.flush()
    issued = [_new_card(session, clock=clock, code=code, value_minor=face_value_minor,
                        actor_label=actor.label, kind=GiftCardEntryKind.ISSUE,
                        batch_id=batch.id, store_id=store, expires_at=expires_at)
              for code in _fresh_codes(session, count)]
    emit(session, clock=clock, type="gift_card.batch_issued", store_id=store,
         payload={"batch_id": str(batch.id), "count": count,
                  "face_value_minor": face_value_minor})
    audit.record(session, clock=clock, actor=actor, action="gift_card.batch_issued",
                 entity_type="gift_card_batch", entity_id=batch.id, store_id=store,
                 details={"name": name, "count": count, "face_value_minor": face_value_minor,
                          "total_minor": count * face_value_minor})
    return batch, issued


def sell_gift_card(session: Session, *, clock: Clock, actor: Principal | None,
                   face_value_minor: int, store_id: uuid.UUID | None = None,
                   sale_id: uuid.UUID | None = None, member_id: uuid.UUID | None = None,
                   valid_days: int | None = None) -> IssuedCard:
    """One card sold at the till (checkout calls this for a gift-card line, after flushing
    the sale); ``member_id`` attaches it to the buyer if they want."""
    _check_amount(face_value_minor, "face_value_minor")
    store = _store_for(session, actor, store_id)
    if member_id is not None:
        _active_member(session, member_id)
    expires_at = rules.expires_after(clock.now(), valid_days)
    issued = _new_card(session, clock=clock, code=_fresh_codes(session, 1)[0],
                       value_minor=face_value_minor, actor_label=_label(actor),
                       kind=GiftCardEntryKind.ISSUE, store_id=store, sale_id=sale_id,
                       member_id=member_id, expires_at=expires_at)
    emit(session, clock=clock, type="gift_card.sold", subject_id=member_id, store_id=store,
         payload={"gift_card_id": str(issued.card.id), "face_value_minor": face_value_minor,
                  "sale_id": str(sale_id) if sale_id else None})
    return issued


def _find_card(session: Session, code: str, *, lock: bool) -> GiftCard:
    normal = rules.normalise(code)
    card = None
    if rules.is_well_formed(normal):
        stmt = select(GiftCard).where(GiftCard.code == normal)
        card = session.scalar((for_update(stmt) if lock else stmt)
                              .execution_options(populate_existing=True))
    if card is None:
        raise NotFound("No gift card has this code", "code", code="gift_card_unknown")
    return card


def check_pin(session: Session, *, clock: Clock, code: str, pin: str) -> PinCheck:
    """Record a PIN attempt and say whether it was right; never raises for a wrong PIN.

    Run it in a transaction of its own and commit, *then* call
    ``PinCheck.raise_for_failure()``: so a wrong PIN is counted although the request that
    sent it fails. A right PIN clears the count; the 5th wrong one in a row locks the card
    for 15 minutes, during which every PIN, right or wrong, is refused and not counted.
    """
    card = _find_card(session, code, lock=True)
    now = clock.now()
    if rules.is_locked(card.locked_until, now):
        return PinCheck(False, card.failed_pin_attempts, card.locked_until)
    if rules.pin_matches(card.code, pin, card.pin_hash):
        if card.failed_pin_attempts or card.locked_until is not None:
            card.failed_pin_attempts, card.locked_until = 0, None
            session.flush()
        return PinCheck(True, 0, None)
    card.failed_pin_attempts, card.locked_until = rules.after_wrong_pin(
        card.failed_pin_attempts, now)
    session.flush()
    if card.locked_until is not None:
        emit(session, clock=clock, type="gift_card.locked",
             payload={"gift_card_id": str(card.id),
                      "locked_until": card.locked_until.isoformat()})
    return PinCheck(False, card.failed_pin_attempts, card.locked_until)


def _require_pin(card: GiftCard, pin: str, now: datetime) -> None:
    """The PIN check inside a value-moving call (counted beforehand by ``check_pin``)."""
    if rules.is_locked(card.locked_until, now):
        assert card.locked_until is not None
        raise GiftCardLocked(card.locked_until)
    if not rules.pin_matches(card.code, pin, card.pin_hash):
        raise WrongPin(rules.MAX_PIN_FAILURES - card.failed_pin_attempts)


def is_spendable(card: GiftCard, *, now: datetime) -> bool:
    return card.status == GiftCardStatus.ACTIVE.value and (
        card.expires_at is None or card.expires_at > now)


def _require_spendable(card: GiftCard, now: datetime, field_name: str = "code") -> None:
    if card.status == GiftCardStatus.CLOSED.value:
        raise ValidationFailed("This card's balance was moved to another card", field_name,
                               code="gift_card_closed")
    if card.status == GiftCardStatus.VOID.value:
        raise ValidationFailed("This card was voided", field_name, code="gift_card_void")
    if card.status == GiftCardStatus.EXPIRED.value or (
            card.expires_at is not None and card.expires_at <= now):
        raise ValidationFailed("This card has expired", field_name, code="gift_card_expired")


def gift_card_balance(session: Session, *, clock: Clock, code: str, pin: str) -> GiftCard:
    """The card (status, balance) for someone holding its code and PIN."""
    card = _find_card(session, code, lock=False)
    _require_pin(card, pin, clock.now())
    return card


def redeem_gift_card(session: Session, *, clock: Clock, actor: Principal | None, code: str,
                     pin: str, amount_minor: int, store_id: uuid.UUID | None = None,
                     sale_id: uuid.UUID | None = None,
                     reference: str | None = None) -> GiftCardEntry:
    """Pay ``amount_minor`` with the card, partly or wholly; refuses (422) rather than
    overdraw. Lock -> check -> append entry -> update the balance."""
    _check_amount(amount_minor)
    store = _store_for(session, actor, store_id)
    card = _find_card(session, code, lock=True)
    now = clock.now()
    _require_pin(card, pin, now)
    _require_spendable(card, now)
    if card.balance_minor < amount_minor:
        raise InsufficientBalance(
            f"The card holds {card.balance_minor}, less than {amount_minor}", "amount_minor")
    entry = _append_value(session, clock=clock, card=card, kind=GiftCardEntryKind.REDEEM,
                          delta_minor=-amount_minor, actor_label=_label(actor),
                          store_id=store, sale_id=sale_id, reference=reference)
    emit(session, clock=clock, type="gift_card.redeemed", subject_id=card.member_id,
         store_id=store,
         payload={"gift_card_id": str(card.id), "amount_minor": amount_minor,
                  "balance_minor": card.balance_minor,
                  "sale_id": str(sale_id) if sale_id else None})
    return entry


def refund_gift_card_redemption(session: Session, *, clock: Clock, actor: Principal | None,
                                entry_id: uuid.UUID, amount_minor: int,
                                reason: str = "") -> GiftCardEntry:
    """Give back (part of) a redemption when its sale is refunded: to the card, or to the
    card its balance was transferred to. Never more than the redemption in total; refused
    (409 ``gift_card_closed``) when that card is void or expired -- refund another way."""
    _check_amount(amount_minor)
    original = session.scalar(select(GiftCardEntry).where(GiftCardEntry.id == entry_id))
    if original is None or original.kind != GiftCardEntryKind.REDEEM.value:
        raise NotFound("No such gift-card redemption", "entry_id")
    card = session.scalar(for_update(select(GiftCard).where(GiftCard.id == original.card_id))
                          .execution_options(populate_existing=True))
    assert card is not None
    while card.status == GiftCardStatus.CLOSED.value:  # follow the transfers
        successor = session.scalar(for_update(select(GiftCard).where(
            GiftCard.transferred_from_id == card.id)).execution_options(populate_existing=True))
        if successor is None:
            break
        card = successor
    done = session.scalar(select(func.coalesce(func.sum(GiftCardEntry.delta_minor), 0))
                          .where(GiftCardEntry.reverses_id == original.id)) or 0
    left = -original.delta_minor - int(done)
    if amount_minor > left:
        raise ValidationFailed(f"At most {left} of this redemption can still be refunded",
                               "amount_minor", code="refund_exceeds_redemption")
    if not is_spendable(card, now=clock.now()):
        raise Conflict("The gift card is closed, void or expired: refund another way",
                       "entry_id", code="gift_card_closed")
    return _append_value(session, clock=clock, card=card,
                         kind=GiftCardEntryKind.REDEEM_REFUND, delta_minor=amount_minor,
                         actor_label=_label(actor), store_id=original.store_id,
                         sale_id=original.sale_id, reference=original.reference,
                         reverses_id=original.id, reason=reason,
                         counterpart_card_id=original.card_id
                         if card.id != original.card_id else None)


def transfer_gift_card(session: Session, *, clock: Clock, actor: Principal | None, code: str,
                       pin: str, to_member_id: uuid.UUID | None = None) -> GiftCardTransfer:
    """Move the whole balance to a new code and PIN (the old card closes: a lost or shared
    code can no longer be used), or, with ``to_member_id``, attach the card to a member."""
    card = _find_card(session, code, lock=True)
    now = clock.now()
    _require_pin(card, pin, now)
    _require_spendable(card, now)
    if to_member_id is not None:
        _active_member(session, to_member_id)
        card.member_id, card.updated_at = to_member_id, now
        session.flush()
        emit(session, clock=clock, type="gift_card.attached", subject_id=to_member_id,
             payload={"gift_card_id": str(card.id), "member_id": str(to_member_id)})
        if actor is not None:
            audit.record(session, clock=clock, actor=actor, action="gift_card.attached",
                         entity_type="gift_card", entity_id=card.id,
                         details={"member_id": str(to_member_id)})
        return GiftCardTransfer(card, None)
    value = card.balance_minor
    if value == 0:
        raise ValidationFailed("The card is empty: nothing to transfer", "code",
                               code="gift_card_empty")
    label = _label(actor)
    issued = _new_card(session, clock=clock, code=_fresh_codes(session, 1)[0],
                       value_minor=value, actor_label=label,
                       kind=GiftCardEntryKind.TRANSFER_IN, batch_id=card.batch_id,
                       store_id=card.store_id, member_id=card.member_id,
                       expires_at=card.expires_at, transferred_from=card)
    _append_value(session, clock=clock, card=card, kind=GiftCardEntryKind.TRANSFER_OUT,
                  delta_minor=-value, actor_label=label, counterpart_card_id=issued.card.id)
    card.status, card.closed_at = GiftCardStatus.CLOSED.value, now
    session.flush()
    emit(session, clock=clock, type="gift_card.transferred", subject_id=card.member_id,
         payload={"from_gift_card_id": str(card.id), "to_gift_card_id": str(issued.card.id),
                  "amount_minor": value})
    if actor is not None:
        audit.record(session, clock=clock, actor=actor, action="gift_card.transferred",
                     entity_type="gift_card", entity_id=card.id,
                     details={"to_gift_card_id": str(issued.card.id), "amount_minor": value})
    return GiftCardTransfer(card, issued)


def void_gift_card(session: Session, *, clock: Clock, actor: Principal, code: str,
                   reason: str) -> GiftCard:
    """A manager withdraws a card and its balance (one VOID entry); audited. Voiding a void
    card changes nothing."""
    require_role(actor, Role.MANAGER, users_only=True)
    if not reason.strip():
        raise ValidationFailed("Say why the card is voided", "reason", code="required")
    card = _find_card(session, code, lock=True)
    if card.status == GiftCardStatus.VOID.value:
        return card
    if card.status == GiftCardStatus.CLOSED.value:
        raise Conflict("This card's balance was moved to another card", "code",
                       code="gift_card_closed")
    if card.status == GiftCardStatus.EXPIRED.value:
        raise Conflict("This card has expired", "code", code="gift_card_expired")
    value = card.balance_minor
    if value:
        _append_value(session, clock=clock, card=card, kind=GiftCardEntryKind.VOID,
                      delta_minor=-value, actor_label=actor.label, reason=reason.strip())
    now = clock.now()
    card.status, card.closed_at, card.void_reason = (GiftCardStatus.VOID.value, now,
                                                     reason.strip())
    session.flush()
    emit(session, clock=clock, type="gift_card.voided", subject_id=card.member_id,
         payload={"gift_card_id": str(card.id), "amount_minor": value})
    audit.record(session, clock=clock, actor=actor, action="gift_card.voided",
                 entity_type="gift_card", entity_id=card.id,
                 details={"amount_minor": value, "reason": reason.strip()})
    return card


def expire_gift_cards(session: Session, *, clock: Clock) -> int:
    """The daily job: active cards past their date lose their balance (one EXPIRE entry
    each) and become ``expired``. Returns how many cards expired."""
    now = clock.now()
    due = list(session.scalars(select(GiftCard.id).where(
        GiftCard.status == GiftCardStatus.ACTIVE.value, GiftCard.expires_at.is_not(None),
        GiftCard.expires_at <= now).order_by(GiftCard.id)))
    expired = 0
    for card_id in due:
        card = session.scalar(for_update(select(GiftCard).where(GiftCard.id == card_id))
                              .execution_options(populate_existing=True))
        if card is None or card.status != GiftCardStatus.ACTIVE.value:
            continue
        value = card.balance_minor
        if value:
            _append_value(session, clock=clock, card=card, kind=GiftCardEntryKind.EXPIRE,
                          delta_minor=-value, actor_label="system", reason="expired")
        card.status, card.closed_at = GiftCardStatus.EXPIRED.value, now
        emit(session, clock=clock, type="gift_card.expired", subject_id=card.member_id,
             payload={"gift_card_id": str(card.id), "amount_minor": value})
        expired += 1
    session.flush()
    return expired


def gift_card_entries(session: Session, *, card_id: uuid.UUID) -> list[GiftCardEntry]:
    return list(session.scalars(select(GiftCardEntry).where(GiftCardEntry.card_id == card_id)
                                .order_by(GiftCardEntry.seq)))


# ================================================================ jobs and books


def run_daily(session: Session, *, clock: Clock) -> dict[str, int]:
    """The daily job of this domain: expire rewards, packages and gift cards."""
    return {"stamp_rewards_expired": expire_stamp_rewards(session, clock=clock),
            "packages_expired": expire_packages(session, clock=clock),
            "gift_cards_expired": expire_gift_cards(session, clock=clock)}


def verify(session: Session) -> list[str]:
    """Problems in the books: a cached stamps / debt / visits-left / gift-card balance that
    differs from its ledger's sum or is negative, a reward without its one REWARD entry,
    a closed card or package still holding value, transfers that do not cancel out."""
    problems: list[str] = []
    stamp_sums = (select(StampEntry.card_id, func.sum(StampEntry.stamps_delta).label("s"),
                         func.sum(StampEntry.debt_delta).label("d"))
                  .group_by(StampEntry.card_id).subquery())
    for card_id, s, d, ls, ld in session.execute(
            select(StampCard.id, StampCard.stamps, StampCard.debt,
                   func.coalesce(stamp_sums.c.s, 0), func.coalesce(stamp_sums.c.d, 0))
            .outerjoin(stamp_sums, stamp_sums.c.card_id == StampCard.id)):
        if (s, d) != (int(ls), int(ld)):
            problems.append(f"stamp card {card_id}: {s} stamps / {d} debt but ledger sums to "
                            f"{ls} / {ld}")
        if s < 0 or d < 0:
            problems.append(f"stamp card {card_id}: negative stamps or debt {s} / {d}")
    made = (select(StampEntry.reward_id, func.count().label("n")).where(
        StampEntry.kind == StampEntryKind.REWARD.value).group_by(StampEntry.reward_id)
        .subquery())
    revoked = (select(StampEntry.reward_id, func.count().label("n")).where(
        StampEntry.kind == StampEntryKind.REWARD_REVOKED.value)
        .group_by(StampEntry.reward_id).subquery())
    for reward_id, status, m, r in session.execute(
            select(StampReward.id, StampReward.status, func.coalesce(made.c.n, 0),
                   func.coalesce(revoked.c.n, 0))
            .outerjoin(made, made.c.reward_id == StampReward.id)
            .outerjoin(revoked, revoked.c.reward_id == StampReward.id)):
        want_revoked = 1 if status == RewardStatus.REVOKED.value else 0
        if (int(m), int(r)) != (1, want_revoked):
            problems.append(f"stamp reward {reward_id} ({status}): {m} REWARD and {r} "
                            f"REWARD_REVOKED entries")
    visit_sums = (select(VisitEntry.package_id, func.sum(VisitEntry.delta).label("v"))
                  .group_by(VisitEntry.package_id).subquery())
    for package_id, left, total, status, lv in session.execute(
            select(MemberPackage.id, MemberPackage.visits_left, MemberPackage.visits_total,
                   MemberPackage.status, func.coalesce(visit_sums.c.v, 0))
            .outerjoin(visit_sums, visit_sums.c.package_id == MemberPackage.id)):
        if left != int(lv):
            problems.append(f"package {package_id}: {left} visits left but ledger sums to "
                            f"{lv}")
        if not 0 <= left <= total:
            problems.append(f"package {package_id}: {left} visits left of {total}")
        if status != PackageStatus.ACTIVE.value and left != 0:
            problems.append(f"package {package_id}: {status} but {left} visits left")
    value_sums = (select(GiftCardEntry.card_id, func.sum(GiftCardEntry.delta_minor).label("v"))
                  .group_by(GiftCardEntry.card_id).subquery())
    for card_id, balance, status, lv in session.execute(
            select(GiftCard.id, GiftCard.balance_minor, GiftCard.status,
                   func.coalesce(value_sums.c.v, 0))
            .outerjoin(value_sums, value_sums.c.card_id == GiftCard.id)):
        if balance != int(lv):
            problems.append(f"gift card {card_id}: balance {balance} but ledger sums to {lv}")
        if balance < 0:
            problems.append(f"gift card {card_id}: negative balance {balance}")
        if status != GiftCardStatus.ACTIVE.value and balance != 0:
            problems.append(f"gift card {card_id}: {status} but holds {balance}")
    moved = session.scalar(select(func.coalesce(func.sum(GiftCardEntry.delta_minor), 0)).where(
        GiftCardEntry.kind.in_([GiftCardEntryKind.TRANSFER_IN.value,
                                GiftCardEntryKind.TRANSFER_OUT.value]))) or 0
    if int(moved):
        problems.append(f"gift-card transfers do not cancel out: they sum to {moved}")
    return problems


# ================================================================ merge


def _merge_stamp_cards(session: Session, clock: Clock, survivor_id: uuid.UUID,
                       duplicate_id: uuid.UUID) -> int:
    """A member has one card per programme: the duplicate's card moves to the survivor if
    the survivor has none, else its stamps and debt fold into the survivor's card with a
    pair of entries (and a full card makes its rewards). Rewards follow the member through
    the generic re-pointing of ``stamp_rewards.member_id``."""
    theirs = list(session.scalars(for_update(select(StampCard).where(
        StampCard.member_id == duplicate_id).order_by(StampCard.programme_id))
        .execution_options(populate_existing=True)))
    moved = 0
    for card in theirs:
        ours = _locked_card(session, survivor_id, card.programme_id)
        if ours is None:
            card.member_id = survivor_id
            session.flush()
            moved += 1
            continue
        s, d = card.stamps, card.debt
        if s or d:
            _append_stamps(session, clock=clock, card=card, kind=StampEntryKind.MERGE_OUT,
                           stamps=-s, debt=-d, reason=f"merged into {survivor_id}")
            _append_stamps(session, clock=clock, card=ours, kind=StampEntryKind.MERGE_IN,
                           stamps=s, debt=d, reason=f"merged from {duplicate_id}")
            _settle_debt(session, clock=clock, card=ours, sale_id=None, store_id=None)
            programme = get_programme(session, programme_id=ours.programme_id)
            _fill(session, clock=clock, card=ours, programme=programme, sale_id=None,
                  store_id=None)
            session.flush()
            moved += 1
    return moved


members.MERGE_HOOKS["stamp_cards"] = _merge_stamp_cards
