"""Idempotency-Key semantics on value-moving calls, through the HTTP API."""

from __future__ import annotations

import httpx
from fastapi.testclient import TestClient

from tests.factories import World, key_headers


def _member(client: TestClient, world: World) -> str:
    r = client.post("/api/v1/members", headers=key_headers(world.key_a),
                    json={"name": "Wallet", "phone": "13912345678"})
    assert r.status_code == 201
    member_id: str = r.json()["id"]
    return member_id


def _post(client: TestClient, world: World, path: str, body: dict[str, object],
          key: str | None) -> httpx.Response:
    headers = key_headers(world.key_a) | ({"Idempotency-Key": key} if key else {})
    return client.post(path, headers=headers, json=body)


def test_retry_returns_the_first_answer_byte_for_byte_and_moves_nothing_twice(
    client: TestClient, world: World
) -> None:
    m = _member(client, world)
    path = f"/api/v1/members/{m}/wallet/top-ups"
    first = _post(client, world, path, {"amount_minor": 1000}, "k-1")
    again = _post(client, world, path, {"amount_minor": 1000}, "k-1")
    assert first.status_code == again.status_code == 201
    assert first.content == again.content
    assert again.headers["Idempotent-Replayed"] == "true"
    wallet = client.get(f"/api/v1/members/{m}/wallet", headers=key_headers(world.key_a)).json()
    assert wallet["balance_minor"] == 1000
    assert len(wallet["entries"]) == 1


def test_same_key_with_another_body_is_refused(client: TestClient, world: World) -> None:
    m = _member(client, world)
    path = f"/api/v1/members/{m}/wallet/top-ups"
    assert _post(client, world, path, {"amount_minor": 1000}, "k-2").status_code == 201
    r = _post(client, world, path, {"amount_minor": 9000}, "k-2")
    assert r.status_code == 422
    assert r.json()["code"] == "idempotency_key_reused"


def test_missing_key_is_refused_naming_the_header(client: TestClient, world: World) -> None:
    m = _member(client, world)
    r = _post(client, world, f"/api/v1/members/{m}/wallet/top-ups", {"amount_minor": 1}, None)
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "Idempotency-Key"


def test_a_failed_request_stores_nothing_so_the_key_can_be_used_again(
    client: TestClient, world: World
) -> None:
    m = _member(client, world)
    spend = f"/api/v1/members/{m}/wallet/spends"
    r = _post(client, world, spend, {"amount_minor": 500}, "k-3")
    assert r.status_code == 422
    assert r.json()["code"] == "insufficient_balance"
    _post(client, world, f"/api/v1/members/{m}/wallet/top-ups", {"amount_minor": 800}, "k-4")
    r = _post(client, world, spend, {"amount_minor": 500}, "k-3")
    assert r.status_code == 201
    assert r.json()["balance_minor"] == 300


def test_keys_are_scoped_to_the_caller(client: TestClient, world: World) -> None:
    m = _member(client, world)
    path = f"/api/v1/members/{m}/wallet/top-ups"
    a = client.post(path, headers=key_headers(world.key_a) | {"Idempotency-Key": "same"},
                    json={"amount_minor": 100})
    b = client.post(path, headers=key_headers(world.key_b) | {"Idempotency-Key": "same"},
                    json={"amount_minor": 100})
    assert a.status_code == b.status_code == 201
    assert "Idempotent-Replayed" not in b.headers
    assert b.json()["balance_minor"] == 200


def test_pos_key_cannot_book_for_another_store(client: TestClient, world: World) -> None:
    m = _member(client, world)
    r = _post(client, world, f"/api/v1/members/{m}/wallet/top-ups",
              {"amount_minor": 100, "store_id": str(world.store_b.id)}, "k-5")
    assert r.status_code == 403
