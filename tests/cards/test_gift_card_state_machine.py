"""Gift cards against a reference model, driven by hypothesis' state machine: issue,
redeem, transfer, void. Balances never go negative and value is conserved: what was
issued equals what is on the cards plus what was redeemed or voided."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from sqlalchemy import select
from sqlalchemy.orm import Session

from patron.auth import service as auth
from patron.cards import service as cards
from patron.cards.models import GiftCard
from patron.core.clock import FixedClock
from patron.core.db import Database
from patron.core.errors import InsufficientBalance, ValidationFailed
from tests.conftest import TEST_NOW
from tests.factories import make_store, make_user

amounts = st.integers(min_value=1, max_value=6_000)


@dataclass
class Model:
    code: str
    pin: str
    balance: int
    status: str = "active"


class GiftCardMachine(RuleBasedStateMachine):
    db: Database

    def __init__(self) -> None:
        super().__init__()
        self.clock = FixedClock(TEST_NOW)
        self.session: Session = self.db.session(write=True)
        self.cards: list[Model] = []
        self.issued = 0
        self.redeemed = 0
        self.voided = 0

    @initialize()
    def setup(self) -> None:
        store = make_store(self.session, self.clock)
        self.manager = auth.principal_for_user(
            make_user(self.session, self.clock, auth.Role.MANAGER, [store]))

    @rule(value=amounts, count=st.integers(1, 3))
    def issue(self, value: int, count: int) -> None:
        _, issued = cards.issue_gift_cards(self.session, clock=self.clock, actor=self.manager,
                                           name="batch", count=count, face_value_minor=value)
        self.cards += [Model(i.card.code, i.pin, value) for i in issued]
        self.issued += value * count

    @precondition(lambda self: bool(self.cards))
    @rule(data=st.data(), amount=amounts)
    def redeem(self, data: st.DataObject, amount: int) -> None:
        card = data.draw(st.sampled_from(self.cards))

        def call() -> None:
            cards.redeem_gift_card(self.session, clock=self.clock, actor=None, code=card.code,
                                   pin=card.pin, amount_minor=amount)

        if card.status != "active":
            with pytest.raises(ValidationFailed):
                call()
        elif amount > card.balance:
            with pytest.raises(InsufficientBalance):
                call()
        else:
            call()
            card.balance -= amount
            self.redeemed += amount

    @precondition(lambda self: bool(self.cards))
    @rule(data=st.data())
    def transfer(self, data: st.DataObject) -> None:
        card = data.draw(st.sampled_from(self.cards))
        if card.status != "active" or card.balance == 0:
            with pytest.raises(ValidationFailed):
                cards.transfer_gift_card(self.session, clock=self.clock, actor=None,
                                         code=card.code, pin=card.pin)
            return
        moved = cards.transfer_gift_card(self.session, clock=self.clock, actor=None,
                                         code=card.code, pin=card.pin)
        assert moved.new_card is not None
        self.cards.append(Model(moved.new_card.card.code, moved.new_card.pin, card.balance))
        card.balance, card.status = 0, "closed"

    @precondition(lambda self: bool(self.cards))
    @rule(data=st.data())
    def void(self, data: st.DataObject) -> None:
        card = data.draw(st.sampled_from(self.cards))
        if card.status == "closed":
            return  # refused with 409; covered in test_gift_cards
        cards.void_gift_card(self.session, clock=self.clock, actor=self.manager,
                             code=card.code, reason="test")
        if card.status == "active":
            self.voided += card.balance
            card.balance, card.status = 0, "void"

    @invariant()
    def books_balance(self) -> None:
        rows = {c.code: c for c in self.session.scalars(select(GiftCard))}
        total = 0
        for card in self.cards:
            row = rows[card.code]
            assert (row.balance_minor, row.status) == (card.balance, card.status)
            assert row.balance_minor >= 0
            total += row.balance_minor
        assert total == self.issued - self.redeemed - self.voided
        assert cards.verify(self.session) == []

    def teardown(self) -> None:
        self.session.rollback()
        self.session.close()


def test_gift_cards_match_the_reference_model(db: Database) -> None:
    GiftCardMachine.db = db
    run = GiftCardMachine.TestCase
    run.settings = settings(max_examples=15, stateful_step_count=20, deadline=None,
                            suppress_health_check=[HealthCheck.too_slow])
    run().runTest()
