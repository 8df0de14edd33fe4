"""Stamp cards: stamps accrue and turn into rewards; refunds take them back, never below
zero; a reward is used at most once."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from patron.auth import service as auth
from patron.auth.principal import Principal
from patron.cards import service as cards
from patron.cards.enums import RewardStatus, StampEntryKind
from patron.cards.models import StampEntry, StampReward
from patron.cards.schemas import StampProgrammeUpdate
from patron.core.clock import FixedClock
from patron.core.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from patron.members import service as members
from patron.members.models import Member
from tests.cards.support import Shop, coffees, make_programme, make_sale, make_shop
from tests.factories import World, make_member


@pytest.fixture
def manager(world: World) -> Principal:
    return auth.principal_for_user(world.manager_a)


@pytest.fixture
def shop(session: Session) -> Shop:
    return make_shop(session)


def _buy(session: Session, clock: FixedClock, world: World, member: Member, shop: Shop,
         n: int) -> tuple[object, list[cards.StampAward]]:
    sale_id = make_sale(session, clock, world.store_a, member.id)
    awards = cards.stamps_for_sale(session, clock=clock, member_id=member.id, sale_id=sale_id,
                                   store_id=world.store_a.id, lines=coffees(shop, n))
    return sale_id, awards


def _card(session: Session, clock: FixedClock, member: Member) -> cards.CardView:
    (view,) = cards.member_stamp_cards(session, clock=clock, member_id=member.id)
    return view


def test_stamps_accrue_per_item_and_the_ninth_makes_a_reward(
    session: Session, clock: FixedClock, world: World, manager: Principal, shop: Shop
) -> None:
    make_programme(session, clock, manager, shop)
    m = make_member(session, clock, world.store_a)
    _, awards = _buy(session, clock, world, m, shop, 4)
    assert [(a.stamps, a.stamps_on_card, a.reward_ids) for a in awards] == [(4, 4, [])]
    sale_id = make_sale(session, clock, world.store_a, m.id)
    awards = cards.stamps_for_sale(
        session, clock=clock, member_id=m.id, sale_id=sale_id, store_id=world.store_a.id,
        lines=[*coffees(shop, 3), (shop.espresso.id, shop.coffee.id, 3),
               (shop.cake.id, shop.cake.category_id, 5)])
    (award,) = awards
    assert (award.stamps, award.stamps_on_card, len(award.reward_ids)) == (6, 1, 1)
    view = _card(session, clock, m)
    assert (view.card.stamps, view.card.debt) == (1, 0)
    assert [r.id for r in view.rewards] == award.reward_ids
    assert view.rewards[0].expires_at == clock.now() + timedelta(days=30)
    assert cards.verify(session) == []


def test_a_sale_gives_its_stamps_once_and_a_big_one_makes_several_rewards(
    session: Session, clock: FixedClock, world: World, manager: Principal, shop: Shop
) -> None:
    make_programme(session, clock, manager, shop, stamps_needed=5)
    m = make_member(session, clock, world.store_a)
    sale_id, (award,) = _buy(session, clock, world, m, shop, 12)
    assert (award.stamps_on_card, len(award.reward_ids)) == (2, 2)
    again = cards.stamps_for_sale(session, clock=clock, member_id=m.id, sale_id=sale_id,
                                  store_id=world.store_a.id, lines=coffees(shop, 12))
    assert again == []
    assert _card(session, clock, m).card.stamps == 2


def test_visit_basis_gives_one_stamp_per_sale_and_inactive_programmes_give_none(
    session: Session, clock: FixedClock, world: World, manager: Principal, shop: Shop
) -> None:
    visit = make_programme(session, clock, manager, shop, name="Visits", basis="visit",
                           stamps_needed=3)
    off = make_programme(session, clock, manager, shop, name="Old")
    cards.update_programme(session, clock=clock, actor=manager, programme_id=off.id,
                           data=StampProgrammeUpdate(active=False))
    m = make_member(session, clock, world.store_a)
    _, awards = _buy(session, clock, world, m, shop, 4)
    assert [(a.programme_id, a.stamps) for a in awards] == [(visit.id, 1)]


def test_refund_takes_stamps_off_the_card_cumulatively(
    session: Session, clock: FixedClock, world: World, manager: Principal, shop: Shop
) -> None:
    make_programme(session, clock, manager, shop)
    m = make_member(session, clock, world.store_a)
    sale_id, _ = _buy(session, clock, world, m, shop, 5)
    first = cards.reverse_stamps_for_sale(session, clock=clock, member_id=m.id,
                                          sale_id=sale_id, lines_refunded=coffees(shop, 2))
    assert [(r.stamps_removed, r.debt_added, r.stamps_on_card) for r in first] == [(2, 0, 3)]
    # the cake was never stamped; more coffees than were sold are capped at the sale
    cards.reverse_stamps_for_sale(
        session, clock=clock, member_id=m.id, sale_id=sale_id,
        lines_refunded=[(shop.cake.id, shop.cake.category_id, 1), *coffees(shop, 9)])
    assert _card(session, clock, m).card.stamps == 0
    assert cards.reverse_stamps_for_sale(session, clock=clock, member_id=m.id,
                                         sale_id=sale_id, lines_refunded=coffees(shop, 1)) == []
    assert cards.verify(session) == []


def test_refund_revokes_an_unused_reward_and_puts_the_rest_back(
    session: Session, clock: FixedClock, world: World, manager: Principal, shop: Shop
) -> None:
    make_programme(session, clock, manager, shop)
    m = make_member(session, clock, world.store_a)
    _buy(session, clock, world, m, shop, 6)
    sale_id, (award,) = _buy(session, clock, world, m, shop, 4)  # 10: one reward, 1 left
    (reward_id,) = award.reward_ids
    (rev,) = cards.reverse_stamps_for_sale(session, clock=clock, member_id=m.id,
                                           sale_id=sale_id, lines_refunded=coffees(shop, 4))
    assert rev.rewards_revoked == [reward_id]
    assert (rev.stamps_removed, rev.debt_added, rev.stamps_on_card) == (4, 0, 6)
    assert session.get(StampReward, reward_id).status == RewardStatus.REVOKED  # type: ignore[union-attr]
    with pytest.raises(ValidationFailed) as err:
        cards.redeem_stamp_reward(session, clock=clock, actor=None, member_id=m.id,
                                  reward_id=reward_id, store_id=world.store_a.id)
    assert (err.value.field, err.value.code) == ("reward_id", "reward_revoked")
    assert cards.verify(session) == []


def test_refund_after_the_reward_was_used_records_stamp_debt_paid_by_the_next_stamps(
    session: Session, clock: FixedClock, world: World, manager: Principal, shop: Shop
) -> None:
    make_programme(session, clock, manager, shop)
    m = make_member(session, clock, world.store_a)
    sale_id, (award,) = _buy(session, clock, world, m, shop, 10)
    cards.redeem_stamp_reward(session, clock=clock, actor=None, member_id=m.id,
                              reward_id=award.reward_ids[0], store_id=world.store_a.id)
    (rev,) = cards.reverse_stamps_for_sale(session, clock=clock, member_id=m.id,
                                           sale_id=sale_id, lines_refunded=coffees(shop, 4))
    assert (rev.stamps_removed, rev.rewards_revoked, rev.debt_added) == (1, [], 3)
    view = _card(session, clock, m)
    assert (view.card.stamps, view.card.debt) == (0, 3)
    debt_entry = session.scalar(select(StampEntry).where(
        StampEntry.kind == StampEntryKind.DEBT.value))
    assert debt_entry is not None and debt_entry.sale_id == sale_id
    _, (award,) = _buy(session, clock, world, m, shop, 5)
    assert (award.stamps, award.debt_settled, award.stamps_on_card) == (5, 3, 2)
    assert _card(session, clock, m).card.debt == 0
    assert cards.verify(session) == []


def test_a_reward_is_redeemed_once_by_its_member_before_it_expires(
    session: Session, clock: FixedClock, world: World, manager: Principal, shop: Shop
) -> None:
    make_programme(session, clock, manager, shop, stamps_needed=2, valid_days=7)
    m = make_member(session, clock, world.store_a)
    other = make_member(session, clock, world.store_a)
    _, (award,) = _buy(session, clock, world, m, shop, 4)
    first, second = award.reward_ids
    with pytest.raises(NotFound):
        cards.redeem_stamp_reward(session, clock=clock, actor=None, member_id=other.id,
                                  reward_id=first)
    cashier = auth.principal_for_user(world.cashier_a)
    done = cards.redeem_stamp_reward(session, clock=clock, actor=cashier, member_id=m.id,
                                     reward_id=first, reference="R-1")
    assert done.reward.redeemed_store_id == world.store_a.id
    with pytest.raises(Conflict) as err:
        cards.redeem_stamp_reward(session, clock=clock, actor=cashier, member_id=m.id,
                                  reward_id=first)
    assert err.value.code == "reward_already_redeemed"
    with pytest.raises(PermissionDenied):
        cards.redeem_stamp_reward(session, clock=clock, actor=cashier, member_id=m.id,
                                  reward_id=second, store_id=world.store_b.id)
    clock.advance(timedelta(days=7))
    with pytest.raises(ValidationFailed) as verr:
        cards.redeem_stamp_reward(session, clock=clock, actor=cashier, member_id=m.id,
                                  reward_id=second)
    assert verr.value.code == "reward_expired"
    assert cards.run_daily(session, clock=clock)["stamp_rewards_expired"] == 1
    assert session.get(StampReward, second).status == RewardStatus.EXPIRED  # type: ignore[union-attr]


def test_programme_terms_freeze_once_a_member_holds_a_card(
    session: Session, clock: FixedClock, world: World, manager: Principal, shop: Shop
) -> None:
    p = make_programme(session, clock, manager, shop)
    cards.update_programme(session, clock=clock, actor=manager, programme_id=p.id,
                           data=StampProgrammeUpdate(stamps_needed=5,
                                                     product_ids=[shop.cake.id]))
    assert cards.programme_targets(p).product_ids == {shop.cake.id}
    m = make_member(session, clock, world.store_a)
    _buy(session, clock, world, m, shop, 1)
    with pytest.raises(Conflict) as err:
        cards.update_programme(session, clock=clock, actor=manager, programme_id=p.id,
                               data=StampProgrammeUpdate(stamps_needed=8))
    assert (err.value.field, err.value.code) == ("stamps_needed", "programme_terms_frozen")
    cards.update_programme(session, clock=clock, actor=manager, programme_id=p.id,
                           data=StampProgrammeUpdate(name="Coffee club", valid_days=60))
    with pytest.raises(PermissionDenied):
        make_programme(session, clock, auth.principal_for_user(world.cashier_a), shop)


def test_impossible_programmes_are_refused_naming_the_field(
    session: Session, clock: FixedClock, manager: Principal, shop: Shop
) -> None:
    cases = [({"reward_kind": "product"}, "reward_product_id"),
             ({"reward_product_id": shop.latte.id}, "reward_product_id"),
             ({"category_ids": []}, "product_ids"),
             ({"product_ids": [shop.latte.id, shop.latte.id]}, "product_ids"),
             ({"category_ids": [shop.latte.id]}, "category_ids")]
    for overrides, field in cases:
        with pytest.raises(ValidationFailed) as err:
            make_programme(session, clock, manager, shop, **overrides)
        assert err.value.field == field, overrides


def test_merging_members_folds_their_cards_and_keeps_the_books(
    session: Session, clock: FixedClock, world: World, manager: Principal, shop: Shop
) -> None:
    make_programme(session, clock, manager, shop, stamps_needed=5)
    keep = make_member(session, clock, world.store_a)
    dup = make_member(session, clock, world.store_a)
    _buy(session, clock, world, keep, shop, 3)
    dup_sale, _ = _buy(session, clock, world, dup, shop, 4)
    owner = auth.principal_for_user(world.owner)
    members.merge_members(session, clock=clock, actor=owner, survivor_id=keep.id,
                          duplicate_id=dup.id)
    view = _card(session, clock, keep)
    assert (view.card.stamps, len(view.rewards)) == (2, 1)  # 3 + 4 = 7: one reward, 2 left
    # a refund of the duplicate's sale takes the stamps from the survivor's card
    cards.reverse_stamps_for_sale(session, clock=clock, member_id=keep.id, sale_id=dup_sale,
                                  lines_refunded=coffees(shop, 4))
    view = _card(session, clock, keep)
    assert (view.card.stamps, len(view.rewards), view.card.debt) == (3, 0, 0)
    assert cards.verify(session) == []
