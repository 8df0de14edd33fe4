"""Use cases of loyalty: earn, release, redeem, claw back, expire, adjust; tiers.

Every movement follows lock -> check -> append entry -> update cached balances, inside the
caller's transaction (see ``patron.wallet.service`` for the locking notes). Tier
qualification counts points *earned* (or spend), never the current balance.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, case, func, select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from patron.auth import audit
from patron.auth.enums import Role
from patron.auth.principal import Principal, require_role
from patron.core.clock import Clock
from patron.core.errors import (
    InsufficientBalance,
    NotFound,
    PermissionDenied,
    ValidationFailed,
)
from patron.core.events import emit
from patron.core.ids import new_id
from patron.core.memo import forget, memo
from patron.loyalty import rules
from patron.loyalty.enums import ExpiryPolicy, PointsEntryKind, Rounding, TierBasis
from patron.loyalty.models import (
    LoyaltyProgram,
    MemberTier,
    PointsAccount,
    PointsEntry,
    PointsLot,
    PointsMultiplier,
    PointsTransfer,
    Tier,
    TierChange,
)
from patron.members import service as members
from patron.members.enums import MemberStatus

MAX_POINTS = 1_000_000_000


def for_update(stmt: Select[PointsAccount]) -> Select[PointsAccount]:
    """Row lock on PostgreSQL; a module-level function so tests can take it away."""
    # populate_existing: the row as locked, even if this session read it before
    # (an object in the identity map keeps its old values otherwise, and a write based
    # on them loses whatever committed between the read and the lock)
    return stmt.with_for_update().execution_options(populate_existing=True)


# ---------------------------------------------------------------- programme


def get_program(session: Session, *, clock: Clock) -> LoyaltyProgram:
    """The brand's rules (a default programme is created on first use); one read per
    transaction (core.memo)."""
    return memo(session, "loyalty.program", lambda: _load_program(session, clock))


def _load_program(session: Session, clock: Clock) -> LoyaltyProgram:
    for _attempt in range(FIRST_USE_ATTEMPTS):
        program = session.get(LoyaltyProgram, 1)
        if program is not None:
            return program
        try:  # concurrent first uses race to create the row: the loser reads the winner's
            with session.begin_nested():
                session.add(LoyaltyProgram(id=1, updated_at=clock.now()))
        except IntegrityError:
            pass
        except OperationalError:
            # SQLite: a read transaction cannot start writing once another connection has
            # written since it began ("database is locked" at once, no waiting), as when two
            # pages of a new database both create the default programme. Only a read can
            # meet this (writers BEGIN IMMEDIATE), so start the transaction over: it then
            # sees the winner's row, or creates it.
            if session.get_bind().dialect.name != "sqlite":
                raise
            session.rollback()
            continue
        program = session.get(LoyaltyProgram, 1, populate_existing=True)
        assert program is not None
        return program
    raise RuntimeError("the default loyalty programme could not be created")


#: How often a read that meets another's first write of the programme starts over.
FIRST_USE_ATTEMPTS = 5


PROGRAM_FIELDS = {"points_per_major", "rounding", "pending_days", "expiry_policy",
                  "expiry_months", "expiring_notice_days", "points_per_major_redeemed",
                  "birthday_multiplier_pct", "tier_basis", "downgrade_grace_days"}


def update_program(session: Session, *, clock: Clock, actor: Principal,
                   changes: dict[str, Any]) -> LoyaltyProgram:
    require_role(actor, Role.OWNER, users_only=True)
    program = get_program(session, clock=clock)
    for key, value in changes.items():
        if key not in PROGRAM_FIELDS:
            raise ValidationFailed(f"Unknown programme setting {key!r}", key)
        setattr(program, key, value.value if hasattr(value, "value") else value)
    program.updated_at = clock.now()
    session.flush()
    audit.record(session, clock=clock, actor=actor, action="loyalty.program_updated",
                 entity_type="loyalty_program", entity_id="1",
                 details={k: getattr(program, k) for k in sorted(changes)})
    return program


def multipliers(session: Session) -> list[rules.Multiplier]:
    """Active earning multipliers (memoised per transaction)."""
    return memo(session, "loyalty.multipliers", lambda: [
        rules.Multiplier(m.scope, m.target_id, m.pct, m.starts_at, m.ends_at)
        for m in session.scalars(select(PointsMultiplier)
                                 .where(PointsMultiplier.active.is_(True)))])


def add_multiplier(session: Session, *, clock: Clock, actor: Principal, name: str, scope: str,
                   target_id: uuid.UUID | None, pct: int, starts_at: datetime | None = None,
                   ends_at: datetime | None = None) -> PointsMultiplier:
    """Earn more on a product, category or everything (e.g. double-points days)."""
    require_role(actor, Role.MANAGER, users_only=True)
    if scope not in ("all", "category", "product"):
        raise ValidationFailed("scope is all, category or product", "scope")
    if (scope == "all") != (target_id is None):
        raise ValidationFailed("target_id is needed for a category or product", "target_id")
    if not 0 <= pct <= 10_000:
        raise ValidationFailed("pct must be between 0 and 10000", "pct")
    if starts_at and ends_at and ends_at <= starts_at:
        raise ValidationFailed("The period must end after it starts", "ends_at")
    m = PointsMultiplier(name=name, scope=scope, target_id=target_id, pct=pct,
                         starts_at=starts_at, ends_at=ends_at, active=True)
    session.add(m)
    session.flush()
    forget(session, "loyalty.multipliers")
    audit.record(session, clock=clock, actor=actor, action="loyalty.multiplier_added",
                 entity_type="points_multiplier", entity_id=m.id,
                 details={"scope": scope, "pct": pct})
    return m


# ---------------------------------------------------------------- accounts


def lock_member(session: Session, *, clock: Clock, member_id: uuid.UUID) -> None:
    """Serialise loyalty changes of one member (tier rows, first account) across tills."""
    _account(session, clock=clock, member_id=member_id)


def _locked(session: Session, member_id: uuid.UUID) -> PointsAccount | None:
    return session.scalar(for_update(select(PointsAccount).where(
        PointsAccount.member_id == member_id)).execution_options(populate_existing=True))


def _account(session: Session, *, clock: Clock, member_id: uuid.UUID) -> PointsAccount:
    """The member's points account, locked (``FOR UPDATE``); opened on first use.

    Two first earns for one member can race to open it (two tills, PostgreSQL): the loser's
    insert fails on the unique member id inside a savepoint and it locks the winner's row.
    Holding this lock also serialises tier evaluation per member (see evaluate_tier).
    """
    account = _locked(session, member_id)
    if account is None:
        try:
            with session.begin_nested():
                session.add(PointsAccount(member_id=member_id, available=0, pending=0, debt=0,
                                          lifetime_earned=0, updated_at=clock.now()))
        except IntegrityError:
            pass
        account = _locked(session, member_id)
        assert account is not None
    return account


def _append(session: Session, *, clock: Clock, account: PointsAccount, kind: PointsEntryKind,
            available: int = 0, pending: int = 0, debt: int = 0,
            lot_id: uuid.UUID | None = None, sale_id: uuid.UUID | None = None,
            store_id: uuid.UUID | None = None, actor: Principal | None = None,
            reason: str = "") -> PointsEntry:
    after = (account.available + available, account.pending + pending, account.debt + debt)
    if min(after) < 0:
        raise InsufficientBalance("Not enough points", "points")
    entry = PointsEntry(
        id=new_id(), account_id=account.id, kind=kind.value, available_delta=available,
        pending_delta=pending, debt_delta=debt, available_after=after[0],
        pending_after=after[1], debt_after=after[2], lot_id=lot_id, sale_id=sale_id,
        store_id=store_id, actor_label=actor.label if actor else "system", reason=reason,
        occurred_at=clock.now())
    account.available, account.pending, account.debt = after
    account.updated_at = entry.occurred_at
    session.add(entry)
    return entry


def _release_due(session: Session, *, clock: Clock, account: PointsAccount) -> int:
    """Move lots whose return window has passed from pending to available."""
    now = clock.now()
    released = 0
    lots = session.scalars(select(PointsLot).where(
        PointsLot.account_id == account.id, PointsLot.is_pending.is_(True),
        PointsLot.available_at <= now).order_by(PointsLot.earned_at, PointsLot.id))
    for lot in lots:
        lot.is_pending = False
        if lot.remaining:
            _append(session, clock=clock, account=account, kind=PointsEntryKind.RELEASE,
                    available=lot.remaining, pending=-lot.remaining, lot_id=lot.id,
                    sale_id=lot.sale_id)
            released += lot.remaining
    return released


def _consume_fifo(session: Session, account: PointsAccount, points: int) -> None:
    """Take ``points`` from the oldest available lots (the caller appends the entry)."""
    lots = session.scalars(select(PointsLot).where(
        PointsLot.account_id == account.id, PointsLot.is_pending.is_(False),
        PointsLot.remaining > 0).order_by(PointsLot.earned_at, PointsLot.id))
    left = points
    for lot in lots:
        take = min(left, lot.remaining)
        lot.remaining -= take
        left -= take
        if left == 0:
            break
    if left:
        raise InsufficientBalance("Not enough points", "points")


def _check_points(points: int, field: str = "points") -> None:
    if points <= 0:
        raise ValidationFailed("Points must be a positive whole number", field)
    if points > MAX_POINTS:
        raise ValidationFailed(f"At most {MAX_POINTS} points at once", field)


def _new_lot(session: Session, *, clock: Clock, program: LoyaltyProgram, account: PointsAccount,
             points: int, sale_id: uuid.UUID | None, tz: str, pending: bool) -> PointsLot:
    now = clock.now()
    lot = PointsLot(
        account_id=account.id, sale_id=sale_id, points=points, remaining=points,
        is_pending=pending, earned_at=now,
        available_at=now + timedelta(days=program.pending_days if pending else 0),
        expires_at=rules.expires_at(now, policy=ExpiryPolicy(program.expiry_policy),
                                    months=program.expiry_months, tz=tz))
    session.add(lot)
    session.flush()
    return lot


def earn(session: Session, *, clock: Clock, actor: Principal | None, member_id: uuid.UUID,
         points: int, tz: str, sale_id: uuid.UUID | None = None,
         store_id: uuid.UUID | None = None, reason: str = "") -> PointsEntry | None:
    """Credit earned points: first settle any debt, the rest waits out the return window."""
    _check_points(points)
    program = get_program(session, clock=clock)
    account = _account(session, clock=clock, member_id=member_id)
    _release_due(session, clock=clock, account=account)
    account.lifetime_earned += points
    settle = min(account.debt, points)
    if settle:
        _append(session, clock=clock, account=account, kind=PointsEntryKind.DEBT_SETTLE,
                debt=-settle, sale_id=sale_id, store_id=store_id, actor=actor,
                reason="settled from new earnings")
    rest = points - settle
    if not rest:
        return None
    pending = program.pending_days > 0
    lot = _new_lot(session, clock=clock, program=program, account=account, points=rest,
                   sale_id=sale_id, tz=tz, pending=pending)
    return _append(session, clock=clock, account=account, kind=PointsEntryKind.EARN,
                   available=0 if pending else rest, pending=rest if pending else 0,
                   lot_id=lot.id, sale_id=sale_id, store_id=store_id, actor=actor,
                   reason=reason)


def redeem(session: Session, *, clock: Clock, actor: Principal | None, member_id: uuid.UUID,
           points: int, sale_id: uuid.UUID | None = None, store_id: uuid.UUID | None = None,
           reason: str = "") -> PointsEntry:
    """Spend available points, oldest lots first; refuses (422) rather than go negative."""
    _check_points(points)
    account = _locked(session, member_id)
    if account is None:
        raise InsufficientBalance(f"The member has 0 points, not {points}", "points")
    _release_due(session, clock=clock, account=account)
    if account.available < points:
        raise InsufficientBalance(
            f"The member has {account.available} points available, not {points}", "points")
    _consume_fifo(session, account, points)
    return _append(session, clock=clock, account=account, kind=PointsEntryKind.REDEEM,
                   available=-points, sale_id=sale_id, store_id=store_id, actor=actor,
                   reason=reason)


def return_redeemed(session: Session, *, clock: Clock, actor: Principal | None,
                    member_id: uuid.UUID, points: int, tz: str, sale_id: uuid.UUID,
                    store_id: uuid.UUID | None) -> PointsEntry:
    """A refund gives back points a sale used; they come back as a new, available lot."""
    _check_points(points)
    program = get_program(session, clock=clock)
    account = _account(session, clock=clock, member_id=member_id)
    lot = _new_lot(session, clock=clock, program=program, account=account, points=points,
                   sale_id=sale_id, tz=tz, pending=False)
    return _append(session, clock=clock, account=account, kind=PointsEntryKind.REDEEM_RETURN,
                   available=points, lot_id=lot.id, sale_id=sale_id, store_id=store_id,
                   actor=actor, reason="refund")


@dataclass(frozen=True)
class Clawback:
    taken: int
    debt: int


def claw_back(session: Session, *, clock: Clock, actor: Principal | None,
              member_id: uuid.UUID, points: int, sale_id: uuid.UUID,
              store_id: uuid.UUID | None) -> Clawback:
    """Take back points a refunded sale earned: from that sale's lot first (pending or not),
    then the oldest available lots; what the balance can't cover becomes debt."""
    _check_points(points)
    account = _account(session, clock=clock, member_id=member_id)
    _release_due(session, clock=clock, account=account)
    left = points
    for lot in session.scalars(select(PointsLot).where(
            PointsLot.account_id == account.id, PointsLot.sale_id == sale_id,
            PointsLot.remaining > 0).order_by(PointsLot.earned_at)):
        take = min(left, lot.remaining)
        lot.remaining -= take
        left -= take
        _append(session, clock=clock, account=account, kind=PointsEntryKind.CLAWBACK,
                available=0 if lot.is_pending else -take, pending=-take if lot.is_pending else 0,
                lot_id=lot.id, sale_id=sale_id, store_id=store_id, actor=actor, reason="refund")
        if not left:
            break
    from_balance = min(left, account.available)
    if from_balance:
        _consume_fifo(session, account, from_balance)
        _append(session, clock=clock, account=account, kind=PointsEntryKind.CLAWBACK,
                available=-from_balance, sale_id=sale_id, store_id=store_id, actor=actor,
                reason="refund")
        left -= from_balance
    if left:
        _append(session, clock=clock, account=account, kind=PointsEntryKind.DEBT, debt=left,
                sale_id=sale_id, store_id=store_id, actor=actor,
                reason="refund: points already spent")
    account.lifetime_earned = max(0, account.lifetime_earned - points)
    return Clawback(taken=points - left, debt=left)


def adjust(session: Session, *, clock: Clock, actor: Principal, member_id: uuid.UUID,
           points: int, reason: str, tz: str) -> PointsEntry:
    """A manager's correction with a reason; audited. Never takes the balance below zero."""
    require_role(actor, Role.MANAGER, users_only=True)
    if not reason.strip():
        raise ValidationFailed("An adjustment needs a reason", "reason", code="required")
    if points == 0 or abs(points) > MAX_POINTS:
        raise ValidationFailed(f"Points must be non-zero and at most {MAX_POINTS}", "points")
    members.get_member(session, member_id=member_id)
    program = get_program(session, clock=clock)
    account = _account(session, clock=clock, member_id=member_id)
    _release_due(session, clock=clock, account=account)
    lot_id = None
    if points > 0:
        lot_id = _new_lot(session, clock=clock, program=program, account=account, points=points,
                          sale_id=None, tz=tz, pending=False).id
    else:
        if account.available < -points:
            raise InsufficientBalance(
                f"The member has {account.available} points available", "points")
        _consume_fifo(session, account, -points)
    entry = _append(session, clock=clock, account=account, kind=PointsEntryKind.ADJUST,
                    available=points, lot_id=lot_id, actor=actor, reason=reason.strip())
    audit.record(session, clock=clock, actor=actor, action="points.adjusted",
                 entity_type="member", entity_id=member_id,
                 details={"points": points, "reason": reason.strip()})
    return entry


# ---------------------------------------------------------------- transfers
# Design overview: a transfer moves *available* points from one member to another (family
# sharing, a gift) and conserves them: the sender's ledger gets one ``transfer_out`` entry
# of -points, the receiver's one ``transfer_in`` entry per lot it receives, and all of them
# name one ``PointsTransfer`` row. The sender's lots are consumed oldest first, as a
# redemption would; for each lot taken the receiver gets a lot of the same size that
# keeps that lot's expiry, so giving points away can neither lengthen nor shorten their
# life. Transfers are not earnings: they settle no debt, do not count towards tiers
# (``qualifying_value`` counts earn/clawback/debt entries only) and leave
# ``lifetime_earned`` alone on both sides. Idempotency is the caller's: the API runs the
# call once per Idempotency-Key (``api.idempotent.run_once``).


@dataclass(frozen=True)
class Transfer:
    """What a transfer did: the reference row and the two sides' entries."""

    transfer: PointsTransfer
    out_entry: PointsEntry
    in_entries: list[PointsEntry]


def _take_fifo(session: Session, account: PointsAccount,
               points: int) -> list[tuple[PointsLot, int]]:
    """Take ``points`` from the oldest available lots; returns (lot, points taken) pairs."""
    taken: list[tuple[PointsLot, int]] = []
    left = points
    for lot in session.scalars(select(PointsLot).where(
            PointsLot.account_id == account.id, PointsLot.is_pending.is_(False),
            PointsLot.remaining > 0).order_by(PointsLot.earned_at, PointsLot.id)):
        take = min(left, lot.remaining)
        lot.remaining -= take
        left -= take
        taken.append((lot, take))
        if left == 0:
            break
    if left:
        raise InsufficientBalance("Not enough points", "points")
    return taken


def _live(session: Session, member_id: uuid.UUID, field: str) -> None:
    """A transfer end must be a live member (not merged away or erased)."""
    try:
        member = members.get_member(session, member_id=member_id)
    except NotFound:
        raise NotFound("No such member", field) from None
    if member.status != MemberStatus.ACTIVE.value:
        raise ValidationFailed("The member is not active", field, code="not_active")


def transfer(session: Session, *, clock: Clock, actor: Principal | None,
             from_member_id: uuid.UUID, to_member_id: uuid.UUID, points: int,
             store_id: uuid.UUID | None = None, note: str = "") -> Transfer:
    """Move available points from one member to another; audited.

    Refuses (422, naming the field) zero, negative or oversized amounts, a transfer to the
    same member, a member who is not active, and more points than the sender has available.
    Both accounts are locked in account-id order -- the order the daily expiry job locks
    them in -- so two transfers in opposite directions, or a transfer and the daily job,
    queue instead of deadlocking.
    """
    _check_points(points)
    if from_member_id == to_member_id:
        raise ValidationFailed("Points can only be transferred to another member",
                               "to_member_id", code="same_member")
    if len(note) > 500:
        raise ValidationFailed("The note has at most 500 characters", "note")
    _live(session, from_member_id, "member_id")
    _live(session, to_member_id, "to_member_id")
    store = store_id
    if actor is not None:
        if store is None:
            store = actor.default_store_id
        elif not actor.can_access_store(store):
            raise PermissionDenied("This belongs to a store you don't have access to")
    sender_id = session.scalar(select(PointsAccount.id).where(
        PointsAccount.member_id == from_member_id))
    if sender_id is None:
        raise InsufficientBalance(f"The member has 0 points, not {points}", "points")
    receiver_id = session.scalar(select(PointsAccount.id).where(
        PointsAccount.member_id == to_member_id))
    if receiver_id is None:
        # A new account is invisible to other transactions until we commit, so locking it
        # before the sender's cannot take part in a lock cycle.
        receiver_id = _account(session, clock=clock, member_id=to_member_id).id
    locked: dict[uuid.UUID, PointsAccount] = {}
    for account_id in sorted({sender_id, receiver_id}):
        account = session.scalar(for_update(select(PointsAccount).where(
            PointsAccount.id == account_id)).execution_options(populate_existing=True))
        assert account is not None
        locked[account_id] = account
    sender, receiver = locked[sender_id], locked[receiver_id]
    _release_due(session, clock=clock, account=sender)
    if sender.available < points:
        raise InsufficientBalance(
            f"The member has {sender.available} points available, not {points}", "points")
    row = PointsTransfer(from_account_id=sender.id, to_account_id=receiver.id, points=points,
                         store_id=store, actor_label=actor.label if actor else "system",
                         note=note.strip(), occurred_at=clock.now())
    session.add(row)
    session.flush()
    out_entry = _append(session, clock=clock, account=sender,
                        kind=PointsEntryKind.TRANSFER_OUT, available=-points, store_id=store,
                        actor=actor, reason=f"to member {to_member_id}")
    out_entry.transfer_id = row.id
    in_entries = []
    now = clock.now()
    for source, taken in _take_fifo(session, sender, points):
        lot = PointsLot(account_id=receiver.id, sale_id=None, points=taken, remaining=taken,
                        is_pending=False, earned_at=now, available_at=now,
                        expires_at=source.expires_at)
        session.add(lot)
        session.flush()
        entry = _append(session, clock=clock, account=receiver,
                        kind=PointsEntryKind.TRANSFER_IN, available=taken, lot_id=lot.id,
                        store_id=store, actor=actor, reason=f"from member {from_member_id}")
        entry.transfer_id = row.id
        in_entries.append(entry)
    session.flush()
    if actor is not None:
        audit.record(session, clock=clock, actor=actor, action="points.transferred",
                     entity_type="member", entity_id=from_member_id, store_id=store,
                     details={"to_member_id": str(to_member_id), "points": points,
                              "transfer_id": str(row.id)})
    emit(session, clock=clock, type="points.transferred", subject_id=from_member_id,
         store_id=store, payload={"transfer_id": str(row.id),
                                  "from_member_id": str(from_member_id),
                                  "to_member_id": str(to_member_id), "points": points})
    return Transfer(transfer=row, out_entry=out_entry, in_entries=in_entries)


def transfers(session: Session, *, member_id: uuid.UUID, limit: int = 50
              ) -> list[PointsTransfer]:
    """The member's transfers, sent and received, newest first."""
    account_id = session.scalar(select(PointsAccount.id).where(
        PointsAccount.member_id == member_id))
    if account_id is None:
        return []
    return list(session.scalars(select(PointsTransfer).where(
        (PointsTransfer.from_account_id == account_id)
        | (PointsTransfer.to_account_id == account_id))
        .order_by(PointsTransfer.occurred_at.desc(), PointsTransfer.id.desc()).limit(limit)))


def run_daily(session: Session, *, clock: Clock) -> dict[str, int]:
    """The daily job: release matured pending points, warn of expiring lots, expire due lots."""
    now = clock.now()
    program = get_program(session, clock=clock)
    counts = {"released": 0, "expiring_notices": 0, "expired_points": 0}
    due_accounts = set(session.scalars(select(PointsLot.account_id).where(
        PointsLot.is_pending.is_(True), PointsLot.available_at <= now)))
    for account_id in sorted(due_accounts):
        account = session.scalar(for_update(select(PointsAccount).where(
            PointsAccount.id == account_id)))
        if account is not None:
            counts["released"] += _release_due(session, clock=clock, account=account)
    soon = now + timedelta(days=program.expiring_notice_days)
    for lot in session.scalars(select(PointsLot).where(
            PointsLot.remaining > 0, PointsLot.expires_at.is_not(None),
            PointsLot.expires_at > now, PointsLot.expires_at <= soon,
            PointsLot.expiring_notified_at.is_(None))):
        account = session.get(PointsAccount, lot.account_id)
        assert account is not None
        lot.expiring_notified_at = now
        emit(session, clock=clock, type="points.expiring", subject_id=account.member_id,
             payload={"member_id": str(account.member_id), "points": lot.remaining,
                      "expires_at": lot.expires_at.isoformat() if lot.expires_at else None})
        counts["expiring_notices"] += 1
    expired_accounts = set(session.scalars(select(PointsLot.account_id).where(
        PointsLot.remaining > 0, PointsLot.expires_at.is_not(None),
        PointsLot.expires_at <= now)))
    for account_id in sorted(expired_accounts):
        account = session.scalar(for_update(select(PointsAccount).where(
            PointsAccount.id == account_id)))
        assert account is not None
        _release_due(session, clock=clock, account=account)
        total = 0
        for lot in session.scalars(select(PointsLot).where(
                PointsLot.account_id == account_id, PointsLot.remaining > 0,
                PointsLot.expires_at.is_not(None), PointsLot.expires_at <= now)):
            pts, lot.remaining = lot.remaining, 0
            _append(session, clock=clock, account=account, kind=PointsEntryKind.EXPIRE,
                    available=0 if lot.is_pending else -pts,
                    pending=-pts if lot.is_pending else 0, lot_id=lot.id, reason="expired")
            total += pts
        if total:
            emit(session, clock=clock, type="points.expired", subject_id=account.member_id,
                 payload={"member_id": str(account.member_id), "points": total})
            counts["expired_points"] += total
    session.flush()
    return counts


@dataclass(frozen=True)
class PointsBalance:
    available: int
    pending: int
    debt: int
    lifetime_earned: int


def balance(session: Session, *, clock: Clock, member_id: uuid.UUID) -> PointsBalance:
    """Balances as of now: lots past their return window count as available already."""
    account = session.scalar(select(PointsAccount).where(PointsAccount.member_id == member_id))
    if account is None:
        return PointsBalance(0, 0, 0, 0)
    matured = session.scalar(select(func.coalesce(func.sum(PointsLot.remaining), 0)).where(
        PointsLot.account_id == account.id, PointsLot.is_pending.is_(True),
        PointsLot.available_at <= clock.now())) or 0
    return PointsBalance(account.available + int(matured), account.pending - int(matured),
                         account.debt, account.lifetime_earned)


@dataclass(frozen=True)
class Expiring:
    points: int
    expires_at: datetime


def expiring_soon(session: Session, *, clock: Clock, member_id: uuid.UUID,
                  within: timedelta | None = None) -> list[Expiring]:
    """Points that will expire within ``within`` (the programme's notice period unless
    given), grouped by expiry instant, soonest first: what the member page warns about."""
    account = session.scalar(select(PointsAccount).where(PointsAccount.member_id == member_id))
    if account is None:
        return []
    now = clock.now()
    if within is None:
        within = timedelta(days=get_program(session, clock=clock).expiring_notice_days)
    rows = session.execute(
        select(PointsLot.expires_at, func.sum(PointsLot.remaining))
        .where(PointsLot.account_id == account.id, PointsLot.remaining > 0,
               PointsLot.expires_at.is_not(None), PointsLot.expires_at > now,
               PointsLot.expires_at <= now + within)
        .group_by(PointsLot.expires_at).order_by(PointsLot.expires_at))
    return [Expiring(int(points), at) for at, points in rows if at is not None and points]


def entries(session: Session, *, member_id: uuid.UUID, limit: int = 50) -> list[PointsEntry]:
    return list(session.scalars(
        select(PointsEntry).join(PointsAccount, PointsAccount.id == PointsEntry.account_id)
        .where(PointsAccount.member_id == member_id)
        .order_by(PointsEntry.seq.desc()).limit(limit)))


def verify(session: Session) -> list[str]:
    """Cached balances equal their ledger's sums and their lots' remaining points."""
    sums = (select(PointsEntry.account_id, func.sum(PointsEntry.available_delta).label("a"),
                   func.sum(PointsEntry.pending_delta).label("p"),
                   func.sum(PointsEntry.debt_delta).label("d"))
            .group_by(PointsEntry.account_id).subquery())
    lots = (select(PointsLot.account_id,
                   func.sum(PointsLot.remaining).filter(PointsLot.is_pending.is_(False))
                   .label("a"),
                   func.sum(PointsLot.remaining).filter(PointsLot.is_pending.is_(True))
                   .label("p"))
            .group_by(PointsLot.account_id).subquery())
    rows = session.execute(select(
        PointsAccount.id, PointsAccount.available, PointsAccount.pending, PointsAccount.debt,
        func.coalesce(sums.c.a, 0), func.coalesce(sums.c.p, 0), func.coalesce(sums.c.d, 0),
        func.coalesce(lots.c.a, 0), func.coalesce(lots.c.p, 0))
        .outerjoin(sums, sums.c.account_id == PointsAccount.id)
        .outerjoin(lots, lots.c.account_id == PointsAccount.id))
    problems = []
    for acc, a, p, d, sa, sp, sd, la, lp in rows:
        if (a, p, d) != (int(sa), int(sp), int(sd)):
            problems.append(f"points {acc}: balances {a}/{p}/{d} but ledger sums to "
                            f"{sa}/{sp}/{sd}")
        if (a, p) != (int(la), int(lp)):
            problems.append(f"points {acc}: balances {a}/{p} but lots hold {la}/{lp}")
    return problems


# ---------------------------------------------------------------- tiers


TIER_CODE = re.compile(rules.CODE_PATTERN)


def list_tiers(session: Session) -> list[Tier]:
    """Active tiers by rank (memoised per transaction)."""
    return memo(session, "loyalty.tiers", lambda: list(session.scalars(
        select(Tier).where(Tier.active.is_(True)).order_by(Tier.rank))))


def create_tier(session: Session, *, clock: Clock, actor: Principal, code: str, name: str,
                rank: int, threshold: int, points_multiplier_pct: int = 100,
                discount_pct: int = 0) -> Tier:
    require_role(actor, Role.OWNER, users_only=True)
    if not TIER_CODE.fullmatch(code):  # codes go into promotions and URLs as they are
        raise ValidationFailed("Use 1-32 lower-case letters, digits, - and _", "code",
                               code="invalid_code")
    if session.scalar(select(Tier.id).where(Tier.code == code)) is not None:
        raise ValidationFailed(f"Tier code {code!r} exists", "code", code="duplicate")
    if session.scalar(select(Tier.id).where(Tier.rank == rank)) is not None:
        raise ValidationFailed(f"Another tier has rank {rank}", "rank", code="duplicate")
    if threshold < 0:
        raise ValidationFailed("Threshold cannot be negative", "threshold")
    if not 0 <= discount_pct <= 100:
        raise ValidationFailed("discount_pct is between 0 and 100", "discount_pct")
    check_tier_ladder(session, rank=rank, threshold=threshold)
    tier = Tier(code=code, name=name, rank=rank, threshold=threshold,
                points_multiplier_pct=points_multiplier_pct, discount_pct=discount_pct)
    session.add(tier)
    session.flush()
    forget(session, "loyalty.tiers")
    audit.record(session, clock=clock, actor=actor, action="tier.created", entity_type="tier",
                 entity_id=tier.id, details={"code": code, "threshold": threshold})
    return tier


def member_tier(session: Session, *, member_id: uuid.UUID) -> Tier | None:
    row = session.get(MemberTier, member_id)
    return session.get(Tier, row.tier_id) if row else None


def qualifying_value(session: Session, *, clock: Clock, member_id: uuid.UUID,
                     basis: TierBasis) -> int:
    """Rolling 12 months of spend (net of refunds) or of points earned; never the balance."""
    since = rules.add_months(clock.now(), -12)
    if basis is TierBasis.POINTS:
        # earned = credited + settled debt - clawed back - new debt
        signed = case(
            (PointsEntry.kind.in_([PointsEntryKind.EARN.value, PointsEntryKind.CLAWBACK.value]),
             PointsEntry.available_delta + PointsEntry.pending_delta),
            (PointsEntry.kind.in_([PointsEntryKind.DEBT_SETTLE.value,
                                   PointsEntryKind.DEBT.value]), -PointsEntry.debt_delta),
            else_=0)
        earned = session.scalar(
            select(func.coalesce(func.sum(signed), 0))
            .join(PointsAccount, PointsAccount.id == PointsEntry.account_id)
            .where(PointsAccount.member_id == member_id, PointsEntry.occurred_at >= since))
        return int(earned or 0)
    from patron.sales import queries as sales  # spend is read from the sales history

    return sales.member_net_spend(session, member_id=member_id, since=since)


def evaluate_tier(session: Session, *, clock: Clock, member_id: uuid.UUID,
                  allow_downgrade: bool = False) -> Tier | None:
    """Upgrade at once when the member qualifies for more; downgrade only when asked (the
    end-of-period job) and only after the tier's holding period plus grace has passed."""
    program = get_program(session, clock=clock)
    tiers = list_tiers(session)
    if not tiers:
        return None
    # One evaluation per member at a time: two tills upgrading the same member would both
    # insert the member's first tier row. The points account lock orders them.
    _account(session, clock=clock, member_id=member_id)
    value = qualifying_value(session, clock=clock, member_id=member_id,
                             basis=TierBasis(program.tier_basis))
    target = rules.qualifying_tier(value, [rules.TierRule(t.id, t.rank, t.threshold)
                                           for t in tiers])
    by_id = {t.id: t for t in tiers}
    current = session.get(MemberTier, member_id)
    now = clock.now()
    current_tier = by_id.get(current.tier_id) if current else None
    if target is None:
        return current_tier
    new_tier = by_id[target.id]
    if current_tier is not None and new_tier.rank == current_tier.rank:
        return current_tier
    downgrade = current_tier is not None and new_tier.rank < current_tier.rank
    still_held = current is not None and (current.source == "paid" or bool(
        current.held_until and current.held_until > now.date()))
    if downgrade and (not allow_downgrade or still_held):
        return current_tier
    held = rules.held_until(now, grace_days=program.downgrade_grace_days).date()
    if current is None:
        session.add(MemberTier(member_id=member_id, tier_id=new_tier.id, since=now,
                               held_until=held, source="earned"))
    else:
        current.tier_id, current.since, current.held_until = new_tier.id, now, held
        current.source = "earned"
    session.add(TierChange(member_id=member_id,
                           from_tier_id=current_tier.id if current_tier else None,
                           to_tier_id=new_tier.id, reason="qualified" if current_tier is None
                           or new_tier.rank > current_tier.rank else "downgraded",
                           qualifying_value=value, at=now))
    session.flush()
    emit(session, clock=clock, type="tier.changed", subject_id=member_id,
         payload={"member_id": str(member_id), "from": current_tier.code if current_tier
                  else None, "to": new_tier.code, "qualifying_value": value})
    return new_tier


def review_tiers(session: Session, *, clock: Clock, limit: int = 10_000) -> int:
    """The end-of-period job: members whose tier is no longer held are re-qualified, which
    may downgrade them. Returns how many were looked at."""
    due = list(session.scalars(select(MemberTier.member_id).where(
        MemberTier.source != "paid", MemberTier.held_until <= clock.now().date())
        .limit(limit)))
    for member_id in due:
        evaluate_tier(session, clock=clock, member_id=member_id, allow_downgrade=True)
        row = session.get(MemberTier, member_id)
        if row is not None and row.held_until is not None and \
                row.held_until <= clock.now().date():
            # kept the same tier by qualifying again: hold it for another period
            row.held_until = rules.held_until(clock.now(), grace_days=0).date()
    return len(due)


def tier_progress(session: Session, *, clock: Clock,
                  member_id: uuid.UUID) -> tuple[Tier | None, Tier | None, int]:
    """(current tier, next tier, qualifying value so far) for receipts and the member page."""
    program = get_program(session, clock=clock)
    current = member_tier(session, member_id=member_id)
    value = qualifying_value(session, clock=clock, member_id=member_id,
                             basis=TierBasis(program.tier_basis))
    higher = [t for t in list_tiers(session) if current is None or t.rank > current.rank]
    return current, (higher[0] if higher else None), value


def get_tier(session: Session, *, tier_id: uuid.UUID) -> Tier:
    tier = session.get(Tier, tier_id)
    if tier is None:
        raise NotFound("No such tier", "tier_id")
    return tier


def rounding(program: LoyaltyProgram) -> Rounding:
    return Rounding(program.rounding)


# ---------------------------------------------------------------- merge


def _merge_points(session: Session, clock: Clock, survivor_id: uuid.UUID,
                  duplicate_id: uuid.UUID) -> int:
    """Move the duplicate's lots (with their expiry) and balances to the survivor."""
    theirs = _locked(session, duplicate_id)
    if theirs is None:
        return 0
    ours = _account(session, clock=clock, member_id=survivor_id)
    moved = 0
    for lot in session.scalars(select(PointsLot).where(PointsLot.account_id == theirs.id,
                                                       PointsLot.remaining > 0)):
        lot.account_id = ours.id
        moved += 1
    a, p, d = theirs.available, theirs.pending, theirs.debt
    _append(session, clock=clock, account=theirs, kind=PointsEntryKind.MERGE_OUT,
            available=-a, pending=-p, debt=-d, reason=f"merged into {survivor_id}")
    _append(session, clock=clock, account=ours, kind=PointsEntryKind.MERGE_IN, available=a,
            pending=p, debt=d, reason=f"merged from {duplicate_id}")
    ours.lifetime_earned += theirs.lifetime_earned
    session.flush()
    return moved + 1


def _merge_tiers(session: Session, clock: Clock, survivor_id: uuid.UUID,
                 duplicate_id: uuid.UUID) -> int:
    """Keep the higher of the two tiers on the survivor."""
    theirs = session.get(MemberTier, duplicate_id)
    if theirs is None:
        return 0
    ours = session.get(MemberTier, survivor_id)
    their_tier = session.get(Tier, theirs.tier_id)
    our_tier = session.get(Tier, ours.tier_id) if ours else None
    better = their_tier is not None and (our_tier is None or their_tier.rank > our_tier.rank)
    if better and ours is None:
        session.add(MemberTier(member_id=survivor_id, tier_id=theirs.tier_id,
                               since=theirs.since, held_until=theirs.held_until,
                               source=theirs.source))
    elif better and ours is not None:
        ours.tier_id, ours.held_until, ours.source = (theirs.tier_id, theirs.held_until,
                                                      theirs.source)
    session.delete(theirs)
    session.flush()
    return 1


members.MERGE_HOOKS["points_accounts"] = _merge_points
members.MERGE_HOOKS["member_tiers"] = _merge_tiers


# ---------------------------------------------------------------- tier settings (admin pages)
# Added for the web admin's programme settings: a tier ladder must rise, and a tier's
# terms may change after it was created (its code and rank stay: members and promotions
# refer to them).


def check_tier_ladder(session: Session, *, rank: int, threshold: int,
                      tier_id: uuid.UUID | None = None) -> None:
    """Refuse a threshold out of order: a higher rank needs a higher threshold than every
    lower rank, and a lower rank a lower one (else members would skip or fall through)."""
    for other in session.scalars(select(Tier).where(Tier.active.is_(True))):
        if other.id == tier_id:
            continue
        if other.rank < rank and other.threshold >= threshold:
            raise ValidationFailed("The threshold must be above every lower tier's",
                                   "threshold", code="tier_order")
        if other.rank > rank and other.threshold <= threshold:
            raise ValidationFailed("The threshold must be below every higher tier's",
                                   "threshold", code="tier_order")


def update_tier(session: Session, *, clock: Clock, actor: Principal, tier_id: uuid.UUID,
                name: str, threshold: int, points_multiplier_pct: int,
                discount_pct: int) -> Tier:
    """An owner's change of a tier's name and terms; members move at the next review."""
    require_role(actor, Role.OWNER, users_only=True)
    tier = get_tier(session, tier_id=tier_id)
    if not name.strip():
        raise ValidationFailed("Name is required", "name", code="required")
    if threshold < 0:
        raise ValidationFailed("Threshold cannot be negative", "threshold")
    if not 0 <= discount_pct <= 100:
        raise ValidationFailed("discount_pct is between 0 and 100", "discount_pct")
    if not 0 <= points_multiplier_pct <= 10_000:
        raise ValidationFailed("points_multiplier_pct is between 0 and 10000",
                               "points_multiplier_pct")
    check_tier_ladder(session, rank=tier.rank, threshold=threshold, tier_id=tier.id)
    before = {"name": tier.name, "threshold": tier.threshold,
              "points_multiplier_pct": tier.points_multiplier_pct,
              "discount_pct": tier.discount_pct}
    after = {"name": name.strip(), "threshold": threshold,
             "points_multiplier_pct": points_multiplier_pct, "discount_pct": discount_pct}
    changed = {k: v for k, v in after.items() if before[k] != v}
    if not changed:
        return tier
    for key, value in changed.items():
        setattr(tier, key, value)
    session.flush()
    forget(session, "loyalty.tiers")
    audit.record(session, clock=clock, actor=actor, action="tier.updated", entity_type="tier",
                 entity_id=tier.id, details={k: [before[k], v] for k, v in changed.items()})
    return tier


def list_multipliers(session: Session) -> list[PointsMultiplier]:
    """Every earning multiplier, running ones first (for the settings page)."""
    return list(session.scalars(select(PointsMultiplier).order_by(
        PointsMultiplier.active.desc(), PointsMultiplier.name, PointsMultiplier.id)))


def set_multiplier_active(session: Session, *, clock: Clock, actor: Principal,
                          multiplier_id: uuid.UUID, active: bool) -> PointsMultiplier:
    """A manager starts or stops a multiplier (never deleted: past earnings name it)."""
    require_role(actor, Role.MANAGER, users_only=True)
    multiplier = session.get(PointsMultiplier, multiplier_id)
    if multiplier is None:
        raise NotFound("No such multiplier", "multiplier_id")
    if multiplier.active != active:
        multiplier.active = active
        session.flush()
        forget(session, "loyalty.multipliers")
        audit.record(session, clock=clock, actor=actor,
                     action="loyalty.multiplier_started" if active
                     else "loyalty.multiplier_stopped",
                     entity_type="points_multiplier", entity_id=multiplier.id, details={})
    return multiplier
