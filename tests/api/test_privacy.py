"""Export, erasure and data requests over HTTP: roles, problem+json, nothing left behind."""

from __future__ import annotations

import csv
import io
import re
import uuid
import zipfile

from fastapi.testclient import TestClient
from sqlalchemy import select

from patron.care.service import member_token
from patron.core.db import Database
from patron.members.privacy_models import DataRequest
from tests.factories import World, key_headers, login, make_product
from tests.members.privacy_support import find_strings

PHONE = "13955550123"
NAME = "Sun Lihua"
EMAIL = "sun.lihua@example.com"


def _member_with_history(client: TestClient, db: Database, world: World) -> str:
    """Enrol, top up and check out over HTTP, as a till would (with Idempotency-Keys)."""
    with db.write() as s:
        make_product(s, sku="TEA", price_minor=2_500)
    pos = key_headers(world.key_a)
    r = client.post("/api/v1/members", headers=pos, json={
        "name": NAME, "phone": PHONE, "email": EMAIL, "home_store_id": str(world.store_a.id),
        "sms_consent": True})
    assert r.status_code == 201, r.text
    member_id: str = r.json()["id"]
    r = client.post(f"/api/v1/members/{member_id}/wallet/top-ups",
                    headers=pos | {"Idempotency-Key": "top-1"}, json={"amount_minor": 10_000})
    assert r.status_code == 201, r.text
    r = client.post("/api/v1/sales", headers=pos | {"Idempotency-Key": "sale-1"}, json={
        "phone": PHONE, "lines": [{"sku": "TEA", "quantity": 2}],
        "payments": {"card_minor": 1_000, "wallet_minor": 4_000}})
    assert r.status_code == 201, r.text
    return member_id


def test_export_is_json_for_managers_and_refused_to_others(
    client: TestClient, db: Database, world: World
) -> None:
    member_id = _member_with_history(client, db, world)
    path = f"/api/v1/members/{member_id}/export"
    assert client.get(path).status_code == 401
    assert client.get(path, headers=key_headers(world.key_a)).status_code == 403
    login(client, "cashier-a")
    r = client.get(path)
    assert r.status_code == 403 and r.headers["content-type"].startswith(
        "application/problem+json")
    login(client, "manager-b")
    assert client.get(path).status_code == 403
    login(client, "manager-a")
    r = client.get(path)
    assert r.status_code == 200, r.text
    data = r.json()
    assert data["profile"]["phone"] == "+86" + PHONE and data["profile"]["email"] == EMAIL
    assert len(data["records"]["sales"]) == 1 and len(data["records"]["sale_lines"]) == 1
    assert data["wallet"]["total_minor"] == 6_000
    audit = client.get("/api/v1/audit", params={"action": "member.data_exported"})
    if audit.status_code == 200:  # managers may not read the audit log; the owner can
        assert audit.json()
    login(client, "owner")
    entries = client.get("/api/v1/audit", params={"action": "member.data_exported"}).json()
    items = entries["items"] if isinstance(entries, dict) else entries
    assert [e["entity_id"] for e in items] == [member_id]


def test_erasure_over_http_is_owner_only_idempotent_and_leaves_nothing(
    client: TestClient, db: Database, world: World
) -> None:
    member_id = _member_with_history(client, db, world)
    path = f"/api/v1/members/{member_id}/erase"
    body = {"reason": "the member asked at the counter"}
    assert client.post(path, json=body).status_code == 401
    assert client.post(path, json=body, headers=key_headers(world.key_a)).status_code == 403
    csrf = login(client, "manager-a")
    assert client.post(path, json=body, headers={"X-CSRF-Token": csrf}).status_code == 403
    csrf = login(client, "owner")
    h = {"X-CSRF-Token": csrf}
    r = client.post(path, json={"reason": ""}, headers=h)
    assert r.status_code == 422 and "reason" in r.text
    r = client.post(path, json=body | {"status": "active"}, headers=h)  # no mass assignment
    assert r.status_code == 422
    with db.read() as s:
        assert find_strings(s, [NAME, EMAIL, PHONE])
    first = client.post(path, json=body, headers=h)
    assert first.status_code == 200, first.text
    assert first.json()["already_erased"] is False
    again = client.post(path, json=body, headers=h)
    assert again.status_code == 200 and again.json()["already_erased"] is True
    with db.read() as s:
        assert find_strings(s, [NAME, EMAIL, PHONE]) == []  # idempotency answers included
    lookup = client.get("/api/v1/members/lookup", params={"phone": PHONE},
                        headers=key_headers(world.key_a))
    assert lookup.status_code == 404
    sale = client.post("/api/v1/sales", headers=key_headers(world.key_a) | {
        "Idempotency-Key": "sale-2"}, json={"phone": PHONE, "lines": [
            {"sku": "TEA", "quantity": 1}], "payments": {"card_minor": 2_500}})
    assert sale.status_code in (404, 422) and "phone" in sale.text
    exported = client.get(f"/api/v1/members/{member_id}/export").json()
    assert exported["erased_at"] and exported["profile"]["phone"] is None
    assert len(exported["records"]["sales"]) == 1  # the books stay


def test_data_requests_from_staff_and_from_the_member_page(
    client: TestClient, db: Database, world: World
) -> None:
    member_id = _member_with_history(client, db, world)
    csrf = login(client, "cashier-a")
    r = client.post(f"/api/v1/members/{member_id}/data-requests", json={"kind": "export"},
                    headers={"X-CSRF-Token": csrf})
    assert r.status_code == 201 and r.json()["status"] == "pending"
    bad = client.post(f"/api/v1/members/{member_id}/data-requests", json={"kind": "all"},
                      headers={"X-CSRF-Token": csrf})
    assert bad.status_code == 422 and "kind" in bad.text
    assert client.get("/api/v1/data-requests").status_code == 403
    client.cookies.clear()
    # the member asks for erasure on their own page
    secret = client.app.state.ctx.settings.secret_key.get_secret_value()  # type: ignore[attr-defined]
    r = client.get(f"/m/{member_token(secret, uuid.UUID(member_id))}", follow_redirects=False)
    assert r.status_code == 303
    found = re.search(r'action="/m/logout"[^>]*>\s*<input type="hidden" name="csrf_token" '
                      r'value="([^"]+)"', client.get("/m").text)
    assert found
    r = client.post("/m/data-request", data={"csrf_token": found.group(1), "kind": "erasure"},
                    follow_redirects=False)
    assert r.status_code == 303
    client.cookies.clear()
    login(client, "manager-a")
    listed = client.get("/api/v1/data-requests", params={"status": "pending"}).json()
    assert sorted((x["kind"], x["source"]) for x in listed) == [("erasure", "self_service"),
                                                                ("export", "staff")]
    login(client, "manager-b")
    assert client.get("/api/v1/data-requests").json() == []
    csrf = login(client, "owner")
    erasure = next(x for x in listed if x["kind"] == "erasure")
    r = client.post(f"/api/v1/members/{member_id}/erase", headers={"X-CSRF-Token": csrf},
                    json={"reason": "asked on the member page", "request_id": erasure["id"]})
    assert r.status_code == 200, r.text
    with db.read() as s:
        states = {row.kind: row.status for row in s.scalars(select(DataRequest))}
    assert states == {"erasure": "done", "export": "cancelled"}


def test_export_as_a_zip_of_csv_files_matches_the_json_and_is_audited(
    client: TestClient, db: Database, world: World
) -> None:
    member_id = _member_with_history(client, db, world)
    path = f"/api/v1/members/{member_id}/export"
    login(client, "cashier-a")
    refused = client.get(path, params={"format": "zip"})
    assert refused.status_code == 403
    login(client, "manager-a")
    assert client.get(path, params={"format": "xml"}).status_code == 422
    r = client.get(path, params={"format": "zip"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/zip"
    assert re.fullmatch(rf'attachment; filename="patron-member-{member_id}-\d{{8}}\.zip"',
                        r.headers["content-disposition"])
    archive = zipfile.ZipFile(io.BytesIO(r.content))
    data = client.get(path).json()
    for table, rows in data["records"].items():
        text = archive.read(f"records/{table}.csv").decode("utf-8-sig")
        assert len(list(csv.DictReader(io.StringIO(text)))) == len(rows), table
    profile = archive.read("profile.csv").decode("utf-8-sig")
    assert NAME in profile and "+86" + PHONE in profile
    login(client, "owner")
    entries = client.get("/api/v1/audit", params={"action": "member.data_exported"}).json()
    items = entries["items"] if isinstance(entries, dict) else entries
    assert sorted(e["details"]["format"] for e in items) == ["json", "zip"]


def test_notes_over_http_for_staff_of_the_home_store(
    client: TestClient, db: Database, world: World
) -> None:
    r = client.post("/api/v1/members", headers=key_headers(world.key_a), json={
        "name": NAME, "phone": PHONE, "home_store_id": str(world.store_a.id)})
    member_id = r.json()["id"]
    path = f"/api/v1/members/{member_id}/notes"
    assert client.post(path, headers=key_headers(world.key_a),
                       json={"body": "x"}).status_code == 403  # a note needs an author
    csrf = {"X-CSRF-Token": login(client, "manager-b")}
    assert client.post(path, json={"body": "x"}, headers=csrf).status_code == 403
    assert client.get(path).status_code == 403
    csrf = {"X-CSRF-Token": login(client, "cashier-a")}
    too_long = client.post(path, json={"body": "x" * 2001}, headers=csrf)
    assert too_long.status_code == 422 and "body" in too_long.text
    blank = client.post(path, json={"body": "   "}, headers=csrf)
    assert blank.status_code == 422 and '"body"' in blank.text
    r = client.post(path, json={"body": "喜欢燕麦奶"}, headers=csrf)
    assert r.status_code == 201, r.text
    assert r.json()["author_name"] == "cashier-a" and r.json()["author_id"] == str(
        world.cashier_a.id)
    listed = client.get(path).json()
    assert [n["body"] for n in listed] == ["喜欢燕麦奶"]
