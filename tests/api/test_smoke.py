from __future__ import annotations

from fastapi.testclient import TestClient

from tests.factories import World, key_headers, login


def test_anonymous_gets_401_problem(client: TestClient) -> None:
    r = client.get("/api/v1/members")
    assert r.status_code == 401
    assert r.headers["content-type"].startswith("application/problem+json")


def test_owner_enrolls_and_finds_by_last4(client: TestClient, world: World) -> None:
    csrf = login(client, "owner")
    r = client.post("/api/v1/members", json={"name": "Han Meimei", "phone": "139 1234 5678",
                                             "home_store_id": str(world.store_a.id)},
                    headers={"X-CSRF-Token": csrf})
    assert r.status_code == 201, r.text
    r = client.get("/api/v1/members", params={"q": "5678"}, headers=key_headers(world.key_a))
    assert r.status_code == 200
    assert r.json()["items"][0]["phone"] == "139****5678"
