"""The pages a message links to: unsubscribe (asked first; RFC 8058 one-click for mail
clients) and the CSAT/NPS survey with its thank-you, "already answered" and "closed" states;
both answered in a phone's Chromium."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from playwright.sync_api import expect
from sqlalchemy import select

from patron.core.clock import FixedClock
from patron.core.db import Database
from patron.core.settings import Settings
from patron.feedback import service as feedback
from patron.feedback.enums import SurveyOccasion
from patron.feedback.models import SurveyResponse
from patron.members.models import ConsentEvent, Member
from patron.messaging.service import unsubscribe_token
from patron.web import i18n
from tests.factories import World, make_member
from tests.web.helpers import csrf_of
from tests.web.pages_support import (
    Pages,
    browser,  # noqa: F401 - fixture
    live_url,  # noqa: F401 - fixture
    needs_chromium,
    pages,  # noqa: F401 - fixture
    shot,
)


@pytest.fixture
def member(db: Database, clock: FixedClock, world: World) -> Member:
    with db.write() as s:
        return make_member(s, clock, world.store_a, name="韩梅梅", sms_consent=True,
                           email="hmm@example.com", email_consent=True)


def _token(client: TestClient, member: Member, channel: str = "email") -> str:
    secret = client.app.state.ctx.settings.secret_key.get_secret_value()  # type: ignore[attr-defined]
    return unsubscribe_token(secret, member.id, channel)


def _consent(db: Database, member: Member) -> tuple[bool, bool]:
    with db.read() as s:
        row = s.get(Member, member.id)
        assert row is not None
        return row.sms_consent, row.email_consent


def _invite(db: Database, clock: FixedClock, member: Member, ref: str = "S-1") -> str:
    with db.write() as s:
        invitation = feedback.invite(s, clock=clock, member_id=member.id,
                                     occasion=SurveyOccasion.SALE, source_ref=ref)
        assert invitation is not None
        return invitation.token


# ---------------------------------------------------------------- unsubscribe


def test_opening_the_unsubscribe_link_only_asks(client: TestClient, world: World,
                                                member: Member, db: Database) -> None:
    r = client.get(f"/u/{_token(client, member)}")
    assert r.status_code == 200 and "Unsubscribe from offers?" in r.text and "by e-mail" in r.text
    assert _consent(db, member) == (True, True)  # a mail scanner's GET changes nothing


def test_the_confirmation_unsubscribes_one_channel_with_evidence(
        client: TestClient, world: World, member: Member, db: Database) -> None:
    token = _token(client, member, "sms")
    page = client.get(f"/u/{token}")
    assert client.post(f"/u/{token}", data={}).status_code == 403  # no CSRF token, no click
    r = client.post(f"/u/{token}", data={"csrf_token": csrf_of(page.text)})
    assert r.status_code == 200 and "You are unsubscribed" in r.text and "by SMS" in r.text
    assert 'href="/m/' in r.text  # to manage everything else
    assert _consent(db, member) == (False, True)
    with db.read() as s:
        event = s.scalar(select(ConsentEvent).where(ConsentEvent.member_id == member.id,
                                                    ConsentEvent.granted.is_(False)))
        assert event is not None and (event.channel, event.source) == ("sms", "link")
    assert "You are unsubscribed" in client.get(f"/u/{token}").text


def test_one_click_unsubscribe_needs_no_page(client: TestClient, world: World, member: Member,
                                             db: Database) -> None:
    """RFC 8058: the mail client POSTs ``List-Unsubscribe=One-Click`` to the link itself."""
    fresh = TestClient(client.app)  # no cookies at all, as a mail provider's server
    r = fresh.post(f"/u/{_token(client, member)}", data={"List-Unsubscribe": "One-Click"})
    assert r.status_code == 200
    assert _consent(db, member) == (True, False)
    with db.read() as s:
        event = s.scalar(select(ConsentEvent).where(ConsentEvent.note == "one-click unsubscribe"))
        assert event is not None and event.channel == "email"


def test_a_forged_unsubscribe_link_changes_nothing(client: TestClient, world: World,
                                                   member: Member, db: Database,
                                                   clock: FixedClock) -> None:
    token = _token(client, member)
    with db.write() as s:
        other = make_member(s, clock, world.store_a)
    forged = f"{other.id.hex}.email.{token.rsplit('.', 1)[1]}"
    for bad in (forged, token[:-2] + "zz", "nonsense", f"{member.id.hex}.fax.{'0' * 32}"):
        assert client.get(f"/u/{bad}").status_code == 404
        r = client.post(f"/u/{bad}", data={"List-Unsubscribe": "One-Click"})
        assert r.status_code == 404 and "not valid" in r.text
    assert _consent(db, member) == (True, True)


def test_the_unsubscribe_page_speaks_chinese(client: TestClient, world: World,
                                             member: Member) -> None:
    client.cookies.set(i18n.LANG_COOKIE, "zh_CN")
    html = client.get(f"/u/{_token(client, member, 'sms')}").text
    assert '<html lang="zh-CN">' in html and "退订" in html and "短信" in html


# ---------------------------------------------------------------- surveys


def test_a_survey_is_answered_once(client: TestClient, world: World, member: Member,
                                   db: Database, clock: FixedClock) -> None:
    token = _invite(db, clock, member)
    page = client.get(f"/s/{token}")
    assert page.status_code == 200 and "How was your visit?" in page.text and "Store A" in page.text
    assert page.text.count('name="csat"') == 5 and page.text.count('name="nps"') == 11
    csrf = csrf_of(page.text)
    r = client.post(f"/s/{token}", data={"csrf_token": csrf, "csat": "5", "nps": "9",
                                         "comment": "  The latte was perfect.  "},
                    follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"/s/{token}?thanks=1"
    assert "Thank you!" in client.get(r.headers["location"]).text
    with db.read() as s:
        answer = s.scalar(select(SurveyResponse))
        assert answer is not None and (answer.csat, answer.nps) == (5, 9)
        assert answer.comment == "The latte was perfect."
    assert "You have already answered" in client.get(f"/s/{token}").text
    again = client.post(f"/s/{token}", data={"csrf_token": csrf, "csat": "1"})
    assert again.status_code == 409 and "You have already answered" in again.text


def test_a_survey_needs_an_answer_and_a_token(client: TestClient, world: World,
                                              member: Member, db: Database,
                                              clock: FixedClock) -> None:
    token = _invite(db, clock, member)
    csrf = csrf_of(client.get(f"/s/{token}").text)
    r = client.post(f"/s/{token}", data={"csrf_token": csrf, "comment": "hm"})
    assert r.status_code == 422 and "Answer at least one question" in r.text
    assert 'name="comment"' in r.text and ">hm</textarea>" in r.text  # kept as typed
    r = client.post(f"/s/{token}", data={"csrf_token": csrf, "csat": "9"})
    assert r.status_code == 422 and 'id="e-csat"' in r.text
    assert client.post(f"/s/{token}", data={"csat": "4"}).status_code == 403
    assert client.get("/s/no-such-survey").status_code == 404
    with db.read() as s:
        assert s.scalar(select(SurveyResponse)) is None


def test_a_closed_survey_says_so(client: TestClient, world: World, member: Member,
                                 db: Database, clock: FixedClock) -> None:
    token = _invite(db, clock, member)
    csrf = csrf_of(client.get(f"/s/{token}").text)
    clock.advance(timedelta(days=15))
    assert "This survey has closed" in client.get(f"/s/{token}").text
    r = client.post(f"/s/{token}", data={"csrf_token": csrf, "csat": "4"})
    assert r.status_code == 409 and "This survey has closed" in r.text


def test_the_survey_speaks_chinese(client: TestClient, world: World, member: Member,
                                   db: Database, clock: FixedClock) -> None:
    token = _invite(db, clock, member)
    client.cookies.set(i18n.LANG_COOKIE, "zh_CN")
    html = client.get(f"/s/{token}").text
    assert "本次到店体验如何" in html and "非常满意" in html


# ---------------------------------------------------------------- in the browser


@needs_chromium
@pytest.mark.browser
def test_a_member_answers_the_survey_and_unsubscribes_on_a_phone(
        pages: Pages, live_url: str, world: World, member: Member, db: Database,  # noqa: F811
        clock: FixedClock, settings: Settings) -> None:
    token = _invite(db, clock, member)
    pg = pages.open(width=390, height=844, mobile=True)
    pg.goto(f"{live_url}/s/{token}")
    pg.click(".csat .scale-option:nth-child(5)")
    pg.click(".nps .scale-option:nth-child(10)")
    pg.fill("#f-comment", "The latte was perfect.")
    shot(pg, "survey")
    pg.click("form[action^='/s/'] button[type=submit]")
    pg.wait_for_url(re.compile(r".*\?thanks=1$"))
    expect(pg.locator("h1")).to_have_text("Thank you!")
    with db.read() as s:
        answer = s.scalar(select(SurveyResponse))
        assert answer is not None and (answer.csat, answer.nps) == (5, 9)
    zh = pages.open(width=390, height=844, mobile=True, locale="zh-CN")
    zh.context.add_cookies([{"name": i18n.LANG_COOKIE, "value": "zh_CN", "url": live_url}])
    link_secret = settings.secret_key.get_secret_value()  # as the worker signs the links
    zh.goto(f"{live_url}/u/{unsubscribe_token(link_secret, member.id, 'sms')}")
    expect(zh.locator("h1")).to_contain_text("退订")
    shot(zh, "unsubscribe")
    zh.click("form[action^='/u/'] button[type=submit]")
    expect(zh.locator("h1")).to_contain_text("已退订")
    assert _consent(db, member) == (False, True)
