"""The points ledger against a reference model of lots: earn (pending window), redeem oldest
first, claw back into debt, adjust, expire -- driven by hypothesis' state machine."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from sqlalchemy.orm import Session

from patron.auth import service as auth
from patron.auth.enums import Role
from patron.core.clock import FixedClock
from patron.core.db import Database
from patron.core.errors import InsufficientBalance
from patron.loyalty import rules
from patron.loyalty import service as loyalty
from patron.loyalty.enums import ExpiryPolicy
from patron.sales.models import Sale
from tests.conftest import TEST_NOW
from tests.factories import make_member, make_store, make_user

TZ = "Asia/Shanghai"
PENDING_DAYS = 3
points = st.integers(min_value=1, max_value=400)


@dataclass
class Lot:
    sale_id: object
    remaining: int
    available_at: datetime
    expires_at: datetime
    released: bool = False


class PointsMachine(RuleBasedStateMachine):
    db: Database

    def __init__(self) -> None:
        super().__init__()
        self.clock = FixedClock(TEST_NOW)
        self.session: Session = self.db.session(write=True)
        self.lots: list[Lot] = []
        self.debt = 0

    @initialize()
    def setup(self) -> None:
        self.store = make_store(self.session, self.clock)
        owner = make_user(self.session, self.clock, Role.OWNER)
        self.owner = auth.principal_for_user(owner)
        loyalty.update_program(self.session, clock=self.clock, actor=self.owner, changes={
            "pending_days": PENDING_DAYS, "expiry_policy": "months", "expiry_months": 1})
        self.member = make_member(self.session, self.clock, self.store)

    # ------------------------------------------------------------ the model
    def _release(self) -> None:
        for lot in self.lots:
            if not lot.released and lot.available_at <= self.clock.now():
                lot.released = True

    def _consume(self, n: int) -> None:
        for lot in self.lots:
            if lot.released and lot.remaining:
                take = min(n, lot.remaining)
                lot.remaining -= take
                n -= take
        assert n == 0

    def _available(self) -> int:
        return sum(lot.remaining for lot in self.lots if lot.released)

    def _new_lot(self, sale_id: object, n: int, pending: bool) -> None:
        now = self.clock.now()
        self.lots.append(Lot(sale_id, n, now + timedelta(days=PENDING_DAYS if pending else 0),
                             rules.expires_at(now, policy=ExpiryPolicy.MONTHS, months=1, tz=TZ),
                             released=not pending))

    # ------------------------------------------------------------ rules
    @rule(n=points)
    def earn(self, n: int) -> None:
        sale = Sale(store_id=self.store.id, member_id=self.member.id,
                    receipt_no=f"R-{uuid.uuid4().hex[:12]}",
                    occurred_at=self.clock.now(), recorded_at=self.clock.now(),
                    subtotal_minor=n * 100, discount_minor=0, total_minor=n * 100)
        self.session.add(sale)
        self.session.flush()
        loyalty.earn(self.session, clock=self.clock, actor=None, member_id=self.member.id,
                     points=n, tz=TZ, sale_id=sale.id)
        self._release()
        settle = min(self.debt, n)
        self.debt -= settle
        if n - settle:
            self._new_lot(sale.id, n - settle, pending=True)

    @rule(n=points)
    def redeem(self, n: int) -> None:
        self._release()
        if n > self._available():
            with pytest.raises(InsufficientBalance):
                loyalty.redeem(self.session, clock=self.clock, actor=None,
                               member_id=self.member.id, points=n)
            return
        loyalty.redeem(self.session, clock=self.clock, actor=None, member_id=self.member.id,
                       points=n)
        self._consume(n)

    @precondition(lambda self: any(lot.sale_id for lot in self.lots))
    @rule(data=st.data())
    def claw_back(self, data: st.DataObject) -> None:
        sale_ids = sorted({str(lot.sale_id) for lot in self.lots if lot.sale_id})
        sale_id = data.draw(st.sampled_from(sale_ids))
        n = data.draw(points)
        lot_sale = next(lot.sale_id for lot in self.lots if str(lot.sale_id) == sale_id)
        out = loyalty.claw_back(self.session, clock=self.clock, actor=None,
                                member_id=self.member.id, points=n,
                                sale_id=lot_sale, store_id=None)  # type: ignore[arg-type]
        self._release()
        left = n
        for lot in self.lots:
            if str(lot.sale_id) == sale_id and lot.remaining and left:
                take = min(left, lot.remaining)
                lot.remaining -= take
                left -= take
        from_balance = min(left, self._available())
        self._consume(from_balance)
        left -= from_balance
        self.debt += left
        assert (out.taken, out.debt) == (n - left, left)

    @rule(n=st.integers(-300, 300).filter(bool))
    def adjust(self, n: int) -> None:
        self._release()
        if n < 0 and -n > self._available():
            with pytest.raises(InsufficientBalance):
                loyalty.adjust(self.session, clock=self.clock, actor=self.owner,
                               member_id=self.member.id, points=n, reason="fix", tz=TZ)
            return
        loyalty.adjust(self.session, clock=self.clock, actor=self.owner,
                       member_id=self.member.id, points=n, reason="fix", tz=TZ)
        if n > 0:
            self._new_lot(None, n, pending=False)
        else:
            self._consume(-n)

    @rule(days=st.integers(0, 12))
    def advance(self, days: int) -> None:
        self.clock.advance(timedelta(days=days, hours=1))

    @rule()
    def daily(self) -> None:
        loyalty.run_daily(self.session, clock=self.clock)
        self._release()
        for lot in self.lots:
            if lot.expires_at <= self.clock.now():
                lot.remaining = 0

    @invariant()
    def books_balance(self) -> None:
        if not hasattr(self, "member"):
            return
        bal = loyalty.balance(self.session, clock=self.clock, member_id=self.member.id)
        now = self.clock.now()
        available = sum(lot.remaining for lot in self.lots
                        if lot.released or lot.available_at <= now)
        pending = sum(lot.remaining for lot in self.lots
                      if not (lot.released or lot.available_at <= now))
        assert (bal.available, bal.pending, bal.debt) == (available, pending, self.debt)
        assert loyalty.verify(self.session) == []

    def teardown(self) -> None:
        self.session.rollback()
        self.session.close()


def test_points_ledger_matches_the_reference_model(db: Database) -> None:
    PointsMachine.db = db
    run = PointsMachine.TestCase
    run.settings = settings(max_examples=20, stateful_step_count=30, deadline=None,
                            suppress_health_check=[HealthCheck.too_slow])
    run().runTest()
