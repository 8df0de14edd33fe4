"""The referral landing page: a friend proves their phone with a code, joins with consent,
is recorded as the inviter's referral and lands on their member page; the page leaks
nobody's membership and refuses a swapped phone number."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from patron.core.clock import FixedClock
from patron.core.db import Database
from patron.members.models import ConsentEvent, Member
from patron.offers import service as offers
from patron.web.pages.selfservice import MEMBER_COOKIE
from tests.factories import World, make_member
from tests.web.helpers import csrf_of

FRIEND = "13700000001"


@pytest.fixture
def invite(db: Database, clock: FixedClock, world: World) -> str:
    """The referral code of 韩梅梅, a member of store A."""
    with db.write() as s:
        inviter = make_member(s, clock, world.store_a, name="韩梅梅")
        return offers.referral_code_for(s, clock=clock, member_id=inviter.id).code


def _code_sent_to(db: Database, phone_tail: str) -> str:
    from patron.messaging.models import Message

    with db.read() as s:
        message = s.scalars(select(Message).where(Message.template == "otp",
                                                  Message.recipient.like(f"%{phone_tail}"))
                            .order_by(Message.created_at.desc())).first()
        assert message is not None
        found = re.search(r"\d{6}", message.body)
        assert found
        return found.group(0)


def _ask(client: TestClient, ref: str, phone: str = FRIEND) -> str:
    page = client.get("/join", params={"ref": ref})
    r = client.post("/join", data={"csrf_token": csrf_of(page.text), "phone": phone,
                                   "ref": ref})
    assert r.status_code == 200, r.text
    return r.text


def _details(client: TestClient, html: str, **fields: str) -> dict[str, str]:
    hidden = dict(re.findall(r'name="(challenge|phone|ref)" value="([^"]*)"', html))
    return {"csrf_token": csrf_of(html), **hidden, **fields}


def test_a_friend_joins_through_the_link_and_is_the_inviters_referral(
        client: TestClient, db: Database, world: World, invite: str) -> None:
    landing = client.get("/join", params={"ref": invite})
    assert landing.status_code == 200
    assert "韩** invites you to join" in landing.text and "韩梅梅" not in landing.text
    html = _ask(client, invite)
    # the number shows masked; only the hidden field carries what the friend typed
    assert "137****0001" in html
    assert html.count(FRIEND) == 1 and f'name="phone" value="+86{FRIEND}"' in html
    form = _details(client, html, code=_code_sent_to(db, "0001"), name="李雷",
                    home_store_id=str(world.store_b.id), sms_consent="on")
    r = client.post("/join/details", data=form, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/m?done=joined"
    assert MEMBER_COOKIE in client.cookies
    assert "Welcome! You are a member now." in client.get(r.headers["location"]).text
    with db.read() as s:
        member = s.scalar(select(Member).where(Member.phone == "+86" + FRIEND))
        assert member is not None
        assert (member.name, member.home_store_id) == ("李雷", world.store_b.id)
        referrer = offers.referrer_of(s, member_id=member.id)
        assert referrer is not None and offers.find_referral_code(
            s, member_id=referrer).code == invite  # type: ignore[union-attr]
        consents = {(e.channel, e.granted) for e in s.scalars(
            select(ConsentEvent).where(ConsentEvent.member_id == member.id))}
        assert ("sms", True) in consents and ("email", True) not in consents


def test_a_wrong_code_counts_and_a_swapped_phone_is_refused(
        client: TestClient, db: Database, world: World, invite: str) -> None:
    html = _ask(client, invite)
    code = _code_sent_to(db, "0001")
    wrong = _details(client, html, code="000000" if code != "000000" else "111111",
                     name="李雷", home_store_id=str(world.store_a.id))
    r = client.post("/join/details", data=wrong)
    assert r.status_code == 422 and "attempts left" in r.text
    swapped = _details(client, html, code=code, name="李雷",
                       home_store_id=str(world.store_a.id))
    swapped["phone"] = "+8613700000002"  # the code was sent to another number
    r = client.post("/join/details", data=swapped)
    assert r.status_code == 422
    missing_store = _details(client, html, code=code, name="李雷")
    r = client.post("/join/details", data=missing_store)
    assert r.status_code == 422 and "Choose your store" in r.text
    with db.read() as s:
        assert s.scalar(select(Member).where(Member.phone.like("+861370000000%"))) is None
    # the right code still works for the number it was sent to (two wrong tries of five)
    ok = _details(client, html, code=code, name="李雷", home_store_id=str(world.store_a.id))
    assert client.post("/join/details", data=ok, follow_redirects=False).status_code == 303


def test_an_existing_member_is_signed_in_not_enrolled_twice(
        client: TestClient, db: Database, clock: FixedClock, world: World,
        invite: str) -> None:
    with db.write() as s:
        make_member(s, clock, world.store_a, name="王芳", phone=FRIEND)
    html = _ask(client, invite)  # the same answer as for a stranger
    assert "137****0001" in html
    form = _details(client, html, code=_code_sent_to(db, "0001"), name="Someone",
                    home_store_id=str(world.store_a.id))
    r = client.post("/join/details", data=form, follow_redirects=False)
    assert r.headers["location"] == "/m?done=already_member"
    with db.read() as s:
        member = s.scalar(select(Member).where(Member.phone == "+86" + FRIEND))
        assert member is not None and member.name == "王芳"
        assert offers.referrer_of(s, member_id=member.id) is None


def test_an_unknown_code_still_lets_people_join_and_chinese_is_spoken(
        client: TestClient, db: Database, world: World) -> None:
    client.cookies.set("lang", "zh_CN")
    landing = client.get("/join", params={"ref": "ZZZZ-ZZZZ"})
    assert "邀请码已失效" in landing.text
    html = _ask(client, "ZZZZ-ZZZZ")
    form = _details(client, html, code=_code_sent_to(db, "0001"), name="李雷",
                    home_store_id=str(world.store_a.id))
    assert client.post("/join/details", data=form, follow_redirects=False).status_code == 303
    with db.read() as s:
        member = s.scalar(select(Member).where(Member.phone == "+86" + FRIEND))
        assert member is not None and offers.referrer_of(s, member_id=member.id) is None
