"""Use cases of the wallet: top up, spend, refund, adjust, read, verify.

Every movement follows lock -> check -> append entry -> update cached balance, inside the
caller's transaction. On PostgreSQL the account row is locked with ``SELECT ... FOR
UPDATE``; on SQLite the caller's write transaction (``BEGIN IMMEDIATE``) already holds
the database's write lock. The CHECK constraints on the account and entries stand behind
both: a bug can fail a request, never overdraw a balance.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Select, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from patron.auth import audit
from patron.auth.enums import Role
from patron.auth.principal import Principal, require_role, require_store
from patron.core.clock import Clock
from patron.core.errors import InsufficientBalance, NotFound, ValidationFailed
from patron.core.events import emit
from patron.core.ids import new_id
from patron.members import service as members
from patron.members.enums import MemberStatus
from patron.wallet import rules
from patron.wallet.enums import EntryKind, SpendOrder
from patron.wallet.models import BonusRule, WalletAccount, WalletEntry

MAX_AMOUNT_MINOR = 100_000_000  # one movement; a typo of three zeros is refused, not booked


def for_update(stmt: Select[WalletAccount]) -> Select[WalletAccount]:
    """Row lock on PostgreSQL (ignored by SQLite, whose write transaction locks the file).

    A module-level function so the concurrency tests can take the lock away and show
    that they then catch the lost update.
    """
    # populate_existing: the row as locked, even if this session read it before
    # (an object in the identity map keeps its old values otherwise, and a write based
    # on them loses whatever committed between the read and the lock)
    return stmt.with_for_update().execution_options(populate_existing=True)


def _check_amount(amount_minor: int, field: str = "amount_minor") -> None:
    if amount_minor <= 0:
        raise ValidationFailed("Amount must be a positive number of minor units", field)
    if amount_minor > MAX_AMOUNT_MINOR:
        raise ValidationFailed(f"Amount must be at most {MAX_AMOUNT_MINOR} minor units", field)


def _locked_account(session: Session, *, member_id: uuid.UUID) -> WalletAccount | None:
    return session.scalar(for_update(
        select(WalletAccount).where(WalletAccount.member_id == member_id)
    ).execution_options(populate_existing=True))


def _open_account(session: Session, *, clock: Clock, member_id: uuid.UUID) -> WalletAccount:
    account = _locked_account(session, member_id=member_id)
    if account is not None:
        return account
    now = clock.now()
    try:  # two first top-ups racing to open the account: the loser locks the winner's
        with session.begin_nested():
            session.add(WalletAccount(member_id=member_id, principal_minor=0, bonus_minor=0,
                                      created_at=now, updated_at=now))
    except IntegrityError:
        pass
    account = _locked_account(session, member_id=member_id)
    assert account is not None
    return account


def _live_member(session: Session, member_id: uuid.UUID) -> None:
    member = members.get_member(session, member_id=member_id)
    if member.status != MemberStatus.ACTIVE.value:
        raise ValidationFailed("The member is not active", "member_id", code="not_active")


def _append(session: Session, *, clock: Clock, account: WalletAccount, kind: EntryKind,
            principal_delta: int, bonus_delta: int, actor: Principal | None,
            store_id: uuid.UUID | None, sale_id: uuid.UUID | None = None,
            reverses_id: uuid.UUID | None = None, reason: str = "") -> WalletEntry:
    principal_after = account.principal_minor + principal_delta
    bonus_after = account.bonus_minor + bonus_delta
    if principal_after < 0 or bonus_after < 0:
        raise InsufficientBalance("Not enough stored value", "amount_minor")
    entry = WalletEntry(
        id=new_id(), account_id=account.id, kind=kind.value,
        principal_delta_minor=principal_delta, bonus_delta_minor=bonus_delta,
        principal_after_minor=principal_after, bonus_after_minor=bonus_after,
        store_id=store_id, sale_id=sale_id, reverses_id=reverses_id,
        actor_label=actor.label if actor else "system", reason=reason, occurred_at=clock.now(),
    )
    account.principal_minor, account.bonus_minor = principal_after, bonus_after
    account.updated_at = entry.occurred_at
    session.add(entry)
    session.flush()
    return entry


def _store_for(actor: Principal | None, store_id: uuid.UUID | None) -> uuid.UUID | None:
    if actor is None:
        return store_id
    if store_id is None:
        return actor.default_store_id
    require_store(actor, store_id)
    return store_id


def create_bonus_rule(session: Session, *, clock: Clock, actor: Principal, name: str,
                      min_topup_minor: int, bonus_minor: int,
                      valid_from: datetime | None = None,
                      valid_until: datetime | None = None) -> BonusRule:
    """An owner's "top up X get Y" rule; the best matching rule applies, rules don't stack."""
    require_role(actor, Role.OWNER, users_only=True)
    _check_amount(min_topup_minor, "min_topup_minor")
    if bonus_minor < 0 or bonus_minor > min_topup_minor:
        raise ValidationFailed("Bonus must be between 0 and the top-up amount", "bonus_minor")
    if valid_from and valid_until and valid_until <= valid_from:
        raise ValidationFailed("The rule must end after it starts", "valid_until")
    rule = BonusRule(name=name, min_topup_minor=min_topup_minor, bonus_minor=bonus_minor,
                     valid_from=valid_from, valid_until=valid_until, active=True)
    session.add(rule)
    session.flush()
    audit.record(session, clock=clock, actor=actor, action="wallet.bonus_rule_created",
                 entity_type="wallet_bonus_rule", entity_id=rule.id,
                 details={"min_topup_minor": min_topup_minor, "bonus_minor": bonus_minor})
    return rule


def list_bonus_rules(session: Session) -> list[BonusRule]:
    return list(session.scalars(select(BonusRule).order_by(BonusRule.min_topup_minor)))


def active_bonus_tiers(session: Session) -> list[rules.BonusTier]:
    return [rules.BonusTier(r.min_topup_minor, r.bonus_minor, r.valid_from, r.valid_until)
            for r in session.scalars(select(BonusRule).where(BonusRule.active.is_(True)))]


def top_up(session: Session, *, clock: Clock, actor: Principal | None, member_id: uuid.UUID,
           amount_minor: int, store_id: uuid.UUID | None = None, reason: str = "") -> WalletEntry:
    """Add paid-in money, plus the bonus of the best matching rule, in one entry."""
    _check_amount(amount_minor)
    store = _store_for(actor, store_id)
    _live_member(session, member_id)
    bonus = rules.bonus_for(amount_minor, active_bonus_tiers(session), clock.now())
    account = _open_account(session, clock=clock, member_id=member_id)
    entry = _append(session, clock=clock, account=account, kind=EntryKind.TOPUP,
                    principal_delta=amount_minor, bonus_delta=bonus, actor=actor,
                    store_id=store, reason=reason)
    emit(session, clock=clock, type="wallet.topped_up", subject_id=member_id, store_id=store,
         payload={"member_id": str(member_id), "amount_minor": amount_minor,
                  "bonus_minor": bonus, "balance_minor": account.balance_minor})
    return entry


def spend(session: Session, *, clock: Clock, actor: Principal | None, member_id: uuid.UUID,
          amount_minor: int, order: SpendOrder, store_id: uuid.UUID | None = None,
          sale_id: uuid.UUID | None = None, reason: str = "") -> WalletEntry:
    """Pay from the wallet; refuses (422) rather than overdraw."""
    _check_amount(amount_minor)
    store = _store_for(actor, store_id)
    account = _locked_account(session, member_id=member_id)
    if account is None or account.balance_minor < amount_minor:
        have = account.balance_minor if account else 0
        raise InsufficientBalance(
            f"Stored value is {have}, less than {amount_minor}", "amount_minor")
    from_principal, from_bonus = rules.split_spend(
        amount_minor, account.principal_minor, account.bonus_minor, order)
    return _append(session, clock=clock, account=account, kind=EntryKind.SPEND,
                   principal_delta=-from_principal, bonus_delta=-from_bonus, actor=actor,
                   store_id=store, sale_id=sale_id, reason=reason)


def refund_spend(session: Session, *, clock: Clock, actor: Principal | None,
                 entry_id: uuid.UUID, amount_minor: int, reason: str = "") -> WalletEntry:
    """Give back (part of) a spend, to the same parts it came from, principal first."""
    _check_amount(amount_minor)
    original = session.scalar(select(WalletEntry).where(WalletEntry.id == entry_id))
    if original is None or original.kind != EntryKind.SPEND.value:
        raise NotFound("No such wallet spend", "entry_id")
    account = session.scalar(for_update(select(WalletAccount).where(
        WalletAccount.id == original.account_id)).execution_options(populate_existing=True))
    assert account is not None
    refunded = session.scalar(select(
        func.coalesce(func.sum(WalletEntry.principal_delta_minor), 0),
    ).where(WalletEntry.reverses_id == original.id)) or 0
    refunded_bonus = session.scalar(select(
        func.coalesce(func.sum(WalletEntry.bonus_delta_minor), 0),
    ).where(WalletEntry.reverses_id == original.id)) or 0
    left_principal = -original.principal_delta_minor - int(refunded)
    left_bonus = -original.bonus_delta_minor - int(refunded_bonus)
    if amount_minor > left_principal + left_bonus:
        raise ValidationFailed(
            f"At most {left_principal + left_bonus} of this spend can still be refunded",
            "amount_minor", code="refund_exceeds_spend")
    back_principal = min(amount_minor, left_principal)
    return _append(session, clock=clock, account=account, kind=EntryKind.SPEND_REFUND,
                   principal_delta=back_principal, bonus_delta=amount_minor - back_principal,
                   actor=actor, store_id=original.store_id, sale_id=original.sale_id,
                   reverses_id=original.id, reason=reason)


def credit_cashback(session: Session, *, clock: Clock, member_id: uuid.UUID,
                    amount_minor: int, sale_id: uuid.UUID, store_id: uuid.UUID | None,
                    reason: str = "") -> WalletEntry:
    """Credit a promotion's cashback for a sale, as bonus.

    Cashback is the shop's money, not the customer's: like a top-up bonus it is spent but
    never cashed out (``cash_out`` returns principal only), and a refund of the sale takes
    it back (``reclaim_cashback``). The entry points at the sale.
    """
    _check_amount(amount_minor)
    account = _open_account(session, clock=clock, member_id=member_id)
    return _append(session, clock=clock, account=account, kind=EntryKind.CASHBACK,
                   principal_delta=0, bonus_delta=amount_minor, actor=None,
                   store_id=store_id, sale_id=sale_id, reason=reason)


@dataclass(frozen=True)
class Reclaimed:
    """What a refund took back of a sale's cashback, and what the wallet no longer held."""

    taken_minor: int
    unrecovered_minor: int


def reclaim_cashback(session: Session, *, clock: Clock, actor: Principal | None,
                     member_id: uuid.UUID, sale_id: uuid.UUID, amount_minor: int,
                     reason: str = "") -> Reclaimed:
    """Take back up to ``amount_minor`` of the cashback credited for ``sale_id``.

    From the member's wallet as it is now (a merge may have moved the balance), bonus
    first, then principal, never below zero: cashback already spent cannot be taken back
    and is reported as unrecovered (the caller records it; a wallet has no debt). Never
    more than was credited for the sale, less what was already taken back.
    """
    _check_amount(amount_minor)
    credits = list(session.scalars(select(WalletEntry).where(
        WalletEntry.sale_id == sale_id, WalletEntry.kind == EntryKind.CASHBACK.value)))
    account = _locked_account(session, member_id=member_id)
    if not credits or account is None:
        return Reclaimed(0, amount_minor)
    credited = sum(e.bonus_delta_minor for e in credits)
    taken_before = -int(session.scalar(select(
        func.coalesce(func.sum(WalletEntry.principal_delta_minor
                               + WalletEntry.bonus_delta_minor), 0))
        .where(WalletEntry.sale_id == sale_id,
               WalletEntry.kind == EntryKind.CASHBACK_REVERSAL.value)) or 0)
    wanted = min(amount_minor, max(0, credited - taken_before))
    from_bonus = min(wanted, account.bonus_minor)
    from_principal = min(wanted - from_bonus, account.principal_minor)
    taken = from_bonus + from_principal
    if taken:
        _append(session, clock=clock, account=account, kind=EntryKind.CASHBACK_REVERSAL,
                principal_delta=-from_principal, bonus_delta=-from_bonus, actor=actor,
                store_id=credits[0].store_id, sale_id=sale_id, reverses_id=credits[0].id,
                reason=reason)
    return Reclaimed(taken, amount_minor - taken)


def cash_out(session: Session, *, clock: Clock, actor: Principal, member_id: uuid.UUID,
             amount_minor: int, store_id: uuid.UUID | None = None,
             reason: str = "") -> WalletEntry:
    """Return paid-in money to the customer. Only principal is returned; when the whole
    principal goes, the bonus that came with it is forfeited in the same entry."""
    require_role(actor, Role.MANAGER, users_only=True)
    _check_amount(amount_minor)
    store = _store_for(actor, store_id)
    account = _locked_account(session, member_id=member_id)
    if account is None or account.principal_minor < amount_minor:
        raise InsufficientBalance("Only paid-in principal can be returned", "amount_minor")
    forfeit = account.bonus_minor if amount_minor == account.principal_minor else 0
    entry = _append(session, clock=clock, account=account, kind=EntryKind.TOPUP_REFUND,
                    principal_delta=-amount_minor, bonus_delta=-forfeit, actor=actor,
                    store_id=store, reason=reason)
    audit.record(session, clock=clock, actor=actor, action="wallet.cashed_out",
                 entity_type="member", entity_id=member_id, store_id=store,
                 details={"amount_minor": amount_minor, "bonus_forfeited_minor": forfeit})
    return entry


def adjust(session: Session, *, clock: Clock, actor: Principal, member_id: uuid.UUID,
           principal_delta_minor: int, bonus_delta_minor: int, reason: str) -> WalletEntry:
    """A manager's correction, with a reason; audited. Cannot take a balance below zero."""
    require_role(actor, Role.MANAGER, users_only=True)
    if not reason.strip():
        raise ValidationFailed("An adjustment needs a reason", "reason", code="required")
    if principal_delta_minor == 0 and bonus_delta_minor == 0:
        raise ValidationFailed("Nothing to adjust", "principal_delta_minor")
    for name, value in (("principal_delta_minor", principal_delta_minor),
                        ("bonus_delta_minor", bonus_delta_minor)):
        if abs(value) > MAX_AMOUNT_MINOR:
            raise ValidationFailed(f"At most {MAX_AMOUNT_MINOR} minor units", name)
    _live_member(session, member_id)
    account = _open_account(session, clock=clock, member_id=member_id)
    entry = _append(session, clock=clock, account=account, kind=EntryKind.ADJUST,
                    principal_delta=principal_delta_minor, bonus_delta=bonus_delta_minor,
                    actor=actor, store_id=actor.default_store_id, reason=reason.strip())
    audit.record(session, clock=clock, actor=actor, action="wallet.adjusted",
                 entity_type="member", entity_id=member_id,
                 details={"principal_delta_minor": principal_delta_minor,
                          "bonus_delta_minor": bonus_delta_minor, "reason": reason.strip(),
                          "entry_id": str(entry.id)})
    return entry


@dataclass(frozen=True)
class Balance:
    principal_minor: int
    bonus_minor: int

    @property
    def total_minor(self) -> int:
        return self.principal_minor + self.bonus_minor


def balance(session: Session, *, member_id: uuid.UUID) -> Balance:
    account = session.scalar(select(WalletAccount).where(WalletAccount.member_id == member_id))
    if account is None:
        return Balance(0, 0)
    return Balance(account.principal_minor, account.bonus_minor)


def entries(session: Session, *, member_id: uuid.UUID, limit: int = 50) -> list[WalletEntry]:
    stmt = (select(WalletEntry).join(WalletAccount, WalletAccount.id == WalletEntry.account_id)
            .where(WalletAccount.member_id == member_id)
            .order_by(WalletEntry.seq.desc()).limit(limit))
    return list(session.scalars(stmt))


def verify(session: Session) -> list[str]:
    """Problems in the books: cached balances that differ from their ledger's sum."""
    sums = (select(WalletEntry.account_id,
                   func.sum(WalletEntry.principal_delta_minor).label("p"),
                   func.sum(WalletEntry.bonus_delta_minor).label("b"))
            .group_by(WalletEntry.account_id).subquery())
    rows = session.execute(
        select(WalletAccount.id, WalletAccount.principal_minor, WalletAccount.bonus_minor,
               func.coalesce(sums.c.p, 0), func.coalesce(sums.c.b, 0))
        .outerjoin(sums, sums.c.account_id == WalletAccount.id))
    problems = []
    for account_id, p, b, sp, sb in rows:
        if (p, b) != (int(sp), int(sb)):
            problems.append(f"wallet {account_id}: balance {p}+{b} but ledger sums to {sp}+{sb}")
        if p < 0 or b < 0:
            problems.append(f"wallet {account_id}: negative balance {p}+{b}")
    return problems


def _merge_wallets(session: Session, clock: Clock, survivor_id: uuid.UUID,
                   duplicate_id: uuid.UUID) -> int:
    """Fold the duplicate's wallet into the survivor's with a pair of entries."""
    theirs = _locked_account(session, member_id=duplicate_id)
    if theirs is None or theirs.balance_minor == 0:
        return 0
    ours = _open_account(session, clock=clock, member_id=survivor_id)
    p, b = theirs.principal_minor, theirs.bonus_minor
    _append(session, clock=clock, account=theirs, kind=EntryKind.MERGE_OUT, principal_delta=-p,
            bonus_delta=-b, actor=None, store_id=None, reason=f"merged into {survivor_id}")
    _append(session, clock=clock, account=ours, kind=EntryKind.MERGE_IN, principal_delta=p,
            bonus_delta=b, actor=None, store_id=None, reason=f"merged from {duplicate_id}")
    return 1


members.MERGE_HOOKS["wallet_accounts"] = _merge_wallets


# ---------------------------------------------------------------- bonus rule settings (admin)
# Added for the web admin: a rule is switched off, never deleted (past top-ups name it).


def set_bonus_rule_active(session: Session, *, clock: Clock, actor: Principal,
                          rule_id: uuid.UUID, active: bool) -> BonusRule:
    """An owner switches a top-up bonus rule on or off; audited."""
    require_role(actor, Role.OWNER, users_only=True)
    rule = session.get(BonusRule, rule_id)
    if rule is None:
        raise NotFound("No such bonus rule", "rule_id")
    if rule.active != active:
        rule.active = active
        session.flush()
        audit.record(session, clock=clock, actor=actor,
                     action="wallet.bonus_rule_activated" if active
                     else "wallet.bonus_rule_deactivated",
                     entity_type="wallet_bonus_rule", entity_id=rule.id, details={})
    return rule
