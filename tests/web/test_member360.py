"""The member 360 page: every section shows the member's own data, and every action works,
is refused where the role may not, names the field of a bad input and changes nothing,
and moves value once however often its form is submitted."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import date, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from patron.analytics.tables import AnalyticsRun, MemberScore
from patron.auth import audit
from patron.auth import service as auth
from patron.core.clock import FixedClock
from patron.core.db import Database
from patron.feedback import service as feedback
from patron.feedback.enums import CallbackReason
from patron.loyalty import service as loyalty
from patron.members import service as members
from patron.members.models import Member, MemberNote
from patron.messaging import service as messaging
from patron.offers import service as offers
from patron.offers.models import ReferralAttribution
from patron.offers.schemas import CouponTemplateCreate
from patron.sales import service as sales
from patron.sales.schemas import LineIn, PaymentsIn, SaleCreate
from patron.wallet import service as wallet
from patron.wallet.enums import SpendOrder
from patron.wallet.models import WalletEntry
from patron.web import i18n
from tests.factories import PASSWORD, World, make_member
from tests.web.helpers import web_login
from tests.web.pages_support import Shop, needs_chromium, seed_shop, shot, sign_in

TILL = sales.TillConfig(currency="CNY", region="CN", timezone="Asia/Shanghai",
                        spend_order=SpendOrder.PRINCIPAL_FIRST)


@dataclass
class Scene:
    shop: Shop
    referred: Member
    grandchild: Member
    template_id: uuid.UUID


def _score(member_id: uuid.UUID, as_of: date, p_alive: float, **overrides: object
           ) -> MemberScore:
    values: dict[str, object] = {
        "as_of": as_of, "member_id": member_id, "purchases": 4, "frequency": 3,
        "first_purchase_on": as_of - timedelta(days=200),
        "last_purchase_on": as_of - timedelta(days=9), "recency_days": 9, "tenure_days": 200,
        "t_x_days": 191.0, "age_days": 200.0, "monetary_minor": 6_000,
        "total_net_minor": 24_000, "net_90_minor": 6_000, "net_prev_90_minor": 12_000,
        "net_365_minor": 24_000, "r_score": 4, "f_score": 3, "m_score": 5, "fm_score": 4,
        "rfm_segment": "champions", "p_alive": p_alive, "expected_30": 0.6,
        "expected_90": 1.8, "expected_365": 6.1, "expected_spend_minor": 6_100,
        "clv_minor": 123_456, "lifecycle_stage": "mature",
        "next_purchase_on": as_of + timedelta(days=12), "satisfaction": "satisfied",
        "loyalty_type": "trust", "replenishment_categories": 0, "bond_financial": 0.5,
        "bond_social": 0.1, "bond_structural": 0.2, "next_bond": "social"}
    values.update(overrides)
    return MemberScore(**values)


def _snapshots(s: Session, clock: FixedClock, member_id: uuid.UUID) -> None:
    """Three nightly snapshots: P(alive) 91 %, 85 %, 78 %."""
    today = clock.now().date()
    for i, p in enumerate((0.91, 0.85, 0.78)):
        day = today - timedelta(days=3 - i)
        s.add(AnalyticsRun(as_of=day, started_at=clock.now(), finished_at=clock.now(),
                           status="succeeded", stages={}, params={}, members=1, error=""))
        s.add(_score(member_id, day, p))
    s.flush()


def _scene(db: Database, clock: FixedClock, world: World) -> Scene:
    """韩梅梅 with a tier, points, stored value, a coupon, a purchase, a message, a callback
    task, a complaint, scores, and a referral tree two levels deep."""
    with db.write() as s:
        shop = seed_shop(s, clock, world)
        owner = auth.principal_for_user(world.owner)
        cashier = auth.principal_for_user(world.cashier_a)
        sales.checkout(s, clock=clock, actor=cashier, till=TILL, data=SaleCreate(
            member_id=shop.member.id, lines=[LineIn(product_id=shop.coffee.id, quantity=2)],
            payments=PaymentsIn(cash_minor=6_400)))
        messaging.enqueue(s, clock=clock, messages=[messaging.Outgoing(
            dedupe_key=f"test:{uuid.uuid4()}", channel="sms", purpose="marketing",
            template="birthday", language="zh_CN", recipient=shop.member.phone,
            body="生日快乐！本月消费享双倍积分", member_id=shop.member.id)])
        feedback.create_callback(s, clock=clock, actor=None, member_id=shop.member.id,
                                 reason=CallbackReason.WIN_BACK, notes="45 days away")
        code = offers.referral_code_for(s, clock=clock, member_id=shop.member.id).code
        referred = make_member(s, clock, world.store_a, name="李雷")
        offers.attribute_referral(s, clock=clock, actor=None, new_member_id=referred.id,
                                  code=code)
        grandchild = make_member(s, clock, world.store_a, name="王小明",
                                 referred_by_card_no=referred.card_no)
        template = offers.create_template(s, clock=clock, actor=owner,
                                          data=CouponTemplateCreate(
                                              name="¥20 welcome back", kind="fixed",
                                              amount_minor=2_000, validity="days",
                                              valid_days=30))
        _snapshots(s, clock, shop.member.id)
        return Scene(shop, referred, grandchild, template.id)


@pytest.fixture
def scene(db: Database, clock: FixedClock, world: World) -> Scene:
    return _scene(db, clock, world)


def _section(html: str, name: str) -> str:
    """The HTML of one section of the member page (up to the next section)."""
    marker = f'<section id="{name}" class="m360-section">'
    assert marker in html, f"no section {name}"
    start = html.index(marker) + len(marker)
    ends = [i for i in (html.find('class="m360-section">', start), html.find('id="edit"', start))
            if i >= 0]
    return html[start:min(ends)] if ends else html[start:]


def _field_error(html: str, field: str) -> str:
    match = re.search(rf'<p class="field-error" id="e-{field}">([^<]*)</p>', html)
    assert match, f"no error shown for {field}"
    return match.group(1)


def _wallet_total(db: Database, member_id: uuid.UUID) -> int:
    with db.read() as s:
        return wallet.balance(s, member_id=member_id).total_minor


def _points(db: Database, clock: FixedClock, member_id: uuid.UUID) -> int:
    with db.read() as s:
        return loyalty.balance(s, clock=clock, member_id=member_id).available


def _topup_key(html: str) -> str:
    match = re.search(r'action="/members/[^/]+/topup".*?name="key" value="([^"]+)"', html, re.S)
    assert match
    return match.group(1)


# ---------------------------------------------------------------- what the page shows


def test_each_section_shows_the_members_own_data(
    client: TestClient, scene: Scene, clock: FixedClock
) -> None:
    member = scene.shop.member
    web_login(client, "manager-a")
    r = client.get(f"/members/{member.id}")
    assert r.status_code == 200
    html = r.text
    # header card: tier with progress to the next, points, balance, CLV, P(alive), stage, RFM
    assert "Silver" in html and "more spend for Gold" in html and 'class="m360-progress"' in html
    assert re.search(r'id="m360-points">564<', html)  # 500 welcome + 64 from the ¥64 sale
    assert re.search(r'id="m360-balance">CN¥100\.00<', html)
    assert re.search(r'id="m360-clv">CN¥1,234\.56<', html)
    assert re.search(r'id="m360-palive">78%<', html)
    assert "Mature" in html and "Champions" in html
    overview = _section(html, "overview")
    assert "Trust" in overview and "Expected next purchase" in overview
    assert 'data-chart="palive-data"' in overview
    assert '"data": [91.0, 85.0, 78.0]' in overview  # the trend over the three snapshots
    assert "hmm@example.com" in overview  # profile and consents stay on the overview
    purchases = _section(html, "purchases")
    assert "Latte 拿铁 ×2" in purchases and "CN¥64.00" in purchases
    points = _section(html, "points")
    assert "welcome" in points and "+500" in points
    wallet_part = _section(html, "wallet")
    assert "Top-up" in wallet_part and "+CN¥100.00" in wallet_part
    coupons = _section(html, "coupons")
    assert "¥5 off" in coupons and scene.shop.coupon_code in coupons and "Usable" in coupons
    messages = _section(html, "messages")
    assert "生日快乐" in messages and "Queued" in messages and "Marketing" in messages
    care = _section(html, "care")
    assert "Win-back" in care and "45 days away" in care and "No complaints." in care
    referrals = _section(html, "referrals")
    assert "李雷" in referrals and "by referral code" in referrals
    assert "王小明" in referrals and "by card at enrolment" in referrals
    assert referrals.index("李雷") < referrals.index("王小明")


def test_ledgers_show_twenty_rows_and_more_on_request(
    client: TestClient, db: Database, clock: FixedClock, world: World
) -> None:
    with db.write() as s:
        member = make_member(s, clock, world.store_a, name="Lots")
        for i in range(25):
            wallet.top_up(s, clock=clock, actor=None, member_id=member.id,
                          amount_minor=100 + i, reason=f"r{i:02d}")
    web_login(client, "manager-a")
    html = client.get(f"/members/{member.id}").text
    part = _section(html, "wallet")
    assert "r24" in part and "r05" in part and "r04" not in part
    assert f'hx-get="/members/{member.id}/section/wallet?limit=40"' in part
    more = client.get(f"/members/{member.id}/section/wallet", params={"limit": 40},
                      headers={"HX-Request": "true"})
    assert more.status_code == 200 and "<html" not in more.text
    assert "r00" in more.text and 'id="sec-wallet"' in more.text and "?limit=60" not in more.text
    full = client.get(f"/members/{member.id}", params={"wallet": 40}).text
    assert "r00" in _section(full, "wallet")
    assert client.get(f"/members/{member.id}/section/nothing").status_code == 404


def test_a_member_without_history_gets_empty_sections_not_errors(
    client: TestClient, db: Database, clock: FixedClock, world: World
) -> None:
    with db.write() as s:
        member = make_member(s, clock, world.store_a, name="New")
    web_login(client, "cashier-a")
    html = client.get(f"/members/{member.id}").text
    for text in ("No purchases yet.", "No points movements yet.", "No coupons yet.",
                 "No messages sent yet.", "No scores yet", "Has not referred anyone yet."):
        assert text in html
    assert 'data-chart="palive-data"' not in html


def test_cashier_sees_a_masked_phone_and_no_manager_actions(
    client: TestClient, scene: Scene
) -> None:
    web_login(client, "cashier-a")
    html = client.get(f"/members/{scene.shop.member.id}").text
    assert "139****5678" in html and "13912345678" not in html
    assert 'action="/members/' in html and "/topup" in html  # cashiers top up
    assert "/points\"" not in html and "/coupons\"" not in html and "Delete member" not in html


def test_next_best_products_come_from_the_purchase_history(
    client: TestClient, db: Database, clock: FixedClock, world: World, scene: Scene
) -> None:
    shop = scene.shop
    cashier = auth.principal_for_user(world.cashier_a)
    with db.write() as s:  # two other members buy coffee with cake: cake goes with coffee
        for name in ("Buyer 1", "Buyer 2"):
            other = make_member(s, clock, world.store_a, name=name)
            sales.checkout(s, clock=clock, actor=cashier, till=TILL, data=SaleCreate(
                member_id=other.id, lines=[LineIn(product_id=shop.coffee.id, quantity=1),
                                           LineIn(product_id=shop.cake.id, quantity=1)],
                payments=PaymentsIn(cash_minor=6_000)))
    clock.advance(timedelta(days=1))
    web_login(client, "manager-a")
    r = client.get(f"/members/{shop.member.id}/next-best", headers={"HX-Request": "true"})
    assert r.status_code == 200
    assert "Cheesecake 芝士蛋糕" in r.text and "because they bought Latte 拿铁" in r.text


# ---------------------------------------------------------------- top-up


def test_top_up_moves_money_once_however_often_the_form_is_sent(
    client: TestClient, db: Database, scene: Scene
) -> None:
    member = scene.shop.member
    csrf = web_login(client, "cashier-a")
    html = client.get(f"/members/{member.id}").text
    key = _topup_key(html)
    form = {"csrf_token": csrf, "key": key, "amount": "50", "topup_reason": "cash"}
    for _ in range(3):
        r = client.post(f"/members/{member.id}/topup", data=form, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].endswith("#wallet")
    assert _wallet_total(db, member.id) == 10_000 + 5_000
    page = client.get(f"/members/{member.id}").text
    assert "Stored value topped up." in page and _topup_key(page) != key  # a fresh key
    with db.read() as s:
        entries = audit.list_entries(s, action="wallet.topped_up", entity_id=str(member.id))
        assert [e.details["amount_minor"] for e in entries] == [5_000]
    # the same key with another amount is refused and changes nothing
    r = client.post(f"/members/{member.id}/topup", data=form | {"amount": "70"})
    assert r.status_code == 422 and "This form was already submitted" in r.text
    assert _wallet_total(db, member.id) == 15_000


@pytest.mark.parametrize(("amount", "message"), [
    ("", "Enter the amount paid in"), ("1.2.3", "Enter an amount like 12.50"),
    ("-5", "Enter an amount like 12.50"), ("0", "Enter the amount paid in"),
    ("0.001", "Enter an amount like 12.50"), ("2000000", "At most CN¥1,000,000.00 at once"),
])
def test_a_bad_top_up_amount_names_the_field_and_changes_nothing(
    client: TestClient, db: Database, scene: Scene, amount: str, message: str
) -> None:
    member = scene.shop.member
    csrf = web_login(client, "manager-a")
    r = client.post(f"/members/{member.id}/topup", data={
        "csrf_token": csrf, "key": str(uuid.uuid4()), "amount": amount})
    assert r.status_code == 422
    assert _field_error(r.text, "amount") == message
    assert '<details class="card collapsible m360-action" id="act-topup" open>' in r.text
    assert _wallet_total(db, member.id) == 10_000


def test_top_up_of_a_deleted_member_is_refused(
    client: TestClient, db: Database, clock: FixedClock, world: World, scene: Scene
) -> None:
    member = scene.shop.member
    with db.write() as s:
        members.delete_member(s, clock=clock, actor=auth.principal_for_user(world.owner),
                              member_id=member.id)
    csrf = web_login(client, "manager-a")
    r = client.post(f"/members/{member.id}/topup", data={
        "csrf_token": csrf, "key": str(uuid.uuid4()), "amount": "10"})
    assert r.status_code == 422 and "Member is not active" in r.text
    assert _wallet_total(db, member.id) == 10_000


# ---------------------------------------------------------------- points


def test_manager_adjusts_points_with_a_reason_once_and_it_is_audited(
    client: TestClient, db: Database, clock: FixedClock, scene: Scene
) -> None:
    member = scene.shop.member
    csrf = web_login(client, "manager-a")
    key = str(uuid.uuid4())
    form = {"csrf_token": csrf, "key": key, "points": "-64", "points_reason": "goodwill fix"}
    for _ in range(2):
        r = client.post(f"/members/{member.id}/points", data=form, follow_redirects=False)
        assert r.status_code == 303
    assert _points(db, clock, member.id) == 500
    with db.read() as s:
        entries = audit.list_entries(s, action="points.adjusted", entity_id=str(member.id))
        assert [(e.details["points"], e.details["reason"]) for e in entries] == [
            (-64, "goodwill fix")]
    assert "goodwill fix" in _section(client.get(f"/members/{member.id}").text, "points")


def test_points_adjustment_errors_name_the_field_and_change_nothing(
    client: TestClient, db: Database, clock: FixedClock, scene: Scene
) -> None:
    member = scene.shop.member
    csrf = web_login(client, "manager-a")
    url = f"/members/{member.id}/points"
    r = client.post(url, data={"csrf_token": csrf, "key": str(uuid.uuid4()), "points": "ten",
                               "points_reason": "x"})
    assert r.status_code == 422
    assert _field_error(r.text, "points") == "Enter a whole number of points, e.g. 100 or -100"
    r = client.post(url, data={"csrf_token": csrf, "key": str(uuid.uuid4()), "points": "10"})
    assert _field_error(r.text, "points_reason") == "Say why the points change"
    r = client.post(url, data={"csrf_token": csrf, "key": str(uuid.uuid4()),
                               "points": "-9999", "points_reason": "too many"})
    assert r.status_code == 422
    assert _field_error(r.text, "points") == "Not enough points: the member has 564 available"
    assert _points(db, clock, member.id) == 564


def test_cashier_may_not_adjust_points_or_issue_coupons(
    client: TestClient, db: Database, clock: FixedClock, scene: Scene
) -> None:
    member = scene.shop.member
    csrf = web_login(client, "cashier-a")
    r = client.post(f"/members/{member.id}/points", data={
        "csrf_token": csrf, "key": str(uuid.uuid4()), "points": "100", "points_reason": "x"})
    assert r.status_code == 403
    r = client.post(f"/members/{member.id}/coupons", data={
        "csrf_token": csrf, "template_id": str(scene.template_id)})
    assert r.status_code == 403
    assert _points(db, clock, member.id) == 564
    with db.read() as s:
        assert len(offers.list_member_coupons(s, member_id=member.id)) == 1


# ---------------------------------------------------------------- coupons, notes, calls, complaints


def test_manager_issues_a_coupon_from_a_template(
    client: TestClient, db: Database, scene: Scene
) -> None:
    member = scene.shop.member
    csrf = web_login(client, "manager-a")
    r = client.post(f"/members/{member.id}/coupons", data={"csrf_token": csrf,
                                                          "template_id": ""})
    assert r.status_code == 422 and _field_error(r.text, "template_id") == "Choose a coupon"
    r = client.post(f"/members/{member.id}/coupons", data={
        "csrf_token": csrf, "template_id": str(scene.template_id)}, follow_redirects=False)
    assert r.status_code == 303
    page = client.get(f"/members/{member.id}").text
    assert "Coupon issued." in page and "¥20 welcome back" in _section(page, "coupons")


def test_notes_are_signed_dated_listed_newest_first_and_kept_apart_from_preferences(
    client: TestClient, db: Database, clock: FixedClock, world: World, scene: Scene
) -> None:
    member = scene.shop.member
    csrf = web_login(client, "cashier-a")
    url = f"/members/{member.id}/notes"
    r = client.post(url, data={"csrf_token": csrf, "note_text": "  "})
    assert r.status_code == 422 and _field_error(r.text, "note_text") == "Write the note first"
    r = client.post(url, data={"csrf_token": csrf, "note_text": "x" * 2001})
    assert r.status_code == 422
    assert _field_error(r.text, "note_text") == "At most 2000 characters"
    r = client.post(url, data={"csrf_token": csrf, "note_text": "喜欢燕麦奶\n周末来店"},
                    follow_redirects=False)
    assert r.status_code == 303
    clock.advance(timedelta(minutes=5))
    r = client.post(url, data={"csrf_token": csrf, "note_text": "换成豆奶"},
                    follow_redirects=False)
    assert r.status_code == 303
    care = _section(client.get(f"/members/{member.id}").text, "care")
    assert care.index("换成豆奶") < care.index("喜欢燕麦奶\n周末来店")  # newest first, lines kept
    assert care.count("cashier-a · <time") == 2
    with db.read() as s:
        rows = s.scalars(select(MemberNote).where(MemberNote.member_id == member.id)
                         .order_by(MemberNote.created_at)).all()
        assert [(n.body, n.author_id, n.author_name) for n in rows] == [
            ("喜欢燕麦奶\n周末来店", world.cashier_a.id, "cashier-a"),
            ("换成豆奶", world.cashier_a.id, "cashier-a")]
        assert rows[1].created_at - rows[0].created_at == timedelta(minutes=5)
        assert "喜欢燕麦奶" not in members.get_member(s, member_id=member.id).preferences


def test_staff_of_another_store_neither_read_nor_add_notes(
    client: TestClient, db: Database, scene: Scene
) -> None:
    member = scene.shop.member
    csrf = web_login(client, "cashier-a")
    client.post(f"/members/{member.id}/notes", data={"csrf_token": csrf, "note_text": "secret recipe 42"})
    csrf = web_login(client, "manager-b")
    page = client.get(f"/members/{member.id}").text
    assert "Notes are kept by the member's home store." in _section(page, "care")
    assert "secret recipe 42" not in page and 'id="act-note"' not in page
    r = client.post(f"/members/{member.id}/notes", data={"csrf_token": csrf, "note_text": "x"})
    assert r.status_code == 403
    with db.read() as s:
        assert s.scalar(select(func.count()).select_from(MemberNote)) == 1


def test_log_a_call_on_the_open_task_and_refuse_a_bad_outcome(
    client: TestClient, db: Database, clock: FixedClock, world: World, scene: Scene
) -> None:
    member = scene.shop.member
    with db.read() as s:
        task_id = feedback.list_callbacks(s, clock=clock, actor=auth.principal_for_user(
            world.owner), member_id=member.id)[0].id
    csrf = web_login(client, "cashier-a")
    url = f"/members/{member.id}/calls"
    r = client.post(url, data={"csrf_token": csrf, "task_id": str(task_id), "outcome": "maybe"})
    assert r.status_code == 422 and _field_error(r.text, "outcome") == "Choose the outcome"
    r = client.post(url, data={"csrf_token": csrf, "task_id": "", "outcome": "reached"})
    assert _field_error(r.text, "task_id") == "Choose the callback task"
    r = client.post(url, data={"csrf_token": csrf, "task_id": str(task_id),
                               "outcome": "reached", "reschedule_on": "2020-01-01"})
    assert r.status_code == 422
    assert _field_error(r.text, "reschedule_on") == \
        "Only a call nobody answered can be rescheduled"
    with db.read() as s:
        assert feedback.calls_of(s, task_id=task_id) == []
    r = client.post(url, data={"csrf_token": csrf, "task_id": str(task_id),
                               "outcome": "will_return", "call_note": "comes Saturday"},
                    follow_redirects=False)
    assert r.status_code == 303
    with db.read() as s:
        calls = feedback.calls_of(s, task_id=task_id)
        assert [(c.outcome, c.note) for c in calls] == [("will_return", "comes Saturday")]
    care = _section(client.get(f"/members/{member.id}").text, "care")
    assert "Done" in care and "Will come back" in care


def test_manager_logs_a_call_without_a_task(
    client: TestClient, db: Database, clock: FixedClock, world: World, scene: Scene
) -> None:
    member = scene.referred
    csrf = web_login(client, "manager-a")
    r = client.post(f"/members/{member.id}/calls", data={
        "csrf_token": csrf, "task_id": "", "outcome": "reached", "call_note": "thanked"},
        follow_redirects=False)
    assert r.status_code == 303
    with db.read() as s:
        tasks = feedback.list_callbacks(s, clock=clock, actor=auth.principal_for_user(
            world.owner), member_id=member.id)
        assert [(t.reason, t.status, t.outcome) for t in tasks] == [
            ("manual", "done", "reached")]


def test_record_a_complaint_and_refuse_a_blank_description(
    client: TestClient, db: Database, clock: FixedClock, world: World, scene: Scene
) -> None:
    member = scene.shop.member
    csrf = web_login(client, "cashier-a")
    url = f"/members/{member.id}/complaints"
    r = client.post(url, data={"csrf_token": csrf, "category": "product", "severity": "high",
                               "channel": "in_store", "description": ""})
    assert r.status_code == 422 and _field_error(r.text, "description") == \
        "This field is required"
    r = client.post(url, data={"csrf_token": csrf, "category": "nonsense", "severity": "high",
                               "channel": "in_store", "description": "cold coffee"})
    assert _field_error(r.text, "category") == "Choose one of the options"
    r = client.post(url, data={"csrf_token": csrf, "category": "product", "severity": "high",
                               "channel": "in_store", "description": "cold coffee"},
                    follow_redirects=False)
    assert r.status_code == 303
    with db.read() as s:
        found = feedback.list_complaints(s, actor=auth.principal_for_user(world.owner),
                                         member_id=member.id)
        assert [(c.category, c.severity, c.description) for c in found] == [
            ("product", "high", "cold coffee")]
    care = _section(client.get(f"/members/{member.id}").text, "care")
    assert "cold coffee" in care and "High" in care


def test_manager_of_another_store_does_not_see_store_a_care_records(
    client: TestClient, scene: Scene
) -> None:
    web_login(client, "manager-b")
    care = _section(client.get(f"/members/{scene.shop.member.id}").text, "care")
    assert "45 days away" not in care and "No callback tasks." in care


def test_merge_from_the_member_page_still_works(
    client: TestClient, db: Database, clock: FixedClock, world: World, scene: Scene
) -> None:
    with db.write() as s:
        duplicate = make_member(s, clock, world.store_a, name="韩梅梅 copy")
        wallet.top_up(s, clock=clock, actor=None, member_id=duplicate.id, amount_minor=700)
    csrf = web_login(client, "manager-a")
    r = client.post(f"/members/{scene.shop.member.id}/merge", data={
        "csrf_token": csrf, "duplicate_card_no": duplicate.card_no}, follow_redirects=False)
    assert r.status_code == 303
    assert _wallet_total(db, scene.shop.member.id) == 10_700


# ---------------------------------------------------------------- Chinese


def test_the_member_page_in_chinese(client: TestClient, db: Database, scene: Scene) -> None:
    csrf = web_login(client, "manager-a")
    client.cookies.set(i18n.LANG_COOKIE, "zh_CN")
    html = client.get(f"/members/{scene.shop.member.id}").text
    for text in ("储值", "积分", "客户终身价值", "存活概率", "购买记录", "推荐关系", "成熟期",
                 "充值", "记录通话", "登记投诉"):
        assert text in html, text
    r = client.post(f"/members/{scene.shop.member.id}/topup", data={
        "csrf_token": csrf, "key": str(uuid.uuid4()), "amount": "1.2.3"})
    assert _field_error(r.text, "amount") == "请输入金额，例如 12.50"


def _count(db: Database, model: type[WalletEntry] | type[ReferralAttribution]) -> int:
    with db.read() as s:
        return int(s.scalar(select(func.count()).select_from(model)) or 0)


# ---------------------------------------------------------------- in the browser


@needs_chromium
def test_browser_shows_the_trend_and_tops_up_through_the_form(
    pages: object, live_url: str, db: Database, clock: FixedClock, world: World
) -> None:
    from tests.web.pages_support import Pages

    assert isinstance(pages, Pages)
    scene = _scene(db, clock, world)
    member = scene.shop.member
    before = _count(db, WalletEntry)
    pg = pages.open()
    sign_in(pg, live_url, "manager-a", PASSWORD)
    pg.goto(f"{live_url}/members/{member.id}")
    pg.wait_for_selector("#palive-chart[data-chart-ready='1']")
    pg.click("a[data-open='act-topup']")
    pg.fill("#f-amount", "88")
    pg.fill("#f-topup_reason", "browser top-up")
    pg.click("#act-topup button[type=submit]")
    pg.wait_for_selector("text=Stored value topped up.")
    assert pg.inner_text("#m360-balance") == "CN¥188.00"
    assert _count(db, WalletEntry) == before + 1
    pg.wait_for_selector("#palive-chart[data-chart-ready='1']")
    shot(pg, "member-360")
    zh = pages.open(locale="zh-CN")
    sign_in(zh, live_url, "manager-a", PASSWORD)
    zh.context.add_cookies([{"name": i18n.LANG_COOKIE, "value": "zh_CN", "url": live_url}])
    zh.goto(f"{live_url}/members/{member.id}")
    zh.wait_for_selector("#palive-chart[data-chart-ready='1']")
    assert "客户终身价值" in zh.content()
    shot(zh, "member-360-zh")
