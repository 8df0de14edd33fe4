"""Coupon and referral use cases against a real database."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from patron.auth import service as auth
from patron.auth.audit import list_entries
from patron.auth.principal import Principal
from patron.core.clock import FixedClock
from patron.core.db import Database
from patron.core.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from patron.core.events import OutboxEvent
from patron.members import service as members
from patron.offers import rules
from patron.offers import service as offers
from patron.offers.enums import CouponSource, CouponStatus
from patron.offers.models import Coupon, CouponRedemption, CouponRestoration, ReferralReward
from patron.offers.schemas import CouponTemplateUpdate, ReferralRuleIn
from tests.factories import World, make_member
from tests.offers.support import line, make_category, make_product, make_template


@pytest.fixture
def manager(world: World) -> Principal:
    return auth.principal_for_user(world.manager_a)


@pytest.fixture
def cashier(world: World) -> Principal:
    return auth.principal_for_user(world.cashier_a)


def _redeem(session: Session, clock: FixedClock, world: World, code: str,
            member_id: uuid.UUID | None = None, price: int = 5_000) -> offers.CouponRedeemed:
    return offers.redeem(session, clock=clock, actor=None, code=code, member_id=member_id,
                         store_id=world.store_a.id, sale_id=None, lines=[line(price)])


def _quote_refusal(session: Session, clock: FixedClock, code: str,
                   member_id: uuid.UUID | None = None, lines: Any = None) -> str:
    with pytest.raises(ValidationFailed) as err:
        offers.quote(session, clock=clock, code=code, member_id=member_id, store_id=None,
                     lines=lines or [line(5_000)])
    assert err.value.field == "coupon_codes"
    return err.value.code


# ---------------------------------------------------------------- templates


IMPOSSIBLE_TEMPLATES: list[tuple[dict[str, Any], str]] = [
    ({"amount_minor": None}, "amount_minor"),
    ({"kind": "percent", "amount_minor": None}, "percent"),
    ({"kind": "percent", "percent": 10}, "amount_minor"),
    ({"cap_minor": 100}, "cap_minor"),
    ({"scope": "categories"}, "target_ids"),
    ({"target_ids": [uuid.uuid4()]}, "target_ids"),
    ({"ends_at": "2026-12-31T00:00:00Z"}, "ends_at"),
    ({"validity": "fixed", "valid_days": None}, "ends_at"),
    ({"validity": "fixed", "ends_at": "2026-12-31T00:00:00Z"}, "valid_days"),
    ({"validity": "fixed", "valid_days": None, "starts_at": "2027-01-01T00:00:00Z",
      "ends_at": "2026-12-31T00:00:00Z"}, "ends_at"),
]


def test_impossible_templates_are_refused_naming_the_field(
    session: Session, clock: FixedClock, manager: Principal
) -> None:
    for overrides, field in IMPOSSIBLE_TEMPLATES:  # one test: nothing reaches the database
        with pytest.raises(ValidationFailed) as err:
            make_template(session, clock, manager, **overrides)
        assert err.value.field == field, overrides
    assert offers.list_templates(session, include_inactive=True) == []


def test_a_scope_naming_an_unknown_category_is_refused(
    session: Session, clock: FixedClock, manager: Principal
) -> None:
    with pytest.raises(ValidationFailed) as err:
        make_template(session, clock, manager, scope="categories", target_ids=[uuid.uuid4()])
    assert (err.value.field, err.value.code) == ("target_ids", "unknown_target")


def test_templates_are_for_managers_and_audited(
    session: Session, clock: FixedClock, manager: Principal, cashier: Principal
) -> None:
    with pytest.raises(PermissionDenied):
        make_template(session, clock, cashier)
    t = make_template(session, clock, manager)
    offers.deactivate_template(session, clock=clock, actor=manager, template_id=t.id)
    actions = [e.action for e in list_entries(session, entity_type="coupon_template")]
    assert actions == ["coupon_template.deactivated", "coupon_template.created"]


def test_discount_terms_freeze_once_a_coupon_is_issued(
    session: Session, clock: FixedClock, manager: Principal
) -> None:
    t = make_template(session, clock, manager)
    offers.update_template(session, clock=clock, actor=manager, template_id=t.id,
                           data=CouponTemplateUpdate(amount_minor=1_500))
    offers.issue_coupons(session, clock=clock, actor=None, template_id=t.id)
    with pytest.raises(ValidationFailed) as err:
        offers.update_template(session, clock=clock, actor=manager, template_id=t.id,
                               data=CouponTemplateUpdate(amount_minor=9_000))
    assert (err.value.field, err.value.code) == ("amount_minor", "template_in_use")
    t = offers.update_template(session, clock=clock, actor=manager, template_id=t.id,
                               data=CouponTemplateUpdate(name="15 off", total_limit=10))
    assert (t.name, t.amount_minor, t.total_limit) == ("15 off", 1_500, 10)


def test_a_template_can_change_scope_before_it_issues(
    session: Session, clock: FixedClock, manager: Principal
) -> None:
    cat = make_category(session)
    product = make_product(session, cat)
    t = make_template(session, clock, manager, scope="categories", target_ids=[cat.id])
    t = offers.update_template(session, clock=clock, actor=manager, template_id=t.id,
                               data=CouponTemplateUpdate(scope="products",
                                                         target_ids=[product.id]))
    assert offers.target_ids(t) == [product.id]
    assert t.targets[0].category_id is None


# ---------------------------------------------------------------- issue


def test_issue_to_a_member_respects_the_per_member_and_total_limits(
    session: Session, clock: FixedClock, world: World, manager: Principal
) -> None:
    t = make_template(session, clock, manager, per_member_limit=2, total_limit=5)
    m = make_member(session, clock, world.store_a)
    coupons = offers.issue_coupons(session, clock=clock, actor=manager, template_id=t.id,
                                   member_id=m.id, count=2)
    assert len({c.code for c in coupons}) == 2
    assert all(c.valid_until == clock.now() + timedelta(days=30) for c in coupons)
    with pytest.raises(ValidationFailed) as err:
        offers.issue_coupons(session, clock=clock, actor=manager, template_id=t.id,
                             member_id=m.id)
    assert (err.value.field, err.value.code) == ("member_id", "member_limit_reached")
    offers.issue_coupons(session, clock=clock, actor=None, template_id=t.id, count=3)
    with pytest.raises(ValidationFailed) as err:
        offers.issue_coupons(session, clock=clock, actor=None, template_id=t.id)
    assert (err.value.field, err.value.code) == ("count", "total_limit_reached")
    events = session.scalars(select(OutboxEvent).where(OutboxEvent.type == "coupon.issued"))
    assert len(list(events)) == 5
    assert [e.action for e in list_entries(session, action="coupon.issued")] == ["coupon.issued"]


def test_issue_is_refused_for_cashiers_inactive_and_ended_templates(
    session: Session, clock: FixedClock, manager: Principal, cashier: Principal
) -> None:
    t = make_template(session, clock, manager)
    with pytest.raises(PermissionDenied):
        offers.issue_coupons(session, clock=clock, actor=cashier, template_id=t.id)
    ended = make_template(session, clock, manager, validity="fixed", valid_days=None,
                          ends_at=clock.now() + timedelta(hours=1))
    clock.advance(timedelta(hours=2))
    with pytest.raises(ValidationFailed) as err:
        offers.issue_coupons(session, clock=clock, actor=None, template_id=ended.id)
    assert err.value.code == "template_ended"
    offers.deactivate_template(session, clock=clock, actor=manager, template_id=t.id)
    with pytest.raises(ValidationFailed) as err:
        offers.issue_coupons(session, clock=clock, actor=None, template_id=t.id)
    assert err.value.code == "template_inactive"
    with pytest.raises(NotFound):
        offers.issue_coupons(session, clock=clock, actor=None, template_id=uuid.uuid4())


# ---------------------------------------------------------------- quote and redeem


def test_quote_gives_every_reason_a_coupon_cannot_be_used(
    session: Session, clock: FixedClock, world: World, manager: Principal
) -> None:
    food = make_category(session)
    t = make_template(session, clock, manager, min_spend_minor=3_000, scope="categories",
                      target_ids=[food.id])
    m, other = (make_member(session, clock, world.store_a) for _ in range(2))
    (mine,) = offers.issue_coupons(session, clock=clock, actor=None, template_id=t.id,
                                   member_id=m.id)
    inside = [line(5_000, category_id=food.id)]
    assert _quote_refusal(session, clock, "NOT-A-CODE") == rules.UNKNOWN
    bogus = rules.new_coupon_code()
    assert _quote_refusal(session, clock, bogus) == rules.UNKNOWN
    assert _quote_refusal(session, clock, mine.code, other.id, inside) == rules.OTHER_MEMBER
    assert _quote_refusal(session, clock, mine.code, None, inside) == rules.MEMBER_REQUIRED
    assert _quote_refusal(session, clock, mine.code, m.id) == rules.NOTHING_IN_SCOPE
    assert _quote_refusal(session, clock, mine.code, m.id,
                          [line(2_000, category_id=food.id)]) == rules.MIN_SPEND
    q = offers.quote(session, clock=clock, code=rules.format_code(mine.code).lower(),
                     member_id=m.id, store_id=None, lines=[line(700), *inside])
    assert (q.discount_minor, q.line_discounts, q.label) == (1_000, (0, 1_000), "10 off")
    offers.redeem(session, clock=clock, actor=None, code=mine.code, member_id=m.id,
                  store_id=world.store_a.id, sale_id=None, lines=inside)
    assert _quote_refusal(session, clock, mine.code, m.id, inside) == rules.ALREADY_REDEEMED
    (void,) = offers.issue_coupons(session, clock=clock, actor=None, template_id=t.id)
    offers.void_coupon(session, clock=clock, actor=manager, code=void.code, reason="misprint")
    assert _quote_refusal(session, clock, void.code, None, inside) == rules.VOID
    later = make_template(session, clock, manager, validity="fixed", valid_days=None,
                          starts_at=clock.now() + timedelta(days=1),
                          ends_at=clock.now() + timedelta(days=2))
    (early,) = offers.issue_coupons(session, clock=clock, actor=None, template_id=later.id)
    assert _quote_refusal(session, clock, early.code) == rules.NOT_YET_VALID
    clock.advance(timedelta(days=3))
    assert _quote_refusal(session, clock, early.code) == rules.EXPIRED


def test_a_coupon_is_redeemed_once_and_the_database_refuses_a_second_row(
    session: Session, clock: FixedClock, world: World, manager: Principal
) -> None:
    t = make_template(session, clock, manager, kind="percent", amount_minor=None, percent=20,
                      cap_minor=1_500)
    (c,) = offers.issue_coupons(session, clock=clock, actor=None, template_id=t.id)
    r = offers.redeem(session, clock=clock, actor=None, code=c.code, member_id=None,
                      store_id=world.store_a.id, sale_id=None,
                      lines=[line(3_000), line(7_001, quantity=2)], reference="R-1")
    assert r.discount_minor == 1_500
    assert sum(r.line_discounts) == 1_500
    assert r.redemption.reference == "R-1"
    assert session.get(Coupon, c.id).status == CouponStatus.REDEEMED.value  # type: ignore[union-attr]
    with pytest.raises(Conflict) as err:
        _redeem(session, clock, world, c.code)
    assert (err.value.code, err.value.field, err.value.status) == (
        "coupon_already_redeemed", "coupon_codes", 409)
    savepoint = session.begin_nested()
    session.add(CouponRedemption(
        coupon_id=c.id, template_id=t.id, store_id=world.store_a.id, eligible_minor=10,
        discount_minor=1, actor_label="test", redeemed_at=clock.now()))
    with pytest.raises(IntegrityError):
        session.flush()
    savepoint.rollback()
    assert session.scalar(select(func.count()).select_from(CouponRedemption)) == 1


def test_redeem_needs_a_store_the_caller_may_use(
    session: Session, clock: FixedClock, world: World, manager: Principal, cashier: Principal
) -> None:
    t = make_template(session, clock, manager)
    (c,) = offers.issue_coupons(session, clock=clock, actor=None, template_id=t.id)
    with pytest.raises(PermissionDenied):
        offers.redeem(session, clock=clock, actor=cashier, code=c.code, member_id=None,
                      store_id=world.store_b.id, sale_id=None, lines=[line(5_000)])
    with pytest.raises(ValidationFailed) as err:
        offers.redeem(session, clock=clock, actor=None, code=c.code, member_id=None,
                      store_id=None, sale_id=None, lines=[line(5_000)])
    assert err.value.field == "store_id"
    r = offers.redeem(session, clock=clock, actor=cashier, code=c.code, member_id=None,
                      store_id=None, sale_id=None, lines=[line(5_000)])
    assert r.redemption.store_id == world.store_a.id
    assert r.redemption.actor_label == cashier.label


def test_a_bearer_offer_limited_per_member_counts_the_members_redemptions(
    session: Session, clock: FixedClock, world: World, manager: Principal
) -> None:
    t = make_template(session, clock, manager, per_member_limit=1)
    a, b = offers.issue_coupons(session, clock=clock, actor=None, template_id=t.id, count=2)
    m = make_member(session, clock, world.store_a)
    _redeem(session, clock, world, a.code, m.id)
    with pytest.raises(ValidationFailed) as err:
        _redeem(session, clock, world, b.code, m.id)
    assert err.value.code == rules.MEMBER_LIMIT
    _redeem(session, clock, world, b.code, None)  # an anonymous buyer may still use it


# ---------------------------------------------------------------- void and expiry


def test_void_is_for_managers_and_only_for_unused_coupons(
    session: Session, clock: FixedClock, world: World, manager: Principal, cashier: Principal
) -> None:
    t = make_template(session, clock, manager)
    a, b = offers.issue_coupons(session, clock=clock, actor=None, template_id=t.id, count=2)
    with pytest.raises(PermissionDenied):
        offers.void_coupon(session, clock=clock, actor=cashier, code=a.code, reason="x")
    with pytest.raises(ValidationFailed):
        offers.void_coupon(session, clock=clock, actor=manager, code=a.code, reason=" ")
    v = offers.void_coupon(session, clock=clock, actor=manager, code=a.code, reason="lost")
    assert (v.status, v.void_reason, v.voided_by) == ("void", "lost", manager.label)
    assert offers.void_coupon(session, clock=clock, actor=manager, code=a.code,
                              reason="again").void_reason == "lost"
    _redeem(session, clock, world, b.code)
    with pytest.raises(Conflict) as err:
        offers.void_coupon(session, clock=clock, actor=manager, code=b.code, reason="late")
    assert err.value.code == "coupon_already_redeemed"
    with pytest.raises(NotFound):
        offers.void_coupon(session, clock=clock, actor=manager, code=rules.new_coupon_code(),
                           reason="x")


def test_expire_due_marks_closed_windows_and_leaves_used_coupons_alone(
    session: Session, clock: FixedClock, world: World, manager: Principal
) -> None:
    short = make_template(session, clock, manager, valid_days=1)
    long = make_template(session, clock, manager, valid_days=10)
    a, b, used = offers.issue_coupons(session, clock=clock, actor=None,
                                      template_id=short.id, count=3)
    (keep,) = offers.issue_coupons(session, clock=clock, actor=None, template_id=long.id)
    _redeem(session, clock, world, used.code)
    assert offers.expire_due(session, clock=clock) == 0
    clock.advance(timedelta(days=1))
    assert offers.expire_due(session, clock=clock) == 2
    assert offers.expire_due(session, clock=clock) == 0
    status = {c.id: c.status for c in session.scalars(select(Coupon))}
    assert [status[x.id] for x in (a, b, used, keep)] == ["expired", "expired", "redeemed",
                                                          "issued"]
    expired_events = session.scalar(select(func.count()).select_from(OutboxEvent)
                                    .where(OutboxEvent.type == "coupon.expired"))
    assert expired_events == 2


# ---------------------------------------------------------------- restore on refund


def test_a_refund_restores_a_replacement_once_and_the_original_stays_used(
    session: Session, clock: FixedClock, world: World, manager: Principal
) -> None:
    t = make_template(session, clock, manager, restore_on_refund=True, total_limit=1)
    m = make_member(session, clock, world.store_a)
    (c,) = offers.issue_coupons(session, clock=clock, actor=None, template_id=t.id,
                                member_id=m.id)
    _redeem(session, clock, world, c.code, m.id)
    (new,) = offers.restore_for_refund(session, clock=clock, actor=manager, code=c.code,
                                       reason="returned")
    assert new.code != c.code
    assert (new.member_id, new.source, new.replaces_coupon_id) == (m.id, "restore", c.id)
    assert (new.valid_from, new.valid_until) == (c.valid_from, c.valid_until)
    assert session.get(Coupon, c.id).status == "redeemed"  # type: ignore[union-attr]
    assert offers.restore_for_refund(session, clock=clock, actor=manager, code=c.code) == []
    assert session.scalar(select(func.count()).select_from(CouponRestoration)) == 1
    assert offers.issued_count(session, template_id=t.id) == 1  # the limit is not spent again
    r = _redeem(session, clock, world, new.code, m.id)
    assert r.discount_minor == 1_000


def test_restore_follows_the_template_policy_and_the_window(
    session: Session, clock: FixedClock, world: World, manager: Principal
) -> None:
    keeps = make_template(session, clock, manager, restore_on_refund=False)
    gives = make_template(session, clock, manager, restore_on_refund=True, valid_days=2)
    (a,) = offers.issue_coupons(session, clock=clock, actor=None, template_id=keeps.id)
    (b,) = offers.issue_coupons(session, clock=clock, actor=None, template_id=gives.id)
    _redeem(session, clock, world, a.code)
    _redeem(session, clock, world, b.code)
    assert offers.restore_for_refund(session, clock=clock, actor=None, code=a.code) == []
    clock.advance(timedelta(days=2))
    assert offers.restore_for_refund(session, clock=clock, actor=None, code=b.code) == []
    (c,) = offers.issue_coupons(session, clock=clock, actor=None, template_id=gives.id)
    with pytest.raises(ValidationFailed) as err:
        offers.restore_for_refund(session, clock=clock, actor=None, code=c.code)
    assert err.value.code == "coupon_not_redeemed"


# ---------------------------------------------------------------- referrals


def _referral_setup(session: Session, clock: FixedClock, world: World, manager: Principal,
                    **rule: Any) -> tuple[Any, Any, Any, Any]:
    for_referrer = make_template(session, clock, manager, name="thanks", amount_minor=2_000)
    for_new = make_template(session, clock, manager, name="welcome", amount_minor=1_000)
    offers.set_referral_rule(session, clock=clock, actor=manager, data=ReferralRuleIn(
        active=True, referrer_template_id=for_referrer.id, referred_template_id=for_new.id,
        **rule))
    referrer = make_member(session, clock, world.store_a)
    friend = make_member(session, clock, world.store_a)
    return referrer, friend, for_referrer, for_new


def test_every_member_has_one_short_referral_code(
    session: Session, clock: FixedClock, world: World
) -> None:
    m = make_member(session, clock, world.store_a)
    code = offers.referral_code_for(session, clock=clock, member_id=m.id)
    assert len(code.code) == 8
    assert offers.referral_code_for(session, clock=clock, member_id=m.id).code == code.code


def test_a_referred_first_purchase_rewards_both_sides_once(
    session: Session, clock: FixedClock, world: World, manager: Principal
) -> None:
    referrer, friend, for_referrer, for_new = _referral_setup(session, clock, world, manager)
    code = offers.referral_code_for(session, clock=clock, member_id=referrer.id).code
    with pytest.raises(ValidationFailed) as err:
        offers.attribute_referral(session, clock=clock, actor=None, new_member_id=referrer.id,
                                  code=code)
    assert err.value.code == "self_referral"
    offers.attribute_referral(session, clock=clock, actor=None, new_member_id=friend.id,
                              code=code.lower())
    reward = offers.on_first_purchase(session, clock=clock, member_id=friend.id, sale_id=None,
                                      amount_minor=8_800)
    assert reward is not None and reward.outcome == "rewarded"
    mine = offers.list_member_coupons(session, member_id=referrer.id)
    theirs = offers.list_member_coupons(session, member_id=friend.id)
    assert [(c.template_id, c.source) for c in mine] == [(for_referrer.id, "referral")]
    assert [c.template_id for c in theirs] == [for_new.id]
    assert (reward.referrer_coupon_id, reward.referred_coupon_id) == (mine[0].id, theirs[0].id)
    assert offers.on_first_purchase(session, clock=clock, member_id=friend.id, sale_id=None,
                                    amount_minor=8_800) is None
    assert len(offers.list_member_coupons(session, member_id=referrer.id)) == 1
    other = make_member(session, clock, world.store_a)
    with pytest.raises(Conflict) as conflict:
        offers.attribute_referral(
            session, clock=clock, actor=None, new_member_id=friend.id,
            code=offers.referral_code_for(session, clock=clock, member_id=other.id).code)
    assert conflict.value.code == "referral_already_attributed"


def test_a_first_purchase_below_the_minimum_settles_the_referral_without_reward(
    session: Session, clock: FixedClock, world: World, manager: Principal
) -> None:
    referrer, friend, *_ = _referral_setup(session, clock, world, manager,
                                           min_purchase_minor=10_000)
    code = offers.referral_code_for(session, clock=clock, member_id=referrer.id).code
    offers.attribute_referral(session, clock=clock, actor=None, new_member_id=friend.id,
                              code=code)
    reward = offers.on_first_purchase(session, clock=clock, member_id=friend.id, sale_id=None,
                                      amount_minor=9_999)
    assert reward is not None and reward.outcome == "below_minimum"
    assert offers.on_first_purchase(session, clock=clock, member_id=friend.id, sale_id=None,
                                    amount_minor=50_000) is None
    assert offers.list_member_coupons(session, member_id=referrer.id) == []


def test_a_referrer_past_the_templates_limit_gets_nothing_and_the_friend_still_does(
    session: Session, clock: FixedClock, world: World, manager: Principal
) -> None:
    referrer, friend, for_referrer, _ = _referral_setup(session, clock, world, manager)
    offers.update_template(session, clock=clock, actor=manager, template_id=for_referrer.id,
                           data=CouponTemplateUpdate(per_member_limit=1))
    offers.issue_coupons(session, clock=clock, actor=None, template_id=for_referrer.id,
                         member_id=referrer.id)
    offers.attribute_referral(
        session, clock=clock, actor=None, new_member_id=friend.id,
        code=offers.referral_code_for(session, clock=clock, member_id=referrer.id).code)
    reward = offers.on_first_purchase(session, clock=clock, member_id=friend.id, sale_id=None,
                                      amount_minor=1)
    assert reward is not None
    assert reward.referrer_coupon_id is None and reward.referred_coupon_id is not None


def test_the_card_given_at_enrolment_counts_as_the_referral(
    session: Session, clock: FixedClock, world: World, manager: Principal
) -> None:
    referrer, *_ = _referral_setup(session, clock, world, manager)
    friend = make_member(session, clock, world.store_a, referred_by_card_no=referrer.card_no)
    reward = offers.on_first_purchase(session, clock=clock, member_id=friend.id, sale_id=None,
                                      amount_minor=100)
    assert reward is not None and reward.referrer_member_id == referrer.id
    unreferred = make_member(session, clock, world.store_a)
    assert offers.on_first_purchase(session, clock=clock, member_id=unreferred.id,
                                    sale_id=None, amount_minor=100) is None


def test_two_simultaneous_first_purchases_reward_once(
    db: Database, clock: FixedClock, world: World
) -> None:
    manager = auth.principal_for_user(world.manager_a)
    with db.write() as s:
        referrer, friend, *_ = _referral_setup(s, clock, world, manager)
        offers.attribute_referral(
            s, clock=clock, actor=None, new_member_id=friend.id,
            code=offers.referral_code_for(s, clock=clock, member_id=referrer.id).code)
    results: list[Any] = []

    def second() -> None:
        with db.write() as s2:
            results.append(offers.on_first_purchase(s2, clock=clock, member_id=friend.id,
                                                    sale_id=None, amount_minor=500))

    with db.write() as s1:
        first = offers.on_first_purchase(s1, clock=clock, member_id=friend.id, sale_id=None,
                                         amount_minor=500)
        assert first is not None
        racer = threading.Thread(target=second)
        racer.start()
        time.sleep(0.5)  # the racer now waits on the row (PostgreSQL) or the file (SQLite)
    racer.join(timeout=30)
    assert results == [None]
    with db.read() as s:
        assert s.scalar(select(func.count()).select_from(ReferralReward)) == 1
        assert len(offers.list_member_coupons(s, member_id=referrer.id)) == 1


def test_merging_members_keeps_one_referral_code_and_the_old_one_still_works(
    session: Session, clock: FixedClock, world: World, manager: Principal
) -> None:
    referrer, friend, *_ = _referral_setup(session, clock, world, manager)
    dup = make_member(session, clock, world.store_a)
    old = offers.referral_code_for(session, clock=clock, member_id=dup.id).code
    (coupon,) = offers.issue_coupons(session, clock=clock, actor=None,
                                     template_id=make_template(session, clock, manager).id,
                                     member_id=dup.id)
    ours = offers.referral_code_for(session, clock=clock, member_id=referrer.id).code
    survivor, moved = members.merge_members(session, clock=clock, actor=manager,
                                            survivor_id=referrer.id, duplicate_id=dup.id)
    assert moved.get("referral_codes") == 0
    assert offers.referral_code_for(session, clock=clock, member_id=referrer.id).code == ours
    attribution = offers.attribute_referral(session, clock=clock, actor=None,
                                            new_member_id=friend.id, code=old)
    assert attribution.referrer_member_id == survivor.id
    assert session.get(Coupon, coupon.id).member_id == survivor.id  # type: ignore[union-attr]
    lone = make_member(session, clock, world.store_a)
    lone_dup = make_member(session, clock, world.store_a)
    code = offers.referral_code_for(session, clock=clock, member_id=lone_dup.id).code
    _, moved = members.merge_members(session, clock=clock, actor=manager,
                                     survivor_id=lone.id, duplicate_id=lone_dup.id)
    assert moved["referral_codes"] == 1
    assert offers.referral_code_for(session, clock=clock, member_id=lone.id).code == code


def test_referral_rule_is_for_managers_and_names_a_real_template(
    session: Session, clock: FixedClock, manager: Principal, cashier: Principal
) -> None:
    with pytest.raises(PermissionDenied):
        offers.set_referral_rule(session, clock=clock, actor=cashier,
                                 data=ReferralRuleIn(active=False))
    with pytest.raises(ValidationFailed) as err:
        offers.set_referral_rule(session, clock=clock, actor=manager, data=ReferralRuleIn(
            active=True, referrer_template_id=uuid.uuid4()))
    assert err.value.field == "referrer_template_id"
    with pytest.raises(ValidationFailed) as err:
        offers.set_referral_rule(session, clock=clock, actor=manager,
                                 data=ReferralRuleIn(active=True))
    assert err.value.code == "required"


def test_issue_source_restore_is_reserved_for_refunds(
    session: Session, clock: FixedClock, manager: Principal
) -> None:
    t = make_template(session, clock, manager)
    with pytest.raises(ValidationFailed) as err:
        offers.issue_coupons(session, clock=clock, actor=None, template_id=t.id,
                             source=CouponSource.RESTORE)
    assert err.value.field == "source"


def test_verify_finds_a_used_coupon_without_its_redemption(
    session: Session, clock: FixedClock, world: World, manager: Principal
) -> None:
    t = make_template(session, clock, manager, restore_on_refund=True)
    a, b = offers.issue_coupons(session, clock=clock, actor=None, template_id=t.id, count=2)
    _redeem(session, clock, world, a.code)
    offers.restore_for_refund(session, clock=clock, actor=None, code=a.code)
    assert offers.verify(session) == []
    b.status = "redeemed"  # as a bug that skipped the redemption row would leave it
    session.flush()
    assert offers.verify(session) == [f"coupon {b.code}: redeemed but has no redemption"]
