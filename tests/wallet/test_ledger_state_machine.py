"""The wallet ledger against a reference model, driven by hypothesis' state machine."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from sqlalchemy.orm import Session

from patron.auth import service as auth
from patron.core.clock import FixedClock
from patron.core.db import Database
from patron.core.errors import InsufficientBalance
from patron.wallet import service as wallet
from patron.wallet.enums import SpendOrder
from tests.conftest import TEST_NOW
from tests.factories import make_member, make_store, make_user

amounts = st.integers(min_value=1, max_value=5_000)


class WalletMachine(RuleBasedStateMachine):
    """Model: principal and bonus as two integers; spends principal first."""

    db: Database

    def __init__(self) -> None:
        super().__init__()
        self.clock = FixedClock(TEST_NOW)
        self.session: Session = self.db.session(write=True)
        self.principal = 0
        self.bonus = 0
        self.spends: list[tuple[Any, int]] = []  # (entry id, refundable amount left)

    @initialize()
    def setup(self) -> None:
        store = make_store(self.session, self.clock)
        owner = make_user(self.session, self.clock, auth.Role.OWNER)
        self.owner = auth.principal_for_user(owner)
        wallet.create_bonus_rule(self.session, clock=self.clock, actor=self.owner, name="b",
                                 min_topup_minor=1_000, bonus_minor=100)
        self.member = make_member(self.session, self.clock, store)

    @rule(amount=amounts)
    def top_up(self, amount: int) -> None:
        wallet.top_up(self.session, clock=self.clock, actor=None, member_id=self.member.id,
                      amount_minor=amount)
        self.principal += amount
        self.bonus += 100 if amount >= 1_000 else 0

    @rule(amount=amounts)
    def spend(self, amount: int) -> None:
        if amount > self.principal + self.bonus:
            with pytest.raises(InsufficientBalance):
                wallet.spend(self.session, clock=self.clock, actor=None,
                             member_id=self.member.id, amount_minor=amount,
                             order=SpendOrder.PRINCIPAL_FIRST)
            return
        e = wallet.spend(self.session, clock=self.clock, actor=None, member_id=self.member.id,
                         amount_minor=amount, order=SpendOrder.PRINCIPAL_FIRST)
        from_p = min(amount, self.principal)
        self.principal -= from_p
        self.bonus -= amount - from_p
        self.spends.append((e.id, amount))

    @precondition(lambda self: bool(self.spends))
    @rule(data=st.data())
    def refund(self, data: st.DataObject) -> None:
        i = data.draw(st.integers(0, len(self.spends) - 1))
        entry_id, left = self.spends[i]
        amount = data.draw(st.integers(1, left))
        e = wallet.refund_spend(self.session, clock=self.clock, actor=self.owner,
                                entry_id=entry_id, amount_minor=amount)
        self.principal += e.principal_delta_minor
        self.bonus += e.bonus_delta_minor
        self.spends[i] = (entry_id, left - amount)
        if left == amount:
            self.spends.pop(i)

    @rule(amount=amounts)
    def cash_out(self, amount: int) -> None:
        if amount > self.principal:
            with pytest.raises(InsufficientBalance):
                wallet.cash_out(self.session, clock=self.clock, actor=self.owner,
                                member_id=self.member.id, amount_minor=amount)
            return
        wallet.cash_out(self.session, clock=self.clock, actor=self.owner,
                        member_id=self.member.id, amount_minor=amount)
        if amount == self.principal:
            self.bonus = 0
        self.principal -= amount

    @invariant()
    def books_balance(self) -> None:
        if not hasattr(self, "member"):
            return
        bal = wallet.balance(self.session, member_id=self.member.id)
        assert (bal.principal_minor, bal.bonus_minor) == (self.principal, self.bonus)
        assert wallet.verify(self.session) == []

    def teardown(self) -> None:
        self.session.rollback()
        self.session.close()


def test_wallet_ledger_matches_the_reference_model(db: Database) -> None:
    WalletMachine.db = db
    run = WalletMachine.TestCase
    run.settings = settings(max_examples=25, stateful_step_count=30, deadline=None,
                            suppress_health_check=[HealthCheck.too_slow])
    run().runTest()
