"""Authentication, roles, object-level checks, CSRF and masking through the HTTP API."""

from __future__ import annotations

import uuid

import pytest
from fastapi.testclient import TestClient

from tests.factories import PASSWORD, World, key_headers, login


def _enroll(client: TestClient, headers: dict[str, str], store_id: uuid.UUID,
            phone: str = "13912345678") -> dict[str, object]:
    r = client.post("/api/v1/members", headers=headers,
                    json={"name": "韩梅梅", "phone": phone, "home_store_id": str(store_id)})
    assert r.status_code == 201, r.text
    body: dict[str, object] = r.json()
    return body


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/api/v1/members"), ("POST", "/api/v1/members"), ("GET", "/api/v1/stores"),
    ("GET", "/api/v1/users"), ("GET", "/api/v1/audit"), ("GET", "/api/v1/me"),
    ("GET", "/api/v1/api-keys"), ("DELETE", "/api/v1/session"),
])
def test_anonymous_is_401_everywhere(client: TestClient, method: str, path: str) -> None:
    r = client.request(method, path, json={})
    assert r.status_code == 401
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["status"] == 401


def test_wrong_password_and_revoked_or_forged_keys_are_401(
    client: TestClient, world: World
) -> None:
    r = client.post("/api/v1/session", json={"username": "owner", "password": "nope-nope"})
    assert r.status_code == 401
    r = client.get("/api/v1/me", headers=key_headers(world.key_a[:-2] + "xx"))
    assert r.status_code == 401
    csrf = login(client, "owner")
    keys = client.get("/api/v1/api-keys").json()
    key_a = next(k for k in keys if k["store_id"] == str(world.store_a.id))
    r = client.delete(f"/api/v1/api-keys/{key_a['id']}", headers={"X-CSRF-Token": csrf})
    assert r.status_code == 200 and r.json()["revoked_at"]
    client.cookies.clear()
    assert client.get("/api/v1/me", headers=key_headers(world.key_a)).status_code == 401


def test_cashier_is_403_on_owner_and_manager_endpoints(client: TestClient, world: World) -> None:
    csrf = login(client, "cashier-a")
    h = {"X-CSRF-Token": csrf}
    assert client.get("/api/v1/audit").status_code == 403
    assert client.post("/api/v1/stores", headers=h,
                       json={"code": "C9", "name": "New"}).status_code == 403
    assert client.get("/api/v1/users").status_code == 403
    assert client.post("/api/v1/api-keys", headers=h,
                       json={"store_id": str(world.store_a.id), "name": "x"}).status_code == 403
    r = client.post("/api/v1/users", headers=h, json={
        "username": "sneaky", "display_name": "S", "password": PASSWORD, "role": "owner"})
    assert r.status_code == 403
    assert r.json()["code"] == "forbidden"


def test_cashier_and_pos_key_see_masked_phones_managers_see_full(
    client: TestClient, world: World
) -> None:
    m = _enroll(client, key_headers(world.key_a), world.store_a.id)
    assert m["phone"] == "139****5678" and m["phone_masked"] is True
    login(client, "cashier-a")
    assert client.get(f"/api/v1/members/{m['id']}").json()["phone"] == "139****5678"
    assert client.get("/api/v1/members", params={"q": "5678"}).json()["items"][0]["phone"] \
        == "139****5678"
    login(client, "manager-b")
    assert client.get(f"/api/v1/members/{m['id']}").json()["phone"] == "+8613912345678"


def test_pos_key_of_store_a_cannot_read_store_b_objects(client: TestClient, world: World) -> None:
    h = key_headers(world.key_a)
    assert client.get(f"/api/v1/stores/{world.store_b.id}/staff", headers=h).status_code == 403
    assert client.get(f"/api/v1/users/{world.manager_b.id}", headers=h).status_code == 403
    assert client.get("/api/v1/api-keys", headers=h,
                      params={"store_id": str(world.store_b.id)}).status_code == 403
    me = client.get("/api/v1/me", headers=h).json()
    assert me["kind"] == "api_key" and me["store_ids"] == [str(world.store_a.id)]
    # ...but members are shared by the chain: store A's till finds store B's member
    m = _enroll(client, key_headers(world.key_b), world.store_b.id)
    r = client.get("/api/v1/members/lookup", headers=h, params={"card_no": m["card_no"]})
    assert r.status_code == 200 and r.json()["id"] == m["id"]


def test_manager_sees_only_their_stores_staff(client: TestClient, world: World) -> None:
    login(client, "manager-a")
    names = {u["username"] for u in client.get("/api/v1/users").json()}
    assert names == {"manager-a", "cashier-a"}
    assert client.get(f"/api/v1/stores/{world.store_b.id}/staff").status_code == 403
    assert client.get(f"/api/v1/users/{world.manager_b.id}").status_code == 403
    assert client.get(f"/api/v1/users/{world.cashier_a.id}").status_code == 200


def test_manager_can_hire_cashiers_for_own_store_only(client: TestClient, world: World) -> None:
    h = {"X-CSRF-Token": login(client, "manager-a")}
    body = {"username": "new-cashier", "display_name": "New", "password": PASSWORD,
            "role": "cashier", "store_ids": [str(world.store_a.id)]}
    assert client.post("/api/v1/users", headers=h, json=body).status_code == 201
    body |= {"username": "other", "store_ids": [str(world.store_b.id)]}
    assert client.post("/api/v1/users", headers=h, json=body).status_code == 403
    body |= {"username": "boss", "role": "manager", "store_ids": [str(world.store_a.id)]}
    assert client.post("/api/v1/users", headers=h, json=body).status_code == 403


def test_role_change_is_audited_and_visible_to_owner(client: TestClient, world: World) -> None:
    h = {"X-CSRF-Token": login(client, "owner")}
    r = client.patch(f"/api/v1/users/{world.cashier_a.id}", headers=h,
                     json={"role": "manager", "store_ids": [str(world.store_a.id)]})
    assert r.status_code == 200 and r.json()["role"] == "manager"
    entries = client.get("/api/v1/audit", params={"action": "user.updated"}).json()
    assert entries[0]["entity_id"] == str(world.cashier_a.id)
    assert entries[0]["details"]["role"] == ["cashier", "manager"]
    assert entries[0]["actor_label"] == "owner"


def test_cookie_session_needs_csrf_token_on_unsafe_requests(
    client: TestClient, world: World
) -> None:
    csrf = login(client, "manager-a")
    body = {"name": "No Token", "phone": "13912345678", "home_store_id": str(world.store_a.id)}
    r = client.post("/api/v1/members", json=body)
    assert r.status_code == 403 and "CSRF" in r.json()["detail"]
    r = client.post("/api/v1/members", json=body, headers={"X-CSRF-Token": "forged"})
    assert r.status_code == 403
    assert client.get("/api/v1/members").json()["total"] == 0  # nothing was written
    r = client.post("/api/v1/members", json=body, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 201


def test_logout_ends_the_session(client: TestClient, world: World) -> None:
    csrf = login(client, "owner")
    assert client.delete("/api/v1/session", headers={"X-CSRF-Token": csrf}).status_code == 204
    assert client.get("/api/v1/me").status_code == 401


def test_bad_input_is_problem_json_naming_the_field_and_writes_nothing(
    client: TestClient, world: World
) -> None:
    h = key_headers(world.key_a)
    r = client.post("/api/v1/members", headers=h, json={"name": "X", "phone": "12345"})
    assert r.status_code == 422
    problem = r.json()
    assert problem["errors"][0]["field"] == "phone"
    assert problem["type"].endswith("/invalid_phone")
    r = client.post("/api/v1/members", headers=h, json={"name": "", "phone": "13912345678",
                                                        "email": "not-an-email"})
    assert r.status_code == 422
    assert {e["field"] for e in r.json()["errors"]} == {"name", "email"}
    r = client.post("/api/v1/members", headers=h, json={
        "name": "Y", "phone": "13912345678", "birthday_calendar": "lunar", "birth_month": 2,
        "birth_day": 31})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "birth_day"
    assert client.get("/api/v1/members", headers=h).json()["total"] == 0
    _enroll(client, h, world.store_a.id)
    r = client.post("/api/v1/members", headers=h, json={"name": "Z", "phone": "+8613912345678"})
    assert r.status_code == 409 and r.json()["errors"][0]["field"] == "phone"


def test_ids_in_the_api_are_random_uuids(client: TestClient, world: World) -> None:
    h = key_headers(world.key_a)
    ids = [_enroll(client, h, world.store_a.id, phone=f"1391234567{i}")["id"] for i in range(3)]
    assert all(uuid.UUID(str(i)).version == 7 for i in ids)
    assert client.get(f"/api/v1/members/{uuid.uuid4()}", headers=h).status_code == 404
    assert client.get("/api/v1/members/1", headers=h).status_code == 422


def test_openapi_is_published(client: TestClient) -> None:
    spec = client.get("/api/v1/openapi.json").json()
    assert "/api/v1/members" in spec["paths"]
    assert client.get("/docs").status_code == 200


def test_anyone_may_change_their_own_language_but_not_their_role(
    client: TestClient, world: World
) -> None:
    h = {"X-CSRF-Token": login(client, "cashier-a")}
    r = client.patch(f"/api/v1/users/{world.cashier_a.id}", headers=h,
                     json={"language": "zh_CN"})
    assert r.status_code == 200
    assert r.json()["language"] == "zh_CN"
    r = client.patch(f"/api/v1/users/{world.cashier_a.id}", headers=h, json={"role": "owner"})
    assert r.status_code == 403
    assert client.get(f"/api/v1/users/{world.manager_a.id}").status_code == 403
