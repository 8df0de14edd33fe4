"""The member's own page: the signed link, signing in with a code by SMS (hashed, short-
lived, counted, rate limited), consent switches recorded as evidence, data requests; and the
page itself in a phone's Chromium, in English and Chinese."""

from __future__ import annotations

import re
import shutil
import subprocess
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from playwright.sync_api import expect
from sqlalchemy import select

from patron.auth.models import AuditEntry
from patron.core.clock import FixedClock
from patron.core.db import Database
from patron.members.models import ConsentEvent, Member
from patron.members.otp import MemberOtp
from patron.messaging import service as messaging
from patron.messaging.models import Message
from patron.web import i18n
from patron.web.pages.selfservice import MEMBER_COOKIE, member_token
from tests.factories import World, make_member
from tests.web.helpers import csrf_of, web_login
from tests.web.pages_support import (
    Pages,
    Shop,
    browser,  # noqa: F401 - fixture
    live_url,  # noqa: F401 - fixture
    needs_chromium,
    pages,  # noqa: F401 - fixture
    seed_shop,
    shot,
)

PHONE = "13912345678"


@pytest.fixture
def shop(db: Database, clock: FixedClock, world: World) -> Shop:
    with db.write() as s:
        return seed_shop(s, clock, world, phone=PHONE)


def _secret(client: TestClient) -> str:
    return str(client.app.state.ctx.settings.secret_key.get_secret_value())  # type: ignore[attr-defined]


def _open(client: TestClient, shop: Shop) -> str:
    """Follow the member's signed link; returns the page's member CSRF token."""
    r = client.get(f"/m/{member_token(_secret(client), shop.member.id)}",
                   follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/m"
    found = re.search(r'action="/m/logout"[^>]*>\s*<input type="hidden" name="csrf_token" '
                      r'value="([^"]+)"', client.get("/m").text)
    assert found
    return found.group(1)


def _ask_code(client: TestClient, phone: str = PHONE, **headers: str) -> tuple[int, str]:
    page = client.get("/m/login")
    r = client.post("/m/login", data={"csrf_token": csrf_of(page.text), "phone": phone},
                    headers=headers)
    return r.status_code, r.text


def _sent_code(db: Database) -> str:
    with db.read() as s:
        message = s.scalars(select(Message).where(Message.template == "otp")
                            .order_by(Message.created_at.desc())).first()
        assert message is not None
        found = re.search(r"\d{6}", message.body)
        assert found
        return found.group(0)


def _challenge(html: str) -> str:
    found = re.search(r'name="challenge" value="([^"]+)"', html)
    assert found
    return found.group(1)


def _enter(client: TestClient, challenge: str, code: str) -> tuple[int, str]:
    page = client.get("/m/login")
    r = client.post("/m/login/code", data={"csrf_token": csrf_of(page.text),
                                           "challenge": challenge, "code": code},
                    follow_redirects=False)
    return r.status_code, r.text


def test_the_signed_link_opens_the_member_page(client: TestClient, world: World,
                                               shop: Shop) -> None:
    _open(client, shop)
    assert MEMBER_COOKIE in client.cookies
    html = client.get("/m").text
    assert "韩梅梅" in html and shop.member.card_no in html and '<svg xmlns="http://www.w3.org/2000/svg" class="qr"' in html
    assert "500" in html and "CN¥100.00" in html and "¥5 off" in html and shop.coupon_code in html
    assert "CN¥5.00 off" in html and "Silver" in html and "CN¥1,000.00 more spend to Gold" in html
    assert "500 expire on" in html  # one-month expiry, a 45-day notice period
    assert 'role="switch" aria-checked="true"' in html
    assert "13912345678" not in html


def test_a_forged_or_damaged_link_opens_nothing(client: TestClient, world: World, shop: Shop,
                                                db: Database, clock: FixedClock) -> None:
    good = member_token(_secret(client), shop.member.id)
    with db.write() as s:
        other = make_member(s, clock, world.store_a, name="李雷")
    other_mac = member_token(_secret(client), other.id).split(".")[1]
    for token in (good[:-1] + ("0" if good[-1] != "0" else "1"),
                  f"{shop.member.id.hex}.{other_mac}", shop.member.id.hex, "garbage",
                  member_token("another-secret", shop.member.id)):
        r = client.get(f"/m/{token}", follow_redirects=False)
        assert r.status_code == 404, token
        assert "This link is not valid" in r.text
        assert MEMBER_COOKIE not in client.cookies
    assert client.get("/m", follow_redirects=False).headers["location"] == "/m/login"
    client.cookies.set(MEMBER_COOKIE, f"{shop.member.id.hex}.9999999999.{'0' * 32}")
    assert client.get("/m", follow_redirects=False).headers["location"] == "/m/login"


def test_a_code_by_sms_signs_the_member_in_and_is_stored_hashed(
        client: TestClient, world: World, shop: Shop, db: Database) -> None:
    status, html = _ask_code(client, "139 1234 5678")
    assert status == 200 and "139****5678" in html and 'autocomplete="one-time-code"' in html
    code = _sent_code(db)
    with db.read() as s:
        message = s.scalar(select(Message).where(Message.template == "otp"))
        assert message is not None
        assert (message.channel, message.purpose, message.recipient) == (
            "sms", "transactional", "+8613912345678")
        assert message.body.startswith("[Patron]") and "valid for 10 minutes" in message.body
        row = s.scalar(select(MemberOtp))
        assert row is not None and row.member_id == shop.member.id
        stored = " ".join(str(v) for v in (row.code_hash, row.phone_hash, row.client_hash))
        assert code not in stored and "13912345678" not in stored
    status, _html = _enter(client, _challenge(html), code)
    assert status == 303 and MEMBER_COOKIE in client.cookies
    assert "韩梅梅" in client.get("/m").text
    client.cookies.delete(MEMBER_COOKIE)
    status, html = _enter(client, _challenge(html), code)  # a code works once
    assert status == 422 and "no longer valid" in html


def test_an_unknown_number_gets_the_same_answer_and_no_sms(
        client: TestClient, world: World, shop: Shop, db: Database) -> None:
    status, html = _ask_code(client, "13700000000")
    assert status == 200 and "If 137****0000 belongs to a member" in html
    with db.read() as s:
        assert s.scalar(select(Message).where(Message.template == "otp")) is None
    status, html = _enter(client, _challenge(html), "123456")
    assert status == 422 and "not right" in html
    status, html = _ask_code(client, "12345")
    assert status == 422 and "Not a valid phone number" in html


def test_wrong_codes_are_counted_and_the_fifth_ends_the_code(
        client: TestClient, world: World, shop: Shop, db: Database) -> None:
    _status, html = _ask_code(client)
    challenge, code = _challenge(html), _sent_code(db)
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    for left in (4, 3, 2, 1):
        status, html = _enter(client, challenge, wrong)
        assert status == 422 and f"{left} attempts left" in html
    status, html = _enter(client, challenge, wrong)
    assert "Too many wrong codes" in html
    status, html = _enter(client, challenge, code)  # even the right one, now
    assert status == 422 and "Too many wrong codes" in html and MEMBER_COOKIE not in client.cookies


def test_a_code_expires_after_ten_minutes(client: TestClient, world: World, shop: Shop,
                                          db: Database, clock: FixedClock) -> None:
    _status, html = _ask_code(client)
    clock.advance(timedelta(minutes=10))
    status, html = _enter(client, _challenge(html), _sent_code(db))
    assert status == 422 and "expired" in html and MEMBER_COOKIE not in client.cookies


def test_codes_are_rate_limited_per_phone_and_per_address(
        client: TestClient, world: World, shop: Shop, db: Database, clock: FixedClock) -> None:
    assert _ask_code(client)[0] == 200
    status, html = _ask_code(client)
    assert status == 429 and "Wait a minute" in html
    for _ in range(4):  # five a day for one phone
        clock.advance(timedelta(seconds=61))
        assert _ask_code(client)[0] == 200
    clock.advance(timedelta(seconds=61))
    status, html = _ask_code(client)
    assert status == 429 and "Too many codes" in html
    with db.read() as s:
        assert len(s.scalars(select(Message).where(Message.template == "otp")).all()) == 5
    clock.advance(timedelta(hours=1))  # and ten an hour from one address, whatever number
    for i in range(10):
        assert _ask_code(client, f"1370000{i:04d}")[0] == 200
    status, _html = _ask_code(client, "13700009999")
    assert status == 429


def test_login_forms_need_their_csrf_token(client: TestClient, world: World, shop: Shop,
                                           db: Database) -> None:
    assert client.post("/m/login", data={"phone": PHONE}).status_code == 403
    assert client.post("/m/login/code", data={"challenge": "x", "code": "1"}).status_code == 403
    with db.read() as s:
        assert s.scalar(select(MemberOtp)) is None


def test_consent_switches_are_recorded_as_self_service_evidence(
        client: TestClient, world: World, shop: Shop, db: Database, clock: FixedClock) -> None:
    csrf = _open(client, shop)
    assert client.post("/m/consent", data={"channel": "sms", "granted": "0"}).status_code == 403
    with db.write() as s:
        messaging.enqueue(s, clock=clock, messages=[messaging.Outgoing(
            dedupe_key="campaign:test", channel="email", purpose="marketing",
            template="campaign", language="en", recipient="hmm@example.com", body="Hi",
            member_id=shop.member.id)])
    r = client.post("/m/consent", data={"csrf_token": csrf, "channel": "sms", "granted": "0"},
                    follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/m?done=consent#choices"
    assert "Your choice is saved." in client.get("/m?done=consent").text
    r = client.post("/m/consent", data={"csrf_token": csrf, "channel": "all"},
                    follow_redirects=False)
    with db.read() as s:
        member = s.get(Member, shop.member.id)
        assert member is not None and not member.sms_consent and not member.email_consent
        events = s.scalars(select(ConsentEvent).where(
            ConsentEvent.member_id == member.id, ConsentEvent.source == "self_service")).all()
        assert sorted((e.channel, e.granted) for e in events) == [("email", False),
                                                                  ("sms", False)]
        assert s.scalar(select(Message.status).where(
            Message.dedupe_key == "campaign:test")) == "suppressed"
    r = client.post("/m/consent", data={"csrf_token": csrf, "channel": "sms", "granted": "1"},
                    follow_redirects=False)
    assert r.status_code == 303
    web_login(client, "manager-a")  # the staff see where the change came from
    assert "Member page" in client.get(f"/members/{shop.member.id}").text


def test_data_requests_go_to_the_audit_log_once(client: TestClient, world: World,
                                                shop: Shop, db: Database) -> None:
    csrf = _open(client, shop)
    for _ in range(2):
        r = client.post("/m/data-request", data={"csrf_token": csrf, "kind": "export"},
                        follow_redirects=False)
        assert r.status_code == 303
    client.post("/m/data-request", data={"csrf_token": csrf, "kind": "erasure"})
    with db.read() as s:
        actions = s.scalars(select(AuditEntry.action).where(
            AuditEntry.entity_id == str(shop.member.id))).all()
    assert actions.count("member.data_export_requested") == 1
    assert actions.count("member.erasure_requested") == 1
    html = client.get("/m").text
    assert html.count("Request received on") == 2 and "within 30 days" in html
    assert client.post("/m/data-request", data={"csrf_token": csrf, "kind": "everything"}
                       ).status_code == 422


def test_signing_out_ends_the_member_session(client: TestClient, world: World,
                                             shop: Shop) -> None:
    csrf = _open(client, shop)
    r = client.post("/m/logout", data={"csrf_token": csrf}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/m/login?done=signed_out"
    assert client.get("/m", follow_redirects=False).status_code == 303


def test_the_member_page_speaks_chinese(client: TestClient, world: World, shop: Shop) -> None:
    _open(client, shop)
    client.cookies.set(i18n.LANG_COOKIE, "zh_CN")
    html = client.get("/m").text
    assert '<html lang="zh-CN">' in html
    assert "会员卡" in html and "积分" in html and "¥100.00" in html and "储值" in html
    assert "Your coupons" not in html


# ---------------------------------------------------------------- in the browser


def _decode_qr(path: str) -> str | None:
    """The text of the QR code in an image, if zbar is installed to read it."""
    zbarimg = shutil.which("zbarimg")
    if zbarimg is None:
        return None
    done = subprocess.run([zbarimg, "-q", "--raw", path], capture_output=True, text=True,
                          check=False, timeout=30)
    return done.stdout.strip()


@needs_chromium
@pytest.mark.browser
def test_a_member_signs_in_by_phone_on_a_phone_in_both_languages(
        pages: Pages, live_url: str, world: World, shop: Shop, db: Database,  # noqa: F811
        tmp_path: object) -> None:
    pg = pages.open(width=390, height=844, mobile=True)
    pg.goto(f"{live_url}/m")
    pg.wait_for_url(f"{live_url}/m/login")
    assert pg.evaluate("document.activeElement.id") == "f-phone"
    pg.fill("#f-phone", "139 1234 5678")
    pg.click("form[action='/m/login'] button[type=submit]")
    expect(pg.locator("#f-code")).to_be_focused()
    pg.fill("#f-code", _sent_code(db))
    pg.click("form[action='/m/login/code'] button[type=submit]")
    pg.wait_for_url(f"{live_url}/m")
    expect(pg.locator(".card-no")).to_have_text(shop.member.card_no)
    overflow = pg.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0
    qr_file = f"{tmp_path}/qr.png"
    pg.locator("svg.qr").screenshot(path=qr_file)
    decoded = _decode_qr(qr_file)
    assert decoded in (None, shop.member.card_no)  # the till's scanner reads the card number
    shot(pg, "self-service-phone")
    pg.click(".self-top button[value=zh_CN]")
    expect(pg.locator("h2#coupons-h")).to_have_text("我的优惠券")
    expect(pg.locator(".balances")).to_contain_text("¥100.00")
    shot(pg, "self-service-phone-zh")
    pg.locator("#choices button[role=switch]").first.click()
    expect(pg.locator(".alert-ok")).to_contain_text("已保存")
    expect(pg.locator("#choices button[role=switch]").first).to_have_attribute(
        "aria-checked", "false")
