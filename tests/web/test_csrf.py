"""Every form post needs the session's CSRF token; without it nothing changes."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from patron.auth.models import ApiKey, User
from patron.core.clock import FixedClock
from patron.core.db import Database
from patron.members.models import ConsentEvent, Member, Store
from tests.factories import PASSWORD, World, make_member
from tests.web.helpers import web_login


def _counts(db: Database) -> tuple[int, ...]:
    with db.read() as s:
        return tuple(s.scalar(select(func.count()).select_from(model)) or 0
                     for model in (Member, ConsentEvent, User, ApiKey, Store))


def test_posts_without_the_right_token_are_403_and_change_nothing(
    client: TestClient, world: World, db: Database, clock: FixedClock
) -> None:
    with db.write() as s:
        member = make_member(s, clock, world.store_a)
    web_login(client, "owner")
    before = _counts(db)
    posts = [
        ("/members/new", {"name": "X", "phone": "13800138000",
                          "home_store_id": str(world.store_a.id)}),
        (f"/members/{member.id}", {"name": "Changed", "home_store_id": str(world.store_a.id)}),
        (f"/members/{member.id}/consent", {"channel": "sms", "granted": "1"}),
        (f"/members/{member.id}/delete", {}),
        ("/staff", {"username": "sneaky", "display_name": "S", "password": PASSWORD,
                    "role": "owner"}),
        (f"/staff/{world.cashier_a.id}/active", {"active": "0"}),
        ("/api-keys", {"name": "till", "store_id": str(world.store_a.id)}),
        ("/stores", {"code": "C", "name": "C", "timezone": "Asia/Shanghai"}),
        ("/language", {"lang": "zh_CN"}),
        ("/logout", {}),
    ]
    for token in (None, "", "wrong-token"):
        for path, data in posts:
            sent = data if token is None else {**data, "csrf_token": token}
            r = client.post(path, data=sent, follow_redirects=False)
            assert r.status_code == 403, (path, token)
            assert "This form has expired" in r.text
    assert _counts(db) == before
    with db.read() as s:
        assert s.get(Member, member.id).name == "Li Lei"  # type: ignore[union-attr]
        assert s.get(User, world.cashier_a.id).active  # type: ignore[union-attr]
    assert client.get("/", follow_redirects=False).status_code == 200  # still signed in


def test_another_sessions_token_is_refused(client: TestClient, world: World, db: Database) -> None:
    other = TestClient(client.app)
    their_token = web_login(other, "owner")
    web_login(client, "owner")
    r = client.post("/stores", data={"csrf_token": their_token, "code": "C", "name": "C",
                                     "timezone": "Asia/Shanghai"})
    assert r.status_code == 403


def test_htmx_sends_the_token_as_a_header(client: TestClient, world: World, db: Database) -> None:
    csrf = web_login(client, "owner")
    assert f'hx-headers=\'{{"X-CSRF-Token": "{csrf}"}}\'' in client.get("/").text
    r = client.post("/stores", headers={"X-CSRF-Token": csrf}, follow_redirects=False,
                    data={"code": "C", "name": "C", "timezone": "Asia/Shanghai"})
    assert r.status_code == 303
    with db.read() as s:
        assert s.scalar(select(func.count()).select_from(Store)) == 3


def test_every_post_form_on_every_page_carries_the_token(
    client: TestClient, world: World, db: Database, clock: FixedClock
) -> None:
    with db.write() as s:
        member = make_member(s, clock, world.store_a)
    csrf = web_login(client, "owner")
    for path in ("/", "/members", f"/members/{member.id}", "/members/new", "/staff",
                 f"/staff/{world.cashier_a.id}", "/api-keys", "/stores",
                 f"/stores/{world.store_a.id}", "/audit", "/members/import"):
        html = client.get(path).text
        forms = html.split('method="post"')[1:]
        assert forms, path
        for form in forms:
            body = form.split("</form>")[0]
            assert f'name="csrf_token" value="{csrf}"' in body, path
