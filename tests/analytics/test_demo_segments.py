"""Scores on the demo chain: members who really left land in the lapsing segments.

The demo draws every member's BG/NBD dropout probability p and then simulates their
purchases (``patron.demo.purchases``); it does not store p. Two kinds of truth are used:

* from the data: members with at least three purchase days and none in the last 180 days
  have lapsed by any reading;
* from the generator: p itself, recovered by replaying the generator's member and profile
  streams from the seed (the same functions the build calls), matched on card number.
  Members who drop out easily should look less alive to the fitted model than those who
  do not, though nobody told the model p.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from sqlalchemy import select

from patron.analytics import service
from patron.analytics.tables import MemberScore
from patron.core import migrate
from patron.core.clock import FixedClock
from patron.core.db import Database
from patron.demo import DemoConfig, build_demo, wipe
from patron.demo.build import STORES, TIMEZONE, _streams
from patron.demo.members import StoreRef, add_shopping_profiles, generate_members
from patron.demo.seasons import build_seasons
from patron.members.models import Member

CONFIG = DemoConfig(end_on=date(2026, 11, 23), seed=11, members=1500, years=1.5)
AS_OF = date(2026, 11, 22)  # the demo's history stops at the start of end_on
LAPSING = {"about_to_sleep", "at_risk", "cant_lose", "hibernating", "lost"}


@dataclass
class Scored:
    purchases: np.ndarray
    recency: np.ndarray
    segment: np.ndarray
    stage: np.ndarray
    p_alive: np.ndarray
    expected: np.ndarray  # (30, 90, 365) per member
    clv: np.ndarray
    dropout: np.ndarray  # the generator's p


def _true_dropout(config: DemoConfig) -> dict[str, float]:
    """Card number → p, replaying the generator's member and profile streams."""
    streams = _streams(config.seed, 6)
    stores = [StoreRef(index=i, id=uuid.uuid4(), code=spec.code, tz=ZoneInfo(TIMEZONE),
                       share=spec.share, open_day=int(spec.opens_at * config.days),
                       staff_ids=(uuid.uuid4(), uuid.uuid4()))
              for i, spec in enumerate(STORES)]
    member_rng, member_rnd = streams[1]
    drafts = generate_members(n=config.members, seasons=build_seasons(config.start_on,
                                                                      config.days),
                              stores=stores, rng=member_rng, rnd=member_rnd,
                              end_on=config.end_on)
    profile_rng, profile_rnd = streams[2]
    add_shopping_profiles(drafts, products=[], rng=profile_rng, rnd=profile_rnd)
    return {d.card_no: d.p for d in drafts}


@pytest.fixture(scope="module")
def scored(database_url: str) -> Iterator[Scored]:
    database = Database.from_url(database_url)
    migrate.upgrade(database.engine)
    try:
        with database.write() as s:
            build_demo(s, config=CONFIG)
        service.refresh(database, FixedClock(datetime(2026, 11, 23, 2, tzinfo=UTC)),
                        timezone=TIMEZONE, as_of=AS_OF)
        with database.read() as s:
            cards = dict(s.execute(select(Member.id, Member.card_no)).all())
            rows = list(s.execute(select(
                MemberScore.member_id, MemberScore.purchases, MemberScore.recency_days,
                MemberScore.rfm_segment, MemberScore.lifecycle_stage, MemberScore.p_alive,
                MemberScore.expected_30, MemberScore.expected_90, MemberScore.expected_365,
                MemberScore.clv_minor)))
        truth = _true_dropout(CONFIG)
        yield Scored(
            purchases=np.array([r[1] for r in rows]),
            recency=np.array([r[2] for r in rows], dtype=float),
            segment=np.array([r[3] for r in rows], dtype=object),
            stage=np.array([r[4] for r in rows], dtype=object),
            p_alive=np.array([r[5] for r in rows], dtype=float),
            expected=np.array([r[6:9] for r in rows], dtype=float),
            clv=np.array([r[9] for r in rows], dtype=float),
            dropout=np.array([truth[cards[r[0]]] for r in rows]),
        )
    finally:
        with database.write() as s:
            wipe(s)
        database.dispose()


def test_every_member_is_scored_with_predictions(scored: Scored) -> None:
    assert len(scored.purchases) == CONFIG.members  # every demo member bought at sign-up
    assert (scored.purchases >= 1).all()
    assert np.isfinite(scored.p_alive).all() and np.isfinite(scored.clv).all()
    assert ((scored.p_alive >= 0) & (scored.p_alive <= 1)).all() and (scored.clv >= 0).all()
    e = scored.expected
    assert ((e[:, 0] <= e[:, 1]) & (e[:, 1] <= e[:, 2])).all()


def test_members_who_stopped_buying_land_in_the_lapsing_segments(scored: Scored) -> None:
    repeat = scored.purchases >= 3
    lapsed = repeat & (scored.recency > 180)
    active = repeat & (scored.recency <= 30)
    assert lapsed.sum() >= 50 and active.sum() >= 100
    assert np.isin(scored.segment[lapsed], list(LAPSING)).mean() >= 0.9
    assert np.isin(scored.segment[active], list(LAPSING)).mean() <= 0.1
    assert set(scored.stage[lapsed]) <= {"lapsed", "lost"}
    assert scored.p_alive[lapsed].mean() < 0.5 * scored.p_alive[active].mean()


def test_members_drawn_with_a_high_dropout_look_less_alive(scored: Scored) -> None:
    """Among repeat buyers, the quarter with the highest true p against the lowest."""
    repeat = scored.purchases >= 3
    p = scored.dropout[repeat]
    low, high = p <= np.quantile(p, 0.25), p >= np.quantile(p, 0.75)
    alive = scored.p_alive[repeat]
    lapsing = np.isin(scored.segment[repeat], list(LAPSING))
    assert alive[high].mean() < alive[low].mean() - 0.2
    assert lapsing[high].mean() > lapsing[low].mean() + 0.2
    gone = np.isin(scored.stage[repeat], ["lapsed", "lost"])
    assert gone[high].mean() > gone[low].mean()
