"""Next-best products handed to messages (``analytics.picks``) and their use by the senders."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from patron.analytics import picks
from patron.analytics.tables import AnalyticsRun, NextBestProduct
from patron.care import service as care
from patron.catalog.models import Product
from patron.core.clock import FixedClock
from patron.core.db import Database
from patron.core.settings import Settings
from patron.jobs.worker import WorkerContext
from patron.messaging.models import Message
from patron.messaging.templates import TemplateRenderer, WinbackView
from tests.factories import World, make_member, make_product
from tests.support.worker import make_worker


def _run(session: Session, day: date, status: str = "succeeded") -> None:
    session.add(AnalyticsRun(as_of=day, status=status, started_at=datetime(2026, 1, 1,
                                                                           tzinfo=UTC),
                             stages={}, params={}, members=0, error=""))
    session.flush()


def _suggest(session: Session, day: date, member_id: uuid.UUID,
             products: list[Product]) -> None:
    for rank, product in enumerate(products, start=1):
        session.add(NextBestProduct(as_of=day, member_id=member_id, rank=rank,
                                    product_id=product.id, because_id=None,
                                    score=1.0 / rank))
    session.flush()


def test_best_first_from_the_latest_succeeded_snapshot_skipping_withdrawn_products(
        session: Session, clock: FixedClock, world: World) -> None:
    a, b, c, d, old = (make_product(session, price_minor=p) for p in (100, 200, 300, 400, 5))
    member = make_member(session, clock, world.store_a)
    other = make_member(session, clock, world.store_a)
    day = date(2026, 11, 20)
    _run(session, day - timedelta(days=1))
    _suggest(session, day - timedelta(days=1), member.id, [old])
    _run(session, day)
    _run(session, day + timedelta(days=1), status="running")  # not finished: not read
    _suggest(session, day + timedelta(days=1), member.id, [d])
    _suggest(session, day, member.id, [b, a, c, d])
    b.active = False  # withdrawn since the snapshot: the next ones move up
    session.flush()
    stranger = uuid.uuid4()

    found = picks.product_picks(session, [member.id, other.id, stranger, member.id])

    assert list(found) == [member.id, other.id, stranger]
    assert [(p.product_id, p.name, p.price_minor) for p in found[member.id]] == \
        [(a.id, a.name, 100), (c.id, c.name, 300), (d.id, d.name, 400)]
    assert found[other.id] == () and found[stranger] == ()
    assert [p.product_id for p in picks.product_picks(session, [member.id], top_n=1)[
        member.id]] == [a.id]
    with pytest.raises(ValueError, match="top_n"):
        picks.product_picks(session, [member.id], top_n=0)


def test_nothing_to_suggest_before_the_first_refresh(
        session: Session, clock: FixedClock, world: World) -> None:
    member = make_member(session, clock, world.store_a)
    assert picks.product_picks(session, [member.id]) == {member.id: ()}
    assert picks.product_picks(session, []) == {}


@pytest.fixture
def ctx(db: Database, clock: FixedClock, settings: Settings, tmp_path: Path) -> WorkerContext:
    return make_worker(db, clock, settings, smtp_port=None, sms_path=tmp_path / "sms").ctx


WINBACK_SMS = ("{% block subject %}Back{% endblock %}{% block text %}Back{% endblock %}"
               "{% block sms %}Picked for you: "
               "{{ picks | map(attribute='name') | join(', ') or 'nothing' }}{% endblock %}")


def test_a_win_back_message_names_the_members_picks(
        session: Session, clock: FixedClock, ctx: WorkerContext, world: World) -> None:
    """Marketing templates get ``picks`` (the member's next-best products, one read for
    the batch); a member the analytics have nothing for gets an empty list."""
    tea, cup = make_product(session, price_minor=7_800), make_product(session, price_minor=60)
    tea.name, cup.name = "Oolong 250 g", "Tea cup"
    suggested = make_member(session, clock, world.store_a, sms_consent=True)
    plain = make_member(session, clock, world.store_a, sms_consent=True)
    _run(session, date(2026, 11, 20))
    _suggest(session, date(2026, 11, 20), suggested.id, [tea, cup])
    ctx.renderer = TemplateRenderer(overrides={"en/winback": WINBACK_SMS})
    config = care.rule_config(session, "winback", world.store_a.id)
    parts = {"winback": WinbackView(last_visit_on=date(2026, 8, 1), days_away=111)}
    care.serve_due(session, ctx, rule="winback", template="winback", store=world.store_a,
                   config=config, due=[care.Due(suggested.id, "2026-08-01", parts),
                                       care.Due(plain.id, "2026-08-01", parts)])
    bodies = {m.member_id: m.body for m in session.scalars(
        select(Message).where(Message.dedupe_key.like("care:winback:%")))}
    assert "Picked for you: Oolong 250 g, Tea cup" in bodies[suggested.id]
    assert "Picked for you: nothing" in bodies[plain.id]
