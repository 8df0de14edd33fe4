"""Member import and export through the HTTP API: roles, CSRF, problems, streaming CSV."""

from __future__ import annotations

import csv
import io
import json

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from patron.api.app import create_app
from patron.auth import audit
from patron.core.clock import FixedClock
from patron.core.db import Database
from patron.core.settings import Settings
from patron.members.models import Member
from tests.factories import World, key_headers, login

CSV = ("姓名,手机号,生日,门店,短信授权\r\n"
       "张三,13911140001,1990-08-15,A,是\r\n"
       "李四,12345,,A,否\r\n"
       "王五,13911140003,1990-02-30,,\r\n"
       "赵六,13911140004,,,\r\n").encode()


def _members(db: Database) -> int:
    with db.read() as s:
        return s.scalar(select(func.count()).select_from(Member)) or 0


def _upload(client: TestClient, csrf: str | None, data: bytes = CSV,
            filename: str = "members.csv", **form: str) -> tuple[int, dict[str, object]]:
    headers = {"X-CSRF-Token": csrf} if csrf else {}
    r = client.post("/api/v1/members/import", headers=headers,
                    files={"file": (filename, data, "text/csv")}, data=form)
    body: dict[str, object] = r.json()
    return r.status_code, body


def test_manager_imports_a_csv_and_gets_every_rejected_row(
    client: TestClient, world: World, db: Database
) -> None:
    csrf = login(client, "manager-a")
    status, body = _upload(client, csrf)
    assert status == 200, body
    assert body == {
        "dry_run": False, "total": 4, "imported": 2, "rejected": 2,
        "errors": [
            {"row": 3, "field": "phone", "value": "12345",
             "message": "Not a valid phone number for region CN: '12345'"},
            {"row": 4, "field": "birthday", "value": "1990-02-30",
             "message": "Day must be between 1 and 28"},
        ]}
    r = client.get("/api/v1/members", params={"q": "13911140001"})
    assert r.json()["items"][0]["name"] == "张三"
    with db.read() as s:
        details = audit.list_entries(s, action="member.imported")[0].details
    assert details == {"file": "members.csv", "total": 4, "imported": 2, "rejected": 2}


def test_dry_run_and_an_explicit_mapping(client: TestClient, world: World,
                                         db: Database) -> None:
    csrf = login(client, "owner")
    data = b"Who,Mobile number,Shop\r\nLi,13911141001,B\r\n"
    mapping = json.dumps({"name": "Who", "phone": "Mobile number", "home_store": "Shop"})
    status, body = _upload(client, csrf, data, mapping=mapping, dry_run="true")
    assert (status, body["dry_run"], body["imported"]) == (200, True, 1)
    assert _members(db) == 0
    status, body = _upload(client, csrf, data, mapping=mapping)
    assert (status, body["imported"]) == (200, 1)
    assert _members(db) == 1


def test_cashiers_and_pos_keys_are_403_on_import_and_export(
    client: TestClient, world: World, db: Database
) -> None:
    for headers in (key_headers(world.key_a), key_headers(world.key_b)):
        r = client.post("/api/v1/members/import", headers=headers,
                        files={"file": ("m.csv", CSV, "text/csv")})
        assert r.status_code == 403
        assert client.get("/api/v1/members/export.csv", headers=headers).status_code == 403
    csrf = login(client, "cashier-a")
    status, body = _upload(client, csrf)
    assert (status, body["status"]) == (403, 403)
    assert client.get("/api/v1/members/export.csv").status_code == 403
    assert _members(db) == 0


def test_import_without_csrf_token_is_refused(client: TestClient, world: World) -> None:
    login(client, "manager-a")
    status, _ = _upload(client, None)
    assert status == 403


def test_a_file_that_cannot_be_read_is_422_naming_file(client: TestClient, world: World) -> None:
    csrf = login(client, "manager-a")
    for data, filename in ((b"%PDF-1.7", "members.pdf"), (b"PK\x03\x04garbage", "m.xlsx"),
                           (b"", "empty.csv")):
        r = client.post("/api/v1/members/import", headers={"X-CSRF-Token": csrf},
                        files={"file": (filename, data, "application/octet-stream")})
        assert r.status_code == 422, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        assert [e["field"] for e in r.json()["errors"]] == ["file"]


def test_a_bad_mapping_is_422_naming_mapping(client: TestClient, world: World) -> None:
    csrf = login(client, "manager-a")
    for mapping in ("not json", "[1, 2]", json.dumps({"name": "姓名", "phone": "Handy"})):
        status, body = _upload(client, csrf, mapping=mapping)
        assert status == 422
        assert [e["field"] for e in body["errors"]] == ["mapping"]  # type: ignore[union-attr]


def test_uploads_above_the_limit_are_413(settings: Settings, db: Database, clock: FixedClock,
                                         world: World) -> None:
    small = settings.model_copy(update={"max_upload_bytes": 64})
    with TestClient(create_app(small, db=db, clock=clock)) as client:
        csrf = login(client, "owner")
        status, body = _upload(client, csrf)
    assert status == 413
    assert [e["field"] for e in body["errors"]] == ["file"]  # type: ignore[union-attr]


def test_export_streams_csv_with_bom_that_imports_back(
    client: TestClient, world: World, db: Database
) -> None:
    csrf = login(client, "owner")  # an owner has no store of their own: name the default
    status, body = _upload(client, csrf, home_store_id=str(world.store_a.id))
    assert (status, body["imported"]) == (200, 2)

    r = client.get("/api/v1/members/export.csv")

    assert r.status_code == 200
    assert r.headers["content-type"] == "text/csv; charset=utf-8"
    assert r.headers["content-disposition"] == 'attachment; filename="members-2026-11-23.csv"'
    assert r.content.startswith(b"\xef\xbb\xbfcard_no,name,phone,")
    rows = list(csv.DictReader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert sorted((row["name"], row["phone"], row["home_store"], row["sms_consent"])
                  for row in rows) == [("张三", "+8613911140001", "A", "yes"),
                                       ("赵六", "+8613911140004", "A", "no")]
    with db.read() as s:
        entry = audit.list_entries(s, action="member.exported")[0]
        assert entry.details["count"] == 2 and entry.actor_label == "owner"

    r = client.get("/api/v1/members/export.csv", params={"home_store_id": str(world.store_b.id)})
    assert r.status_code == 200 and len(r.content.decode("utf-8-sig").splitlines()) == 1


def test_manager_exports_only_their_stores_and_not_another(
    client: TestClient, world: World
) -> None:
    login(client, "manager-b")
    r = client.get("/api/v1/members/export.csv", params={"home_store_id": str(world.store_a.id)})
    assert r.status_code == 403
    r = client.get("/api/v1/members/export.csv")
    assert r.status_code == 200
    assert r.content.decode("utf-8-sig").splitlines() == [
        "card_no,name,phone,email,gender,birthday,birthday_calendar,birth_leap_month,tags,"
        "preferences,home_store,joined_at,sms_consent,email_consent"]
