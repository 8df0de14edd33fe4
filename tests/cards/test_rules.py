"""Pure rules: stamps earned and taken back, pro-rata refunds, codes, PINs."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from patron.cards import rules
from patron.cards.enums import StampBasis

COFFEE = uuid.uuid4()
LATTE, CAKE = uuid.uuid4(), uuid.uuid4()
TARGETS = rules.Targets(frozenset({CAKE}), frozenset({COFFEE}))
NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def test_lines_qualify_by_product_or_by_category() -> None:
    lines = [rules.SoldLine(LATTE, COFFEE, 2), rules.SoldLine(CAKE, uuid.uuid4(), 1),
             rules.SoldLine(uuid.uuid4(), uuid.uuid4(), 5), rules.SoldLine(uuid.uuid4(), None, 1)]
    assert rules.qualifying_items(lines, TARGETS) == 3
    assert rules.stamps_for(StampBasis.ITEM, 3) == 3
    assert rules.stamps_for(StampBasis.VISIT, 3) == 1
    assert rules.stamps_for(StampBasis.VISIT, 0) == 0


def test_item_stamps_come_back_per_item_and_a_visit_stamp_with_the_last_item() -> None:
    assert rules.stamps_to_remove(StampBasis.ITEM, items=3, stamps=3, items_refunded=2) == 2
    assert rules.stamps_to_remove(StampBasis.ITEM, items=3, stamps=3, items_refunded=9) == 3
    assert rules.stamps_to_remove(StampBasis.VISIT, items=3, stamps=1, items_refunded=2) == 0
    assert rules.stamps_to_remove(StampBasis.VISIT, items=3, stamps=1, items_refunded=3) == 1


def test_removal_takes_the_card_first_then_unused_rewards_then_records_debt() -> None:
    assert rules.plan_removal(remove=2, stamps=5, unused_rewards=1, needed=9) == \
        rules.Removal(2, 0, 0, 0)
    # 3 on the card, then one reward is revoked: its 9 stamps come back less the 1 still due
    assert rules.plan_removal(remove=4, stamps=3, unused_rewards=2, needed=9) == \
        rules.Removal(3, 1, 1, 0)
    # no unused reward: the rest is debt
    assert rules.plan_removal(remove=4, stamps=3, unused_rewards=0, needed=9) == \
        rules.Removal(3, 0, 0, 1)
    assert rules.plan_removal(remove=20, stamps=0, unused_rewards=1, needed=9) == \
        rules.Removal(0, 1, 9, 11)


@given(remove=st.integers(0, 60), stamps=st.integers(0, 20), unused=st.integers(0, 5),
       needed=st.integers(1, 12))
def test_removal_never_goes_below_zero_and_accounts_for_every_stamp(
        remove: int, stamps: int, unused: int, needed: int) -> None:
    plan = rules.plan_removal(remove=remove, stamps=stamps, unused_rewards=unused,
                              needed=needed)
    assert plan.from_card + plan.from_rewards + plan.debt == remove
    assert 0 <= plan.from_card <= stamps
    assert 0 <= plan.rewards_revoked <= unused
    assert 0 <= plan.from_rewards <= plan.rewards_revoked * needed
    # a reward is revoked only when needed, and never one more than needed
    assert plan.rewards_revoked * needed - plan.from_rewards < needed or plan.rewards_revoked == 0
    assert plan.debt == 0 or plan.rewards_revoked == unused


def test_a_full_card_makes_as_many_rewards_as_it_fills() -> None:
    assert rules.rewards_from(8, 9) == (0, 8)
    assert rules.rewards_from(19, 9) == (2, 1)


def test_free_item_is_the_cheapest_qualifying_item() -> None:
    lines = [rules.PricedLine(LATTE, COFFEE, 1, 3_200), rules.PricedLine(CAKE, None, 1, 2_800),
             rules.PricedLine(uuid.uuid4(), None, 1, 100)]
    assert rules.free_item(lines, TARGETS) == (1, 2_800)
    assert rules.free_item(lines[2:], TARGETS) is None


def test_package_refund_is_pro_rata_rounded_half_up() -> None:
    assert rules.package_refund_minor(price_minor=80_000, visits_total=10, visits_left=7) \
        == 56_000
    assert rules.package_refund_minor(price_minor=10_000, visits_total=3, visits_left=1) \
        == 3_333  # 3333.33
    assert rules.package_refund_minor(price_minor=10_000, visits_total=3, visits_left=2) \
        == 6_667  # 6666.67
    assert rules.package_refund_minor(price_minor=999, visits_total=10, visits_left=10) == 999
    with pytest.raises(ValueError, match="left"):
        rules.package_refund_minor(price_minor=1, visits_total=2, visits_left=3)


def test_gift_card_codes_are_well_formed_and_catch_typos() -> None:
    code = rules.new_gift_card_code()
    assert len(code) == 16
    assert rules.is_well_formed(code)
    assert rules.normalise(rules.format_code(code).lower()) == code
    for i in range(len(code)):
        typo = code[:i] + ("2" if code[i] != "2" else "3") + code[i + 1:]
        assert not rules.is_well_formed(typo)
    assert len({rules.new_gift_card_code() for _ in range(1000)}) == 1000


def test_pins_are_hashed_with_the_code_and_compared_after_normalising() -> None:
    code, pin = rules.new_gift_card_code(), rules.new_pin()
    stored = rules.hash_pin(code, pin)
    assert pin not in stored
    assert rules.pin_matches(code, pin.lower(), stored)
    assert not rules.pin_matches(code, "WRONGPIN", stored)
    assert rules.hash_pin(rules.new_gift_card_code(), pin) != stored


def test_the_fifth_wrong_pin_locks_for_fifteen_minutes() -> None:
    failures, locked = 0, None
    for _ in range(4):
        failures, locked = rules.after_wrong_pin(failures, NOW)
        assert locked is None
    failures, locked = rules.after_wrong_pin(failures, NOW)
    assert (failures, locked) == (0, NOW + timedelta(minutes=15))
    assert rules.is_locked(locked, NOW + timedelta(minutes=14))
    assert not rules.is_locked(locked, NOW + timedelta(minutes=15))
