"""Member pages: search, masking, enrolment and edits with field errors, consents, merge."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from patron.core.clock import FixedClock
from patron.core.db import Database
from patron.members import service as members
from patron.members.models import ConsentEvent, Member
from tests.factories import World, make_member
from tests.web.helpers import web_login


def _member(db: Database, clock: FixedClock, world: World, **overrides: object) -> Member:
    with db.write() as s:
        return make_member(s, clock, world.store_a, **overrides)


def _count_members(db: Database) -> int:
    with db.read() as s:
        return s.scalar(select(func.count()).select_from(Member)) or 0


def _field_error(html: str, field: str) -> str:
    """The error shown under a field (the element the input's aria-describedby names)."""
    match = re.search(rf'<p class="field-error" id="e-{field}">([^<]*)</p>', html)
    assert match, f"no error shown for {field}"
    return match.group(1)


def test_search_by_last_four_digits_returns_only_the_results_to_htmx(
    client: TestClient, world: World, db: Database, clock: FixedClock
) -> None:
    _member(db, clock, world, name="韩梅梅", phone="13912345678")
    _member(db, clock, world, name="李雷", phone="13900001111")
    web_login(client, "manager-a")
    r = client.get("/members", params={"q": "5678"}, headers={"HX-Request": "true"})
    assert r.status_code == 200
    assert "韩梅梅" in r.text and "李雷" not in r.text
    assert "<html" not in r.text  # a fragment for #results, not a page
    full = client.get("/members", params={"q": "5678"})
    assert "<html" in full.text and 'id="results"' in full.text and "autofocus" in full.text


def test_list_filters_by_store_and_tag_and_pages(
    client: TestClient, world: World, db: Database, clock: FixedClock
) -> None:
    with db.write() as s:
        for i in range(27):
            make_member(s, clock, world.store_a, name=f"A{i:02d}", tags=["vip"] if i < 3 else [])
        make_member(s, clock, world.store_b, name="B-only")
    web_login(client, "owner")
    r = client.get("/members", params={"home_store_id": str(world.store_b.id)})
    assert "B-only" in r.text and "A00" not in r.text
    r = client.get("/members", params={"tag": "vip"})
    assert r.text.count('class="row-link"') == 3
    first, second = client.get("/members"), client.get("/members", params={"page": 2})
    assert first.text.count('class="row-link"') == 25 and second.text.count('class="row-link"') == 3
    assert "Page 2 of 2" in second.text
    assert client.get("/members", params={"page": "x", "home_store_id": "nope"}).status_code == 200


def test_cashier_sees_masked_phone_on_list_and_detail(
    client: TestClient, world: World, db: Database, clock: FixedClock
) -> None:
    m = _member(db, clock, world, name="韩梅梅", phone="13912345678")
    web_login(client, "cashier-a")
    listing = client.get("/members", params={"q": "5678"}).text
    detail = client.get(f"/members/{m.id}").text
    for html in (listing, detail):
        assert "139****5678" in html
        assert "13912345678" not in html and "139 1234 5678" not in html
    web_login(client, "manager-a")
    assert "139 1234 5678" in client.get(f"/members/{m.id}").text  # in full, grouped to read


def test_cashier_edit_keeps_the_phone_they_cannot_see(
    client: TestClient, world: World, db: Database, clock: FixedClock
) -> None:
    m = _member(db, clock, world, name="韩梅梅", phone="13912345678")
    csrf = web_login(client, "cashier-a")
    r = client.post(f"/members/{m.id}", data={
        "csrf_token": csrf, "name": "韩梅梅 (VIP)", "phone": "", "home_store_id": str(world.store_a.id),
        "tags": "vip，咖啡"}, follow_redirects=False)
    assert r.status_code == 303, r.text
    with db.read() as s:
        saved = members.get_member(s, member_id=m.id)
        assert saved.phone == "+8613912345678" and saved.name == "韩梅梅 (VIP)"
        assert sorted(t.tag for t in saved.tags) == ["vip", "咖啡"]


def test_enrol_creates_member_with_consents_and_redirects_to_profile(
    client: TestClient, world: World, db: Database
) -> None:
    csrf = web_login(client, "cashier-a")
    form = client.get("/members/new").text
    assert f'value="{world.store_a.id}" selected' in form  # the cashier's store by default
    r = client.post("/members/new", data={
        "csrf_token": csrf, "name": "王芳", "phone": "138 0013 8000",
        "home_store_id": str(world.store_a.id), "birthday_calendar": "lunar", "birth_month": "8",
        "birth_day": "15", "sms_consent": "on", "ann_kind_0": "wedding", "ann_on_0": "2015-05-20",
    }, follow_redirects=False)
    assert r.status_code == 303
    page = client.get(r.headers["location"]).text
    assert "Member enrolled." in page and "王芳" in page
    assert "Lunar 8/15" in page and "138****8000" in page
    with db.read() as s:
        m = members.find_by_phone(s, phone_e164="+8613800138000")
        assert m is not None and m.sms_consent and not m.email_consent
        assert [a.kind for a in m.anniversaries] == ["wedding"]
        assert [e.source for e in members.consent_history(s, member_id=m.id)] == ["enrolment"]


def test_enrol_errors_name_the_field_keep_the_input_and_save_nothing(
    client: TestClient, world: World, db: Database
) -> None:
    csrf = web_login(client, "manager-a")
    r = client.post("/members/new", data={
        "csrf_token": csrf, "name": "王芳", "phone": "12345", "email": "not-an-email",
        "home_store_id": str(world.store_a.id), "preferences": "喜欢燕麦奶"})
    assert r.status_code == 422
    assert _field_error(r.text, "email") == "Enter a valid e-mail address"
    assert 'value="12345"' in r.text and "喜欢燕麦奶" in r.text
    r = client.post("/members/new", data={
        "csrf_token": csrf, "name": "王芳", "phone": "12345", "home_store_id": str(world.store_a.id)})
    assert "Not a valid phone number" in _field_error(r.text, "phone")
    r = client.post("/members/new", data={
        "csrf_token": csrf, "name": "王芳", "phone": "13800138000",
        "home_store_id": str(world.store_a.id), "birth_month": "13", "birth_day": "1"})
    assert _field_error(r.text, "birth_month") == "Month must be between 1 and 12"
    r = client.post("/members/new", data={
        "csrf_token": csrf, "name": "", "phone": "13800138000",
        "home_store_id": str(world.store_a.id), "birth_year": "nineteen"})
    assert _field_error(r.text, "birth_year") == "Enter a whole number"
    assert _count_members(db) == 0


def test_duplicate_phone_is_shown_next_to_the_phone_field(
    client: TestClient, world: World, db: Database, clock: FixedClock
) -> None:
    _member(db, clock, world, phone="13800138000")
    csrf = web_login(client, "manager-a")
    r = client.post("/members/new", data={"csrf_token": csrf, "name": "Copy",
                                          "phone": "+86 138 0013 8000",
                                          "home_store_id": str(world.store_a.id)})
    assert r.status_code == 422
    assert _field_error(r.text, "phone") == "A member with this phone number already exists"
    assert _count_members(db) == 1


def test_edit_error_reopens_the_form_and_changes_nothing(
    client: TestClient, world: World, db: Database, clock: FixedClock
) -> None:
    m = _member(db, clock, world, name="Li Lei")
    csrf = web_login(client, "manager-a")
    r = client.post(f"/members/{m.id}", data={
        "csrf_token": csrf, "name": "Renamed", "phone": "13800000000",
        "home_store_id": str(world.store_a.id), "birthday_calendar": "solar",
        "birth_month": "2", "birth_day": "30"})
    assert r.status_code == 422
    assert '<details class="card collapsible" id="edit" open>' in r.text
    assert _field_error(r.text, "birth_day") == "Day must be between 1 and 29"
    assert 'value="Renamed"' in r.text
    with db.read() as s:
        assert members.get_member(s, member_id=m.id).name == "Li Lei"


def test_consent_grant_and_withdraw_are_kept_as_history(
    client: TestClient, world: World, db: Database, clock: FixedClock
) -> None:
    m = _member(db, clock, world)
    csrf = web_login(client, "cashier-a")
    for granted in ("1", "0"):
        r = client.post(f"/members/{m.id}/consent", data={
            "csrf_token": csrf, "channel": "email", "granted": granted}, follow_redirects=False)
        assert r.status_code == 303
    page = client.get(f"/members/{m.id}").text
    assert "Consent updated." in page
    assert page.count("badge badge-danger") == 1 and "Withdrawn" in page
    with db.read() as s:
        assert [e.granted for e in members.consent_history(s, member_id=m.id)] == [True, False]


def test_cashier_cannot_delete_or_merge(
    client: TestClient, world: World, db: Database, clock: FixedClock
) -> None:
    m = _member(db, clock, world)
    other = _member(db, clock, world)
    csrf = web_login(client, "cashier-a")
    page = client.get(f"/members/{m.id}").text
    assert "Delete member" not in page  # not offered...
    r = client.post(f"/members/{m.id}/delete", data={"csrf_token": csrf})
    assert r.status_code == 403 and "You don&#39;t have access to this page" in r.text  # ...nor allowed
    r = client.post(f"/members/{m.id}/merge", data={"csrf_token": csrf,
                                                    "duplicate_card_no": other.card_no})
    assert r.status_code == 403 and "This needs the manager role" in r.text
    with db.read() as s:
        assert members.get_member(s, member_id=m.id).status == "active"
        assert members.get_member(s, member_id=other.id).status == "active"


def test_manager_merges_by_card_number_and_soft_deletes(
    client: TestClient, world: World, db: Database, clock: FixedClock
) -> None:
    survivor = _member(db, clock, world, name="Li Lei")
    duplicate = _member(db, clock, world, name="Li Lei (old card)", sms_consent=True)
    csrf = web_login(client, "manager-a")
    r = client.post(f"/members/{survivor.id}/merge", data={"csrf_token": csrf,
                                                           "duplicate_card_no": "000000000000"})
    assert r.status_code == 422
    assert _field_error(r.text, "duplicate_card_no") == "No member has this card number"
    r = client.post(f"/members/{survivor.id}/merge", data={
        "csrf_token": csrf, "duplicate_card_no": duplicate.card_no}, follow_redirects=False)
    assert r.status_code == 303
    with db.read() as s:
        assert members.get_member(s, member_id=duplicate.id).merged_into_id == survivor.id
        assert s.scalar(select(func.count()).select_from(ConsentEvent)
                        .where(ConsentEvent.member_id == survivor.id)) == 1
    assert "Open the member it was merged into" in client.get(f"/members/{duplicate.id}").text
    r = client.post(f"/members/{survivor.id}/delete", data={"csrf_token": csrf},
                    follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/members"
    assert "Li Lei" not in client.get("/members").text.split('id="results"')[1]


def test_unknown_member_is_a_404_page(client: TestClient, world: World) -> None:
    web_login(client, "owner")
    r = client.get("/members/01900000-0000-7000-8000-000000000000")
    assert r.status_code == 404 and "Page not found" in r.text
    assert client.get("/members/not-a-uuid").status_code == 404
