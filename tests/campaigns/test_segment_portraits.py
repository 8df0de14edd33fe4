"""Segment conditions on portraits: "portrait is" and "has inferred tag" select exactly the
members whose profile in the scores' snapshot says so, alone, negated and combined with
other score conditions (SQLite and PostgreSQL)."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Any

import pytest
from sqlalchemy import select

from patron.analytics import service, tags
from patron.analytics.portrait_tables import MemberProfile
from patron.analytics.portraits import PortraitConfig
from patron.analytics.tables import MemberScore
from patron.campaigns import segments
from patron.core.clock import FixedClock
from patron.core.db import Database
from patron.core.errors import ValidationFailed
from patron.members.models import Member
from tests.analytics.portrait_support import Seeded, seed_database
from tests.factories import World

DAY = date(2026, 11, 22)
TZ = "Asia/Shanghai"


@pytest.fixture
def profiled(db: Database, world: World, clock: FixedClock) -> Seeded:
    seeded = seed_database(db, world.store_a.id, world.store_b.id, DAY)
    service.refresh(db, clock, timezone=TZ, as_of=DAY,
                    portrait_config=PortraitConfig(min_members=30))
    return seeded


def _scope(clock: FixedClock, as_of: date | None = DAY) -> segments.Scope:
    return segments.Scope(now=clock.now(), tz=TZ, scores_as_of=as_of)


def _match(db: Database, rule: dict[str, Any], scope: segments.Scope) -> set[uuid.UUID]:
    with db.read() as s:
        parsed = segments.parse_rules(rule)
        found = set(s.scalars(segments.members_query(parsed, scope)))
        count = s.scalar(segments.count_query(parsed, scope))
        assert count == len(found)
        return found


def _profiles(db: Database) -> dict[uuid.UUID, MemberProfile]:
    with db.read() as s:
        rows = list(s.scalars(select(MemberProfile).where(MemberProfile.as_of == DAY)))
        s.expunge_all()
    return {row.member_id: row for row in rows}


def _active(db: Database) -> set[uuid.UUID]:
    with db.read() as s:
        return set(s.scalars(select(Member.id).where(Member.status == "active")))


def test_portrait_is_selects_that_portraits_members(db: Database, clock: FixedClock,
                                                    profiled: Seeded) -> None:
    rows = _profiles(db)
    baby_code = rows[profiled.weekend_baby[0]].portrait_code
    assert baby_code is not None
    expected = {m for m, r in rows.items() if r.portrait_code == baby_code}
    assert _match(db, {"field": "portrait", "value": [baby_code]}, _scope(clock)) == expected
    assert set(profiled.weekend_baby) <= expected
    codes = {r.portrait_code for r in rows.values() if r.portrait_code}
    everyone = _match(db, {"field": "portrait", "value": sorted(codes)}, _scope(clock))
    assert everyone == {m for m, r in rows.items() if r.portrait_code}
    assert profiled.never not in everyone  # no purchase: no portrait
    negated = _match(db, {"field": "portrait", "value": [baby_code], "negate": True},
                     _scope(clock))
    assert negated == _active(db) - expected
    assert _match(db, {"field": "portrait", "value": ["P999"]}, _scope(clock)) == set()


def test_has_inferred_tag_any_and_all(db: Database, clock: FixedClock,
                                      profiled: Seeded) -> None:
    rows = _profiles(db)

    def having(*codes: str, every: bool) -> set[uuid.UUID]:
        test = all if every else any
        return {m for m, r in rows.items() if test(c in tags.decode(r.tag_bits) for c in codes)}

    family = having("family", every=False)
    assert set(profiled.weekend_baby) <= family
    assert _match(db, {"field": "inferred_tags", "value": ["family"]}, _scope(clock)) == family
    pair = ["family", "message_responsive"]
    either = _match(db, {"field": "inferred_tags", "op": "any", "value": pair}, _scope(clock))
    both = _match(db, {"field": "inferred_tags", "op": "all", "value": pair}, _scope(clock))
    assert either == having(*pair, every=False) and profiled.responsive in either
    assert both == having(*pair, every=True) == set()
    hunters = _match(db, {"field": "inferred_tags", "value": ["discount_hunter"]},
                     _scope(clock))
    assert hunters == set(profiled.deals)


def test_combined_with_other_score_conditions_in_one_pass(db: Database, clock: FixedClock,
                                                          profiled: Seeded) -> None:
    rows = _profiles(db)
    code = rows[profiled.evening_coffee[0]].portrait_code
    with db.read() as s:
        alive = {m for m, p in s.execute(select(MemberScore.member_id, MemberScore.p_alive)
                                         .where(MemberScore.as_of == DAY))
                 if p is not None and p >= 0.5}
    rule = {"op": "all", "children": [
        {"field": "portrait", "value": [code]},
        {"field": "inferred_tags", "value": ["evening_shopper"]},
        {"field": "p_alive", "op": ">=", "value": 0.5}]}
    expected = {m for m, r in rows.items() if r.portrait_code == code
                and "evening_shopper" in tags.decode(r.tag_bits)} & alive
    assert expected and _match(db, rule, _scope(clock)) == expected
    either = {"op": "any", "children": [
        {"field": "portrait", "value": [code]},
        {"field": "inferred_tags", "value": ["discount_hunter"]}]}
    assert _match(db, either, _scope(clock)) == {
        m for m, r in rows.items() if r.portrait_code == code} | set(profiled.deals)


def test_without_a_snapshot_nobody_matches(db: Database, clock: FixedClock,
                                           profiled: Seeded) -> None:
    for rule in ({"field": "portrait", "value": ["P1"]},
                 {"field": "inferred_tags", "value": ["family"]}):
        assert _match(db, rule, _scope(clock, None)) == set()


def test_bad_values_are_refused_naming_the_field() -> None:
    with pytest.raises(ValidationFailed) as bad_tag:
        segments.parse_rules({"op": "all", "children": [
            {"field": "inferred_tags", "value": ["vip"]}]})
    assert bad_tag.value.field.startswith("rules.children.0.value")
    with pytest.raises(ValidationFailed) as bad_code:
        segments.parse_rules({"field": "portrait", "value": ["cluster 3"]})
    assert bad_code.value.field.startswith("rules.value")
    with pytest.raises(ValidationFailed):
        segments.parse_rules({"field": "portrait", "value": []})
    fields = {f["field"]: f for f in segments.describe_fields()}
    assert fields["portrait"]["kind"] == fields["inferred_tags"]["kind"] == "score"
    assert "high_value" in str(fields["inferred_tags"]["schema"])
