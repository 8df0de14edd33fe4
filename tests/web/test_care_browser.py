"""The care pages in a real browser: a rule's switch sticks after a reload, the survey
charts are drawn, a dead letter is re-sent in place; no script errors; screenshots."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy.orm import Session

from patron.care import service as care
from patron.core.clock import FixedClock, local_today
from patron.core.db import Database
from patron.feedback import service as feedback
from patron.feedback.enums import ComplaintCategory, ComplaintChannel, Severity, SurveyOccasion
from patron.feedback.schemas import ComplaintCreate
from patron.members.models import Store
from patron.messaging import service as messaging
from patron.messaging.models import Message
from tests.factories import PASSWORD, World, make_member
from tests.web.pages_support import Pages, needs_chromium, shot, sign_in


def _message(s: Session, clock: FixedClock, store: Store, member_name: str, *, channel: str,
             template: str, status: str, reason: str | None = None) -> uuid.UUID:
    member = make_member(s, clock, store, name=member_name)
    (message_id,) = messaging.enqueue(s, clock=clock, messages=[messaging.Outgoing(
        dedupe_key=f"browser:{uuid.uuid4()}", channel=channel,
        purpose="transactional" if template == "receipt" else "marketing",
        template=template, language="zh_CN", member_id=member.id, store_id=store.id,
        recipient=member.phone or "" if channel == "sms" else "member@example.com",
        body="…")])
    message = s.get(Message, message_id)
    assert message is not None
    message.status, message.reason = status, reason
    message.attempts = 8 if status == "dead" else (1 if status != "queued" else 0)
    return message_id


def _seed(db: Database, clock: FixedClock, world: World) -> uuid.UUID:
    """A shop's week of care: messages (two dead letters), complaints in every SLA state,
    callbacks, and survey answers over four months. Returns a dead letter's id."""
    with db.write() as s:
        a = world.store_a
        for i, (template, status) in enumerate([
                ("receipt", "delivered"), ("receipt", "sent"), ("birthday", "queued"),
                ("winback", "suppressed"), ("replenishment", "sent"), ("receipt", "queued")]):
            _message(s, clock, a, f"会员{i}", channel="sms" if i % 2 else "email",
                     template=template, status=status,
                     reason="frequency_cap" if status == "suppressed" else None)
        dead = _message(s, clock, a, "张伟", channel="sms", template="birthday",
                        status="dead", reason="aliyun isv.BUSINESS_LIMIT_CONTROL")
        _message(s, clock, a, "Emma Li", channel="email", template="receipt", status="dead",
                 reason="smtp 451 4.7.1 greylisted, try again later")
        # opened 20 h, 5 h and 1 h before now: due soon, breached and on time
        clock.advance(timedelta(hours=-20))
        for severity, category, text, step in (
                (Severity.HIGH, ComplaintCategory.BILLING, "Charged twice for one latte", 15),
                (Severity.CRITICAL, ComplaintCategory.PRODUCT, "Allergic reaction to a cake", 4),
                (Severity.NORMAL, ComplaintCategory.SERVICE, "Music too loud", 1)):
            feedback.open_complaint(s, clock=clock, actor=None, data=ComplaintCreate(
                store_id=a.id, channel=ComplaintChannel.IN_STORE, category=category,
                severity=severity, description=text))
            clock.advance(timedelta(hours=step))
        today = local_today(clock, a.timezone)
        for name, days in (("王芳", 0), ("Lucas Chen", 2)):
            member = make_member(s, clock, a, name=name)
            feedback.create_callback(s, clock=clock, actor=None, member_id=member.id,
                                     due_on=today + timedelta(days=days),
                                     notes="120 days since the last visit")
        clock.advance(timedelta(days=-95))
        for month, answers in enumerate([[(5, 9), (3, 6), (4, 8)], [(5, 10), (2, 4)],
                                         [(4, 9), (5, 10), (3, 7)], [(5, 10), (4, 9)]]):
            for csat, nps in answers:
                member = make_member(s, clock, a)
                invitation = feedback.invite(s, clock=clock, member_id=member.id,
                                             occasion=SurveyOccasion.SALE,
                                             source_ref=uuid.uuid4().hex, store_id=a.id)
                assert invitation is not None
                feedback.answer(s, clock=clock, token=invitation.token, csat=csat, nps=nps,
                                comment="茶很好喝，店员很热情" if nps >= 9 and month == 3
                                else ("Waited 20 minutes" if nps <= 6 else ""))
            clock.advance(timedelta(days=31))
        clock.advance(timedelta(days=-124 + 95))  # back to now
    return dead


@needs_chromium
def test_a_rule_switch_sticks_after_a_reload(live_url: str, pages: Pages, db: Database,
                                             world: World, clock: FixedClock) -> None:
    _seed(db, clock, world)
    pg = pages.open(width=1366, height=900)
    sign_in(pg, live_url, world.owner.username, PASSWORD)
    pg.goto(f"{live_url}/care/rules")
    switch = "#rule-birthday button[role=switch]"
    assert pg.get_attribute(switch, "aria-checked") == "true"
    pg.click(switch)
    pg.wait_for_selector(f"{switch}[aria-checked=false]")
    pg.reload()
    assert pg.get_attribute(switch, "aria-checked") == "false"
    with db.read() as s:
        assert care.rule_config(s, "birthday")["enabled"] is False
    pg.click(switch)  # and back on
    pg.wait_for_selector(f"{switch}[aria-checked=true]")
    pg.fill("#r-birthday-days_before", "2")
    with pg.expect_response(lambda r: r.url.endswith("/care/rules/birthday")
                            and r.request.method == "POST"):
        pg.click("#rule-birthday .care-settings button[type=submit]")
    pg.wait_for_selector("#rule-birthday .care-saved")
    pg.reload()
    assert pg.input_value("#r-birthday-days_before") == "2"
    shot(pg, "care-rules")


@needs_chromium
def test_survey_charts_are_drawn_and_a_dead_letter_is_resent(
    live_url: str, pages: Pages, db: Database, world: World, clock: FixedClock
) -> None:
    dead = _seed(db, clock, world)
    pg = pages.open(width=1366, height=900)
    sign_in(pg, live_url, world.manager_a.username, PASSWORD)
    pg.goto(f"{live_url}/care/surveys")
    pg.wait_for_selector("#nps-trend-chart[data-chart-ready='1']")
    pg.wait_for_selector("#nps-mix-chart[data-chart-ready='1']")
    assert pg.locator("#nps-trend-chart canvas").count() >= 1

    pg.goto(f"{live_url}/care/outbox")
    row = f"#dead-letters #msg-{dead}"
    pg.click(f"{row} button")
    pg.wait_for_selector(f"{row}[data-status=queued]")
    with db.read() as s:
        message = s.get(Message, dead)
        assert message is not None and message.status == "queued"
    pg.reload()
    shot(pg, "care-outbox")

    pg.goto(f"{live_url}/care/complaints")
    assert pg.locator("[data-sla=breached]").count() >= 1
    shot(pg, "complaints")

    zh = pages.open(width=1366, height=900, locale="zh-CN")
    sign_in(zh, live_url, world.manager_a.username, PASSWORD)
    zh.context.add_cookies([{"name": "lang", "value": "zh_CN", "url": live_url}])
    zh.goto(f"{live_url}/care/surveys")
    zh.wait_for_selector("#nps-trend-chart[data-chart-ready='1']")
    assert "净推荐值" in zh.content()
    zh.goto(f"{live_url}/care/callbacks")
    assert zh.locator("[data-column=today] [data-task]").count() == 1
