from __future__ import annotations

import pytest
from sqlalchemy.orm import Session

from patron.auth import service as auth
from patron.core.clock import FixedClock
from patron.core.errors import InsufficientBalance, PermissionDenied, ValidationFailed
from patron.members import service as members
from patron.wallet import rules
from patron.wallet import service as wallet
from patron.wallet.enums import EntryKind, SpendOrder
from tests.factories import World, make_member


def test_top_up_earns_the_best_bonus_rule_once(
    session: Session, clock: FixedClock, world: World
) -> None:
    owner = auth.principal_for_user(world.owner)
    wallet.create_bonus_rule(session, clock=clock, actor=owner, name="500+50",
                             min_topup_minor=50_000, bonus_minor=5_000)
    wallet.create_bonus_rule(session, clock=clock, actor=owner, name="1000+100",
                             min_topup_minor=100_000, bonus_minor=10_000)
    m = make_member(session, clock, world.store_a)
    e = wallet.top_up(session, clock=clock, actor=owner, member_id=m.id, amount_minor=120_000)
    assert (e.principal_delta_minor, e.bonus_delta_minor) == (120_000, 10_000)
    e = wallet.top_up(session, clock=clock, actor=owner, member_id=m.id, amount_minor=1_000)
    assert e.bonus_delta_minor == 0
    assert wallet.balance(session, member_id=m.id).total_minor == 131_000


@pytest.mark.parametrize(("order", "expected"), [
    (SpendOrder.PRINCIPAL_FIRST, (-900, -100)),
    (SpendOrder.BONUS_FIRST, (-500, -500)),
    (SpendOrder.PROPORTIONAL, (-643, -357)),  # 1000 x 500/1400 = 357.1 from bonus
])
def test_spend_order_is_configurable(
    session: Session, clock: FixedClock, world: World, order: SpendOrder,
    expected: tuple[int, int],
) -> None:
    owner = auth.principal_for_user(world.owner)
    wallet.create_bonus_rule(session, clock=clock, actor=owner, name="x",
                             min_topup_minor=900, bonus_minor=90)
    m = make_member(session, clock, world.store_a)
    wallet.top_up(session, clock=clock, actor=None, member_id=m.id, amount_minor=900)
    wallet.adjust(session, clock=clock, actor=owner, member_id=m.id, principal_delta_minor=0,
                  bonus_delta_minor=410, reason="promo")  # principal 900, bonus 500
    e = wallet.spend(session, clock=clock, actor=None, member_id=m.id, amount_minor=1000,
                     order=order)
    assert (e.principal_delta_minor, e.bonus_delta_minor) == expected


def test_spend_beyond_balance_is_refused_and_books_nothing(
    session: Session, clock: FixedClock, world: World
) -> None:
    m = make_member(session, clock, world.store_a)
    with pytest.raises(InsufficientBalance) as err:
        wallet.spend(session, clock=clock, actor=None, member_id=m.id, amount_minor=1,
                     order=SpendOrder.PRINCIPAL_FIRST)
    assert err.value.field == "amount_minor"
    wallet.top_up(session, clock=clock, actor=None, member_id=m.id, amount_minor=500)
    with pytest.raises(InsufficientBalance):
        wallet.spend(session, clock=clock, actor=None, member_id=m.id, amount_minor=501,
                     order=SpendOrder.PRINCIPAL_FIRST)
    assert len(wallet.entries(session, member_id=m.id)) == 1
    for bad in (0, -5, 10**12):
        with pytest.raises(ValidationFailed) as verr:
            wallet.top_up(session, clock=clock, actor=None, member_id=m.id, amount_minor=bad)
        assert verr.value.field == "amount_minor"


def test_cash_out_returns_principal_only_and_forfeits_bonus_when_emptied(
    session: Session, clock: FixedClock, world: World
) -> None:
    owner = auth.principal_for_user(world.owner)
    wallet.create_bonus_rule(session, clock=clock, actor=owner, name="1000+100",
                             min_topup_minor=100_000, bonus_minor=10_000)
    m = make_member(session, clock, world.store_a)
    wallet.top_up(session, clock=clock, actor=None, member_id=m.id, amount_minor=100_000)
    with pytest.raises(InsufficientBalance):
        wallet.cash_out(session, clock=clock, actor=owner, member_id=m.id, amount_minor=110_000)
    e = wallet.cash_out(session, clock=clock, actor=owner, member_id=m.id, amount_minor=100_000)
    assert (e.principal_delta_minor, e.bonus_delta_minor) == (-100_000, -10_000)
    assert wallet.balance(session, member_id=m.id).total_minor == 0
    with pytest.raises(PermissionDenied):
        wallet.cash_out(session, clock=clock, actor=auth.principal_for_user(world.cashier_a),
                        member_id=m.id, amount_minor=1)


def test_refund_of_a_spend_returns_to_the_same_parts_and_never_more(
    session: Session, clock: FixedClock, world: World
) -> None:
    owner = auth.principal_for_user(world.owner)
    m = make_member(session, clock, world.store_a)
    wallet.top_up(session, clock=clock, actor=None, member_id=m.id, amount_minor=1000)
    spent = wallet.spend(session, clock=clock, actor=None, member_id=m.id, amount_minor=800,
                         order=SpendOrder.PRINCIPAL_FIRST)
    wallet.refund_spend(session, clock=clock, actor=owner, entry_id=spent.id, amount_minor=300)
    with pytest.raises(ValidationFailed) as err:
        wallet.refund_spend(session, clock=clock, actor=owner, entry_id=spent.id,
                            amount_minor=501)
    assert err.value.code == "refund_exceeds_spend"
    r = wallet.refund_spend(session, clock=clock, actor=owner, entry_id=spent.id,
                            amount_minor=500)
    assert r.kind == EntryKind.SPEND_REFUND and r.reverses_id == spent.id
    assert wallet.balance(session, member_id=m.id).total_minor == 1000
    assert wallet.verify(session) == []


def test_adjustment_needs_a_manager_and_a_reason_and_is_audited(
    session: Session, clock: FixedClock, world: World
) -> None:
    from patron.auth import audit

    m = make_member(session, clock, world.store_a)
    manager = auth.principal_for_user(world.manager_a)
    with pytest.raises(ValidationFailed) as err:
        wallet.adjust(session, clock=clock, actor=manager, member_id=m.id,
                      principal_delta_minor=100, bonus_delta_minor=0, reason=" ")
    assert err.value.field == "reason"
    with pytest.raises(PermissionDenied):
        wallet.adjust(session, clock=clock, actor=auth.principal_for_user(world.cashier_a),
                      member_id=m.id, principal_delta_minor=100, bonus_delta_minor=0, reason="x")
    with pytest.raises(InsufficientBalance):
        wallet.adjust(session, clock=clock, actor=manager, member_id=m.id,
                      principal_delta_minor=-1, bonus_delta_minor=0, reason="oops")
    wallet.adjust(session, clock=clock, actor=manager, member_id=m.id, principal_delta_minor=100,
                  bonus_delta_minor=0, reason="till shortfall")
    assert audit.list_entries(session, action="wallet.adjusted")[0].details["reason"] \
        == "till shortfall"


def test_merging_members_folds_their_wallets_into_the_survivor(
    session: Session, clock: FixedClock, world: World
) -> None:
    manager = auth.principal_for_user(world.manager_a)
    a = make_member(session, clock, world.store_a)
    b = make_member(session, clock, world.store_a)
    wallet.top_up(session, clock=clock, actor=None, member_id=a.id, amount_minor=300)
    wallet.top_up(session, clock=clock, actor=None, member_id=b.id, amount_minor=700)
    _, moved = members.merge_members(session, clock=clock, actor=manager, survivor_id=a.id,
                                     duplicate_id=b.id)
    assert moved["wallet_accounts"] == 1
    assert wallet.balance(session, member_id=a.id).total_minor == 1000
    assert wallet.balance(session, member_id=b.id).total_minor == 0
    assert wallet.verify(session) == []


def test_proportional_split_never_exceeds_either_part() -> None:
    for amount in range(1, 60):
        for p in range(0, 30):
            b = 59 - p
            if amount > p + b:
                continue
            fp, fb = rules.split_spend(amount, p, b, SpendOrder.PROPORTIONAL)
            assert fp + fb == amount
            assert 0 <= fp <= p
            assert 0 <= fb <= b
