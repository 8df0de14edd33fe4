"""Segment rules: parsed with errors that name the field, and compiled to one SQL query whose
answer is the same as a plain Python evaluation of the rules (SQLite and PostgreSQL)."""

from __future__ import annotations

import random
import uuid
from datetime import date, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import event
from sqlalchemy.orm import Session

from patron.campaigns import segments
from patron.core.clock import FixedClock
from patron.core.db import Database
from patron.core.errors import ValidationFailed
from tests.campaigns import reference
from tests.campaigns.support import (
    Catalogue,
    make_catalogue,
    random_members,
    record_snapshot,
    rules,
)
from tests.factories import World

TZ = "Asia/Shanghai"


def _scope(clock: FixedClock, as_of: date | None) -> segments.Scope:
    return segments.Scope(now=clock.now(), tz=TZ, scores_as_of=as_of)


def _where(clock: FixedClock, as_of: date | None) -> reference.Where:
    return reference.Where(now=clock.now(), tz=TZ, scored=as_of is not None)


def _sql(session: Session, rule: dict[str, Any], scope: segments.Scope) -> set[uuid.UUID]:
    return set(session.scalars(segments.members_query(segments.parse_rules(rule), scope)))


@pytest.fixture
def population(db: Database, clock: FixedClock, world: World
               ) -> tuple[Catalogue, list[reference.MemberFact], date]:
    """80 random members with purchases, coupons, balances, complaints and scores."""
    as_of = clock.now().date() - timedelta(days=1)
    with db.write() as s:
        cat = make_catalogue(s, clock.now(), [world.store_a.id, world.store_b.id])
        facts = random_members(s, cat, random.Random(20261123), 80, clock.now(), as_of)
        record_snapshot(s, as_of, clock.now())
    return cat, facts, as_of


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_compiled_rules_select_the_members_python_selects(
        db: Database, clock: FixedClock,
        population: tuple[Catalogue, list[reference.MemberFact], date], data: st.DataObject
) -> None:
    cat, facts, as_of = population
    rule = data.draw(rules(cat, clock.now().date()), label="rules")
    with db.read() as s:
        found = _sql(s, rule, _scope(clock, as_of))
        assert found == reference.matching(rule, facts, _where(clock, as_of))
        assert sorted(segments.member_ids(s, segments.parse_rules(rule),
                                          _scope(clock, as_of))) == sorted(found)


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32), size=st.integers(0, 10), scored=st.booleans(),
       data=st.data())
def test_rules_agree_on_small_random_populations(
        db: Database, clock: FixedClock, world: World, seed: int, size: int, scored: bool,
        data: st.DataObject) -> None:
    """Each example writes its own members in a transaction that is rolled back."""
    as_of = clock.now().date() if scored else None
    with db.write() as s:
        try:
            cat = make_catalogue(s, clock.now(), [world.store_a.id, world.store_b.id])
            facts = random_members(s, cat, random.Random(seed), size, clock.now(), as_of)
            for _ in range(5):
                rule = data.draw(rules(cat, clock.now().date()), label="rules")
                assert _sql(s, rule, _scope(clock, as_of)) == reference.matching(
                    rule, facts, _where(clock, as_of)), rule
        finally:
            s.rollback()


def test_a_segment_is_one_statement(db: Database, clock: FixedClock,
                                    population: tuple[Catalogue, list[reference.MemberFact],
                                                      date]) -> None:
    cat, _facts, as_of = population
    rule = {"op": "all", "children": [
        {"field": "tier", "value": ["gold"]}, {"field": "sms_consent", "value": True},
        {"field": "last_purchase", "op": "not_within_days", "value": 30},
        {"field": "bought", "of": "category", "value": [str(cat.categories[0])], "days": 60},
        {"field": "p_alive", "op": "<", "value": 0.5},
        {"op": "any", "children": [{"field": "spend", "op": ">=", "value": 1000, "days": 90},
                                   {"field": "points_balance", "op": "<", "value": 100}]}]}
    statements: list[str] = []
    with db.read() as s:
        engine = s.get_bind()

        def count(*args: Any) -> None:
            if not str(args[2]).lstrip().upper().startswith("BEGIN"):  # SQLite's own
                statements.append(str(args[2]))

        event.listen(engine, "before_cursor_execute", count)
        try:
            s.scalar(segments.count_query(segments.parse_rules(rule), _scope(clock, as_of)))
        finally:
            event.remove(engine, "before_cursor_execute", count)
    assert len(statements) == 1
    assert statements[0].lstrip().upper().startswith("SELECT COUNT")


def test_without_a_snapshot_score_conditions_match_nobody(
        db: Database, clock: FixedClock, world: World) -> None:
    with db.write() as s:
        cat = make_catalogue(s, clock.now(), [world.store_a.id])
        facts = random_members(s, cat, random.Random(3), 12, clock.now(), None)
    active = {f.id for f in facts if f.status == "active"}
    with db.read() as s:
        assert _sql(s, {"field": "rfm_segment", "value": ["champions"]},
                    _scope(clock, None)) == set()
        assert _sql(s, {"field": "p_alive", "op": "<", "value": 0.5, "negate": True},
                    _scope(clock, None)) == active


# ---------------------------------------------------------------- parsing


def _problems(rule: object) -> dict[str, str]:
    with pytest.raises(ValidationFailed) as refused:
        segments.parse_rules(rule)
    return {p.field: p.message for p in refused.value.problems}


def test_errors_name_the_field_path_and_all_are_reported() -> None:
    problems = _problems({"op": "all", "children": [
        {"field": "tier", "value": ["gold"]},
        {"field": "p_alive", "op": "<", "value": 1.5},
        {"field": "joined", "op": "within_days", "value": "2026-01-01"},
        {"field": "shoe_size", "value": 42},
        {"op": "any", "children": [{"field": "spend", "op": "~", "value": 1}]},
        {"field": "tags", "value": ["vip"], "colour": "red"}]})
    assert set(problems) == {"rules.children.1.value", "rules.children.2.value",
                             "rules.children.3.field", "rules.children.4.children.0.op",
                             "rules.children.5.colour"}
    assert "shoe_size" in problems["rules.children.3.field"]
    assert "within_days" in problems["rules.children.2.value"]


@pytest.mark.parametrize(("rule", "field"), [
    ([], "rules"),
    ({"op": "all", "children": []}, "rules.children"),
    ({"op": "both", "children": [{"field": "sms_consent"}]}, "rules.op"),
    ({"field": "last_purchase", "op": "ever", "value": 3}, "rules.value"),
    ({"field": "last_purchase", "op": "before"}, "rules.value"),
    ({"field": "bought", "of": "brand", "value": [str(uuid.uuid4())]}, "rules.of"),
    ({"field": "home_store", "value": ["not-a-uuid"]}, "rules.value.0"),
    ({"field": "birthday_month", "value": [13]}, "rules.value"),
    ({"field": "rfm_segment", "value": ["whales"]}, "rules.value.0"),
    ({"field": "purchase_count", "op": ">=", "value": 1, "days": 0}, "rules.days"),
])
def test_bad_rules_are_refused_naming_the_field(rule: object, field: str) -> None:
    assert field in _problems(rule)


def test_depth_and_size_are_bounded() -> None:
    deep: dict[str, Any] = {"field": "sms_consent"}
    for _ in range(segments.MAX_DEPTH + 1):
        deep = {"op": "all", "children": [deep]}
    assert any("deep" in m for m in _problems(deep).values())
    wide = {"op": "any", "children": [{"op": "all", "children": [{"field": "sms_consent"}] * 40}
                                      for _ in range(3)]}
    assert any("at most" in m for m in _problems(wide).values())


def test_rules_round_trip_through_their_json() -> None:
    rule = {"op": "any", "negate": True, "children": [
        {"field": "tags", "op": "all", "value": ["  new   mum ", "vip", "vip"]},
        {"field": "joined", "op": "before", "value": "2026-01-01"},
        {"field": "next_purchase_on", "value": 7, "overdue_days": 3}]}
    parsed = segments.parse_rules(rule)
    dumped = segments.dump_rules(parsed)
    assert dumped["children"][0]["value"] == ["new mum", "vip"]
    assert segments.parse_rules(dumped) == parsed


def test_home_store_restriction_is_read_from_the_top_level() -> None:
    a, b = uuid.uuid4(), uuid.uuid4()
    store = {"field": "home_store", "value": [str(a), str(b)]}
    assert segments.home_stores(segments.parse_rules(store)) == {a, b}
    assert segments.home_stores(segments.parse_rules(
        {"op": "all", "children": [store, {"field": "home_store", "value": [str(a)]},
                                   {"field": "sms_consent"}]})) == {a}
    for loose in ({"op": "any", "children": [store, {"field": "sms_consent"}]},
                  {"op": "all", "children": [{**store, "negate": True}]},
                  {"op": "all", "negate": True, "children": [store]},
                  {"op": "all", "children": [{"op": "all", "children": [store]}]}):
        assert segments.home_stores(segments.parse_rules(loose)) is None
