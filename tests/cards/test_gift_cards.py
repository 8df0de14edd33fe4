"""Gift cards (礼品卡): bearer value redeemed with code + PIN, partly; transfer, void,
expiry; five wrong PINs lock a card for 15 minutes."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from patron.auth import service as auth
from patron.auth.principal import Principal
from patron.cards import rules
from patron.cards import service as cards
from patron.cards.enums import GiftCardEntryKind, GiftCardStatus
from patron.cards.models import GiftCard
from patron.core.clock import FixedClock
from patron.core.errors import (
    Conflict,
    InsufficientBalance,
    NotFound,
    PermissionDenied,
    ValidationFailed,
)
from tests.cards.support import make_sale
from tests.factories import World, make_member


@pytest.fixture
def manager(world: World) -> Principal:
    return auth.principal_for_user(world.manager_a)


@pytest.fixture
def cashier(world: World) -> Principal:
    return auth.principal_for_user(world.cashier_a)


def _issue(session: Session, clock: FixedClock, manager: Principal, value: int = 10_000,
           count: int = 1, **kw: Any) -> list[cards.IssuedCard]:
    _, issued = cards.issue_gift_cards(session, clock=clock, actor=manager, name="Spring",
                                       count=count, face_value_minor=value, **kw)
    return issued


def test_a_batch_is_issued_by_managers_with_codes_and_hashed_pins(
    session: Session, clock: FixedClock, manager: Principal, cashier: Principal
) -> None:
    issued = _issue(session, clock, manager, value=20_000, count=5, valid_days=365)
    assert len({i.card.code for i in issued}) == 5
    for i in issued:
        assert rules.is_well_formed(i.card.code)
        assert i.pin not in i.card.pin_hash and len(i.pin) == rules.PIN_LENGTH
        assert (i.card.balance_minor, i.card.member_id) == (20_000, None)
        assert i.card.expires_at == clock.now() + timedelta(days=365)
    with pytest.raises(PermissionDenied):
        _issue(session, clock, cashier)
    with pytest.raises(ValidationFailed) as err:
        _issue(session, clock, manager, value=0)
    assert err.value.field == "face_value_minor"
    assert cards.verify(session) == []


def test_a_batch_for_an_unknown_store_is_refused_naming_it(
    session: Session, clock: FixedClock, world: World
) -> None:
    """Found by the API fuzz run: the owner (who may act for every store) named a store
    that does not exist, and the database's foreign key answered with a 500."""
    owner = auth.principal_for_user(world.owner)
    before = session.scalars(select(GiftCard)).all()
    with pytest.raises(NotFound) as err:
        _issue(session, clock, owner, store_id=uuid.uuid4())
    assert err.value.field == "store_id"
    assert session.scalars(select(GiftCard)).all() == before


def test_partial_redemptions_until_the_balance_is_spent(
    session: Session, clock: FixedClock, world: World, manager: Principal, cashier: Principal
) -> None:
    (gc,) = _issue(session, clock, manager)
    sale_id = make_sale(session, clock, world.store_a, None)
    display = rules.format_code(gc.card.code).lower()  # as a person types it
    e = cards.redeem_gift_card(session, clock=clock, actor=cashier, code=display, pin=gc.pin,
                               amount_minor=3_000, sale_id=sale_id)
    assert (e.delta_minor, e.balance_after_minor, e.store_id) == (-3_000, 7_000,
                                                                   world.store_a.id)
    with pytest.raises(InsufficientBalance) as err:
        cards.redeem_gift_card(session, clock=clock, actor=cashier, code=gc.card.code,
                               pin=gc.pin, amount_minor=7_001)
    assert err.value.field == "amount_minor"
    cards.redeem_gift_card(session, clock=clock, actor=cashier, code=gc.card.code,
                           pin=gc.pin, amount_minor=7_000, reference="T-9")
    card = cards.gift_card_balance(session, clock=clock, code=gc.card.code, pin=gc.pin)
    assert (card.balance_minor, card.status) == (0, GiftCardStatus.ACTIVE)
    with pytest.raises(NotFound):
        cards.redeem_gift_card(session, clock=clock, actor=cashier, code="NOT-A-CODE",
                               pin=gc.pin, amount_minor=1)
    # the refund of the first sale gives its 3,000 back, never more
    back = cards.refund_gift_card_redemption(session, clock=clock, actor=cashier,
                                             entry_id=e.id, amount_minor=3_000)
    assert back.balance_after_minor == 3_000
    with pytest.raises(ValidationFailed):
        cards.refund_gift_card_redemption(session, clock=clock, actor=cashier,
                                          entry_id=e.id, amount_minor=1)
    assert cards.verify(session) == []


def test_transfer_moves_the_balance_to_a_new_code_and_closes_the_old_one(
    session: Session, clock: FixedClock, manager: Principal, cashier: Principal
) -> None:
    (gc,) = _issue(session, clock, manager)
    used = cards.redeem_gift_card(session, clock=clock, actor=cashier, code=gc.card.code,
                                  pin=gc.pin, amount_minor=2_500)
    moved = cards.transfer_gift_card(session, clock=clock, actor=cashier, code=gc.card.code,
                                     pin=gc.pin)
    assert moved.new_card is not None
    new = moved.new_card
    assert (gc.card.status, gc.card.balance_minor) == (GiftCardStatus.CLOSED, 0)
    assert (new.card.balance_minor, new.card.transferred_from_id) == (7_500, gc.card.id)
    assert new.card.code != gc.card.code and new.pin != gc.pin
    with pytest.raises(ValidationFailed) as err:
        cards.redeem_gift_card(session, clock=clock, actor=cashier, code=gc.card.code,
                               pin=gc.pin, amount_minor=1)
    assert (err.value.field, err.value.code) == ("code", "gift_card_closed")
    cards.redeem_gift_card(session, clock=clock, actor=cashier, code=new.card.code,
                           pin=new.pin, amount_minor=500)
    # a refund of a redemption made before the transfer goes to the card holding the value
    back = cards.refund_gift_card_redemption(session, clock=clock, actor=cashier,
                                             entry_id=used.id, amount_minor=2_500)
    assert (back.card_id, back.counterpart_card_id) == (new.card.id, gc.card.id)
    assert new.card.balance_minor == 9_500
    kinds = [e.kind for e in cards.gift_card_entries(session, card_id=gc.card.id)]
    assert kinds == [GiftCardEntryKind.ISSUE, GiftCardEntryKind.REDEEM,
                     GiftCardEntryKind.TRANSFER_OUT]
    assert cards.verify(session) == []


def test_a_card_can_be_attached_to_a_member_without_moving_value(
    session: Session, clock: FixedClock, world: World, manager: Principal, cashier: Principal
) -> None:
    (gc,) = _issue(session, clock, manager)
    m = make_member(session, clock, world.store_a)
    moved = cards.transfer_gift_card(session, clock=clock, actor=cashier, code=gc.card.code,
                                     pin=gc.pin, to_member_id=m.id)
    assert moved.new_card is None
    assert (moved.card.member_id, moved.card.balance_minor, moved.card.status) == \
        (m.id, 10_000, GiftCardStatus.ACTIVE)


def test_five_wrong_pins_lock_the_card_for_fifteen_minutes(
    session: Session, clock: FixedClock, manager: Principal, cashier: Principal
) -> None:
    (gc,) = _issue(session, clock, manager)
    code = gc.card.code
    for tries_left in (4, 3, 2, 1):
        check = cards.check_pin(session, clock=clock, code=code, pin="WRONG222")
        with pytest.raises(cards.WrongPin) as err:
            check.raise_for_failure()
        assert (err.value.status, err.value.field) == (422, "pin")
        assert f"{tries_left} more tries" in err.value.message
    check = cards.check_pin(session, clock=clock, code=code, pin="WRONG222")
    with pytest.raises(cards.GiftCardLocked) as locked:
        check.raise_for_failure()
    assert (locked.value.status, locked.value.code) == (429, "gift_card_locked")
    assert locked.value.locked_until == clock.now() + timedelta(minutes=15)
    # locked: even the right PIN is refused, by the check and by the value-moving call
    clock.advance(timedelta(minutes=14))
    assert not cards.check_pin(session, clock=clock, code=code, pin=gc.pin).ok
    with pytest.raises(cards.GiftCardLocked):
        cards.redeem_gift_card(session, clock=clock, actor=cashier, code=code, pin=gc.pin,
                               amount_minor=100)
    clock.advance(timedelta(minutes=1))
    assert cards.check_pin(session, clock=clock, code=code, pin=gc.pin).ok
    # a right PIN clears the count: four more wrong ones do not lock
    for _ in range(4):
        assert not cards.check_pin(session, clock=clock, code=code, pin="WRONG222").ok
    assert cards.check_pin(session, clock=clock, code=code, pin=gc.pin).ok
    card = session.scalar(select(GiftCard).where(GiftCard.code == code))
    assert card is not None and (card.failed_pin_attempts, card.locked_until) == (0, None)
    with pytest.raises(cards.WrongPin):
        cards.redeem_gift_card(session, clock=clock, actor=cashier, code=code,
                               pin="WRONG222", amount_minor=100)


def test_expired_cards_are_refused_and_the_daily_job_takes_their_balance(
    session: Session, clock: FixedClock, manager: Principal, cashier: Principal
) -> None:
    (gc,) = _issue(session, clock, manager, valid_days=30)
    (forever,) = _issue(session, clock, manager)
    clock.advance(timedelta(days=30))
    with pytest.raises(ValidationFailed) as err:
        cards.redeem_gift_card(session, clock=clock, actor=cashier, code=gc.card.code,
                               pin=gc.pin, amount_minor=100)
    assert err.value.code == "gift_card_expired"
    assert cards.run_daily(session, clock=clock)["gift_cards_expired"] == 1
    assert (gc.card.status, gc.card.balance_minor) == (GiftCardStatus.EXPIRED, 0)
    assert forever.card.balance_minor == 10_000
    last = cards.gift_card_entries(session, card_id=gc.card.id)[-1]
    assert (last.kind, last.delta_minor) == (GiftCardEntryKind.EXPIRE, -10_000)
    assert cards.verify(session) == []


def test_void_is_for_managers_takes_the_balance_and_is_idempotent(
    session: Session, clock: FixedClock, manager: Principal, cashier: Principal
) -> None:
    (gc,) = _issue(session, clock, manager)
    with pytest.raises(PermissionDenied):
        cards.void_gift_card(session, clock=clock, actor=cashier, code=gc.card.code,
                             reason="lost")
    with pytest.raises(ValidationFailed):
        cards.void_gift_card(session, clock=clock, actor=manager, code=gc.card.code,
                             reason=" ")
    cards.void_gift_card(session, clock=clock, actor=manager, code=gc.card.code,
                         reason="reported stolen")
    cards.void_gift_card(session, clock=clock, actor=manager, code=gc.card.code,
                         reason="again")
    assert (gc.card.status, gc.card.balance_minor) == (GiftCardStatus.VOID, 0)
    assert len(cards.gift_card_entries(session, card_id=gc.card.id)) == 2
    with pytest.raises(ValidationFailed) as err:
        cards.transfer_gift_card(session, clock=clock, actor=cashier, code=gc.card.code,
                                 pin=gc.pin)
    assert err.value.code == "gift_card_void"
    (other,) = _issue(session, clock, manager)
    cards.transfer_gift_card(session, clock=clock, actor=cashier, code=other.card.code,
                             pin=other.pin)
    with pytest.raises(Conflict):
        cards.void_gift_card(session, clock=clock, actor=manager, code=other.card.code,
                             reason="x")
    assert cards.verify(session) == []


def test_a_card_sold_at_the_till_is_tied_to_its_sale(
    session: Session, clock: FixedClock, world: World, cashier: Principal
) -> None:
    sale_id = make_sale(session, clock, world.store_a, None)
    sold = cards.sell_gift_card(session, clock=clock, actor=cashier, face_value_minor=5_000,
                                sale_id=sale_id)
    assert (sold.card.sale_id, sold.card.store_id, sold.card.batch_id) == \
        (sale_id, world.store_a.id, None)
    assert cards.gift_card_balance(session, clock=clock, code=sold.card.code,
                                   pin=sold.pin).balance_minor == 5_000
