"""Staff, API keys, stores, audit log and export: who sees what, and what they may change."""

from __future__ import annotations

import csv
import io

from fastapi.testclient import TestClient
from sqlalchemy import select

from patron.auth.enums import Role
from patron.auth.models import ApiKey, AuditEntry, User
from patron.core.clock import FixedClock
from patron.core.db import Database
from patron.members.models import Store
from tests.factories import PASSWORD, World, make_member, make_user
from tests.web.helpers import web_login


def test_owner_sees_all_staff_manager_only_their_stores(client: TestClient, world: World) -> None:
    web_login(client, "owner")
    page = client.get("/staff").text
    for name in ("cashier-a", "manager-a", "manager-b", "owner"):
        assert name in page
    web_login(client, "manager-b")
    page = client.get("/staff").text
    assert "manager-b" in page
    assert "cashier-a" not in page and "manager-a" not in page
    assert client.get(f"/staff/{world.cashier_a.id}").status_code == 403


def test_cashier_gets_403_pages_for_staff_keys_and_audit(client: TestClient, world: World) -> None:
    web_login(client, "cashier-a")
    home = client.get("/").text
    assert 'href="/staff"' not in home and 'href="/audit"' not in home
    for path in ("/staff", "/api-keys", "/audit", "/members/import", "/members/export.csv"):
        r = client.get(path)
        assert r.status_code == 403, path
        assert "You don&#39;t have access to this page" in r.text


def test_audit_page_is_for_owners_only(client: TestClient, world: World) -> None:
    web_login(client, "manager-a")
    assert client.get("/audit").status_code == 403
    web_login(client, "owner")
    r = client.get("/audit")
    assert r.status_code == 200 and "user.created" in r.text and "api_key.created" in r.text
    filtered = client.get("/audit", params={"action": "store.created"}).text
    assert "store.created" in filtered and "user.created" not in filtered


def test_manager_creates_a_cashier_for_their_store(
    client: TestClient, world: World, db: Database
) -> None:
    csrf = web_login(client, "manager-a")
    page = client.get("/staff").text
    assert '<option value="manager"' not in page  # a manager is only offered cashiers
    r = client.post("/staff", data={"csrf_token": csrf, "username": "new-cashier",
                                    "display_name": "New Cashier", "password": PASSWORD,
                                    "role": "cashier", "store_ids": str(world.store_a.id)},
                    follow_redirects=False)
    assert r.status_code == 303
    assert "Staff account created." in client.get("/staff").text
    web_login(client, "new-cashier")


def test_staff_form_errors_name_the_field_and_keep_the_input(
    client: TestClient, world: World, db: Database
) -> None:
    csrf = web_login(client, "owner")
    r = client.post("/staff", data={"csrf_token": csrf, "username": "ab",
                                    "display_name": "Short", "password": PASSWORD,
                                    "role": "cashier", "store_ids": str(world.store_a.id)})
    assert r.status_code == 422
    assert 'id="e-username">Username: 3-64 letters' in r.text and 'value="Short"' in r.text
    assert PASSWORD not in r.text  # a password is never echoed back
    r = client.post("/staff", data={"csrf_token": csrf, "username": "two-stores",
                                    "display_name": "Two", "password": PASSWORD,
                                    "role": "cashier",
                                    "store_ids": [str(world.store_a.id), str(world.store_b.id)]})
    assert 'id="e-store_ids">A cashier works in exactly one store' in r.text
    r = client.post("/staff", data={"csrf_token": csrf, "username": "manager-a",
                                    "display_name": "Dup", "password": PASSWORD,
                                    "role": "cashier", "store_ids": str(world.store_a.id)})
    assert "id=\"e-username\">Username &#39;manager-a&#39; is taken" in r.text
    with db.read() as s:
        assert s.scalar(select(User).where(User.username == "two-stores")) is None


def test_manager_cannot_promote_anyone_even_with_a_forged_form(
    client: TestClient, world: World, db: Database
) -> None:
    csrf = web_login(client, "manager-a")
    r = client.post(f"/staff/{world.cashier_a.id}", data={
        "csrf_token": csrf, "display_name": "Cashier", "role": "owner"})
    assert r.status_code == 403
    with db.read() as s:
        assert s.get(User, world.cashier_a.id).role == "cashier"  # type: ignore[union-attr]


def test_owner_changes_role_and_stores(client: TestClient, world: World, db: Database) -> None:
    csrf = web_login(client, "owner")
    r = client.post(f"/staff/{world.cashier_a.id}", data={
        "csrf_token": csrf, "display_name": "Promoted", "role": "manager",
        "store_ids": [str(world.store_a.id), str(world.store_b.id)], "language": "zh_CN"},
        follow_redirects=False)
    assert r.status_code == 303, r.text
    with db.read() as s:
        user = s.get(User, world.cashier_a.id)
        assert user is not None and user.role == "manager" and user.language == "zh_CN"
        assert set(user.store_ids) == {world.store_a.id, world.store_b.id}


def test_manager_edits_own_name_without_role_rules_getting_in_the_way(
    client: TestClient, world: World, db: Database
) -> None:
    csrf = web_login(client, "manager-a")
    page = client.get(f"/staff/{world.manager_a.id}").text
    assert "Deactivate account" not in page
    r = client.post(f"/staff/{world.manager_a.id}", data={
        "csrf_token": csrf, "display_name": "Anna", "role": "manager",
        "store_ids": str(world.store_a.id)}, follow_redirects=False)
    assert r.status_code == 303


def test_api_key_secret_is_shown_once_and_revocation_works(
    client: TestClient, world: World, db: Database
) -> None:
    csrf = web_login(client, "manager-a")
    page = client.get("/api-keys").text
    assert "till A" in page and "till B" not in page  # only their store's keys
    r = client.post("/api-keys", data={"csrf_token": csrf, "name": "Till 2",
                                       "store_id": str(world.store_a.id)})
    assert r.status_code == 200 and "shown only once" in r.text
    secret = r.text.split('<code id="new-secret">')[1].split("</code>")[0]
    assert secret.startswith("pk_")
    assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {secret}"}).status_code == 200
    assert secret not in client.get("/api-keys").text
    r = client.post("/api-keys", data={"csrf_token": csrf, "name": "", "store_id": ""})
    assert r.status_code == 422 and 'id="e-store_id"' in r.text
    with db.read() as s:
        key_id = s.scalar(select(ApiKey.id).where(ApiKey.name == "Till 2"))
        assert key_id is not None
    r = client.post(f"/api-keys/{key_id}/revoke", data={"csrf_token": csrf}, follow_redirects=False)
    assert r.status_code == 303
    assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {secret}"}).status_code == 401
    r = client.post("/api-keys", data={"csrf_token": csrf, "name": "B till",
                                       "store_id": str(world.store_b.id)})
    assert r.status_code == 403  # not their store


def test_owner_opens_and_edits_stores_manager_cannot_open(
    client: TestClient, world: World, db: Database
) -> None:
    csrf = web_login(client, "manager-a")
    assert "Open a store" not in client.get("/stores").text
    r = client.post("/stores", data={"csrf_token": csrf, "code": "C", "name": "C",
                                     "timezone": "Asia/Shanghai"})
    assert r.status_code == 403
    csrf = web_login(client, "owner")
    r = client.post("/stores", data={"csrf_token": csrf, "code": "A", "name": "Dup",
                                     "timezone": "Asia/Shanghai"})
    assert r.status_code == 422 and 'id="e-code">Store code &#39;A&#39; is taken' in r.text
    r = client.post("/stores", data={"csrf_token": csrf, "code": "C-1", "name": "Store C",
                                     "timezone": "Mars/Olympus"})
    assert 'id="e-timezone">Unknown time zone' in r.text
    r = client.post("/stores", data={"csrf_token": csrf, "code": "C-1", "name": "Store C",
                                     "timezone": "Asia/Tokyo", "address": "1 Ginza"},
                    follow_redirects=False)
    assert r.status_code == 303
    with db.read() as s:
        store = s.scalar(select(Store).where(Store.code == "C-1"))
        assert store is not None and store.timezone == "Asia/Tokyo"
        store_id = store.id
    r = client.post(f"/stores/{store_id}", data={
        "csrf_token": csrf, "name": "Store C (Ginza)", "address": "1 Ginza",
        "timezone": "Asia/Tokyo", "active_shown": "1"}, follow_redirects=False)
    assert r.status_code == 303
    with db.read() as s:
        saved = s.get(Store, store_id)
        assert saved is not None and saved.name == "Store C (Ginza)" and not saved.active


def test_export_is_for_managers_masks_nothing_for_them_and_is_audited(
    client: TestClient, world: World, db: Database, clock: FixedClock
) -> None:
    with db.write() as s:
        make_member(s, clock, world.store_a, name="韩梅梅", phone="13912345678")
        make_member(s, clock, world.store_b, name="Other store", phone="13912340000")
    web_login(client, "manager-a")
    r = client.get("/members/export.csv")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert "attachment" in r.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert [row["name"] for row in rows] == ["韩梅梅"]
    assert rows[0]["phone"] == "+8613912345678"
    with db.read() as s:
        entry = s.scalar(select(AuditEntry).where(AuditEntry.action == "member.exported"))
        assert entry is not None and entry.details["count"] == 1


def test_new_cashier_user_is_listed_with_their_store(
    client: TestClient, world: World, db: Database, clock: FixedClock
) -> None:
    with db.write() as s:
        store_b = s.get(Store, world.store_b.id)
        assert store_b is not None
        make_user(s, clock, Role.CASHIER, [store_b], username="cashier-b")
    web_login(client, "manager-b")
    page = client.get("/staff").text
    assert "cashier-b" in page and "Store B" in page
