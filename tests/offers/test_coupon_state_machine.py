"""Coupons against a reference model, driven by hypothesis' state machine: issue, redeem,
void, expire, restore and the passing of time, in any order. A coupon is never redeemed
twice, and the limits always hold."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from patron.auth import service as auth
from patron.core.clock import FixedClock
from patron.core.db import Database
from patron.core.errors import Conflict, PatronError, ValidationFailed
from patron.offers import rules
from patron.offers import service as offers
from patron.offers.models import Coupon, CouponRedemption
from tests.conftest import TEST_NOW
from tests.factories import make_member, make_store, make_user
from tests.offers.support import line, make_template

PER_MEMBER = 2
TOTAL = 8
DAYS = 3


@dataclass
class Model:
    template: str  # "limited" (limits, restores on refund) or "plain"
    member: int | None  # index into the machine's members; None for bearer coupons
    status: str
    valid_until: datetime
    replacement: bool = False
    restored: bool = False


class CouponMachine(RuleBasedStateMachine):
    db: Database

    def __init__(self) -> None:
        super().__init__()
        self.clock = FixedClock(TEST_NOW)
        self.session: Session = self.db.session(write=True)
        self.coupons: dict[str, Model] = {}
        self.redemptions: dict[str, int] = {}  # code -> successful redemptions
        self.member_uses: dict[tuple[str, int], int] = {}

    @initialize()
    def setup(self) -> None:
        self.store = make_store(self.session, self.clock)
        manager = auth.principal_for_user(
            make_user(self.session, self.clock, auth.Role.MANAGER, [self.store]))
        self.manager = manager
        limited = make_template(self.session, self.clock, manager, name="limited",
                                valid_days=DAYS, per_member_limit=PER_MEMBER,
                                total_limit=TOTAL, restore_on_refund=True)
        plain = make_template(self.session, self.clock, manager, name="plain", valid_days=DAYS)
        self.templates = {"limited": limited.id, "plain": plain.id}
        self.members = [make_member(self.session, self.clock, self.store).id for _ in range(2)]

    # ------------------------------------------------------------ helpers

    def _issued(self, template: str, member: int | None = None) -> int:
        return sum(1 for c in self.coupons.values() if c.template == template
                   and not c.replacement and (member is None or c.member == member))

    def _member_id(self, member: int | None) -> uuid.UUID | None:
        return None if member is None else self.members[member]

    def _expected_refusal(self, c: Model, member: int | None) -> str | None:
        now = self.clock.now()
        if c.status == "redeemed":
            return rules.ALREADY_REDEEMED
        if c.status == "void":
            return rules.VOID
        if c.status == "expired" or now >= c.valid_until:
            return rules.EXPIRED
        if c.member is not None and member is None:
            return rules.MEMBER_REQUIRED
        if c.member is not None and c.member != member:
            return rules.OTHER_MEMBER
        if (c.template == "limited" and c.member is None and member is not None
                and self.member_uses.get((c.template, member), 0) >= PER_MEMBER):
            return rules.MEMBER_LIMIT
        return None

    # ------------------------------------------------------------ rules

    @rule(template=st.sampled_from(["limited", "plain"]),
          member=st.one_of(st.none(), st.integers(0, 1)), count=st.integers(1, 3))
    def issue(self, template: str, member: int | None, count: int) -> None:
        expected = None
        if template == "limited":
            if self._issued(template) + count > TOTAL:
                expected = "total_limit_reached"
            elif member is not None and self._issued(template, member) + count > PER_MEMBER:
                expected = "member_limit_reached"
        call = {"session": self.session, "clock": self.clock, "actor": self.manager,
                "template_id": self.templates[template],
                "member_id": self._member_id(member), "count": count}
        if expected:
            with pytest.raises(ValidationFailed) as err:
                offers.issue_coupons(**call)  # type: ignore[arg-type]
            assert err.value.code == expected
            return
        for c in offers.issue_coupons(**call):  # type: ignore[arg-type]
            assert c.code not in self.coupons
            self.coupons[c.code] = Model(template, member, "issued", c.valid_until)

    @precondition(lambda self: bool(self.coupons))
    @rule(data=st.data(), member=st.one_of(st.none(), st.integers(0, 1)))
    def redeem(self, data: st.DataObject, member: int | None) -> None:
        code = data.draw(st.sampled_from(list(self.coupons)))  # issue order, not random codes
        c = self.coupons[code]
        expected = self._expected_refusal(c, member)
        call = {"session": self.session, "clock": self.clock, "actor": None, "code": code,
                "member_id": self._member_id(member), "store_id": self.store.id,
                "sale_id": None, "lines": [line(5_000)]}
        if expected is None:
            q = offers.quote(self.session, clock=self.clock, code=code,
                             member_id=self._member_id(member), store_id=None,
                             lines=[line(5_000)])
            r = offers.redeem(**call)  # type: ignore[arg-type]
            assert r.discount_minor == q.discount_minor == 1_000
            c.status = "redeemed"
            self.redemptions[code] = self.redemptions.get(code, 0) + 1
            if member is not None:
                key = (c.template, member)
                self.member_uses[key] = self.member_uses.get(key, 0) + 1
            return
        error = Conflict if expected == rules.ALREADY_REDEEMED else ValidationFailed
        with pytest.raises(error) as err:
            offers.redeem(**call)  # type: ignore[arg-type]
        assert (err.value.code, err.value.field) == (expected, "coupon_codes")

    @precondition(lambda self: bool(self.coupons))
    @rule(data=st.data())
    def void(self, data: st.DataObject) -> None:
        code = data.draw(st.sampled_from(list(self.coupons)))  # issue order, not random codes
        c = self.coupons[code]
        if c.status in ("redeemed", "expired"):
            with pytest.raises(Conflict):
                offers.void_coupon(self.session, clock=self.clock, actor=self.manager,
                                   code=code, reason="test")
            return
        voided = offers.void_coupon(self.session, clock=self.clock, actor=self.manager,
                                    code=code, reason="test")
        assert voided.status == "void"
        c.status = "void"

    @rule(days=st.integers(0, 2), hours=st.integers(0, 23))
    def time_passes(self, days: int, hours: int) -> None:
        self.clock.advance(timedelta(days=days, hours=hours))

    @rule()
    def expire(self) -> None:
        now = self.clock.now()
        due = [c for c in self.coupons.values() if c.status == "issued" and c.valid_until <= now]
        assert offers.expire_due(self.session, clock=self.clock) == len(due)
        for c in due:
            c.status = "expired"

    @precondition(lambda self: any(c.status == "redeemed" for c in self.coupons.values()))
    @rule(data=st.data())
    def refund(self, data: st.DataObject) -> None:
        code = data.draw(st.sampled_from(
            [k for k, c in self.coupons.items() if c.status == "redeemed"]))
        c = self.coupons[code]
        got = offers.restore_for_refund(self.session, clock=self.clock, actor=self.manager,
                                        code=code)
        restores = (c.template == "limited" and not c.restored
                    and self.clock.now() < c.valid_until)
        assert len(got) == (1 if restores else 0)
        if restores:
            c.restored = True
            new = got[0]
            self.coupons[new.code] = Model(c.template, c.member, "issued", new.valid_until,
                                           replacement=True)

    @precondition(lambda self: bool(self.coupons))
    @rule(data=st.data())
    def redeem_twice_in_one_go(self, data: st.DataObject) -> None:
        """The same code twice in a row: at most one of the two can ever succeed."""
        code = data.draw(st.sampled_from(list(self.coupons)))  # issue order, not random codes
        c = self.coupons[code]
        wins = 0
        for _ in range(2):
            try:
                offers.redeem(self.session, clock=self.clock, actor=None, code=code,
                              member_id=self._member_id(c.member), store_id=self.store.id,
                              sale_id=None, lines=[line(5_000)])
                wins += 1
            except PatronError:
                pass
        assert wins <= 1
        if wins:
            assert self._expected_refusal(c, c.member) is None
            c.status = "redeemed"
            self.redemptions[code] = self.redemptions.get(code, 0) + 1
            if c.member is not None:
                key = (c.template, c.member)
                self.member_uses[key] = self.member_uses.get(key, 0) + 1

    # ------------------------------------------------------------ invariants

    @invariant()
    def database_agrees_with_the_model(self) -> None:
        if not hasattr(self, "templates"):
            return
        rows = {c.code: c for c in self.session.scalars(select(Coupon))}
        assert {k: c.status for k, c in rows.items()} == {
            k: c.status for k, c in self.coupons.items()}
        rows = self.session.execute(
            select(Coupon.code, func.count(CouponRedemption.id))
            .join(CouponRedemption, CouponRedemption.coupon_id == Coupon.id)
            .group_by(Coupon.code))
        used = {row[0]: int(row[1]) for row in rows}
        assert used == self.redemptions
        assert all(n == 1 for n in used.values())  # never redeemed twice
        assert offers.verify(self.session) == []

    @invariant()
    def limits_hold(self) -> None:
        if not hasattr(self, "templates"):
            return
        limited = self.templates["limited"]
        assert offers.issued_count(self.session, template_id=limited) <= TOTAL
        for m in self.members:
            assert offers.issued_count(self.session, template_id=limited,
                                       member_id=m) <= PER_MEMBER
        bearer_uses = self.session.execute(
            select(CouponRedemption.member_id, func.count())
            .join(Coupon, Coupon.id == CouponRedemption.coupon_id)
            .where(Coupon.member_id.is_(None), CouponRedemption.template_id == limited,
                   CouponRedemption.member_id.is_not(None))
            .group_by(CouponRedemption.member_id)).all()
        assert all(n <= PER_MEMBER for _, n in bearer_uses)

    def teardown(self) -> None:
        self.session.rollback()
        self.session.close()


def test_coupons_match_the_reference_model(db: Database) -> None:
    CouponMachine.db = db
    run = CouponMachine.TestCase
    run.settings = settings(max_examples=20, stateful_step_count=30, deadline=None,
                            suppress_health_check=[HealthCheck.too_slow])
    run().runTest()
