"""Checkout and refunds over HTTP: idempotent, store-scoped, problem+json on bad input."""

from __future__ import annotations

from fastapi.testclient import TestClient

from patron.core.clock import FixedClock
from patron.core.db import Database
from tests.factories import World, key_headers, make_member, make_product


def _setup(db: Database, clock: FixedClock, world: World) -> str:
    with db.write() as s:
        make_product(s, sku="LATTE", price_minor=3200)
        return str(make_member(s, clock, world.store_a, phone="13912345678").id)


def test_sale_retry_returns_the_same_receipt_and_books_once(
    client: TestClient, db: Database, clock: FixedClock, world: World
) -> None:
    member_id = _setup(db, clock, world)
    body = {"member_id": member_id, "lines": [{"sku": "LATTE", "quantity": 2}],
            "payments": {"card_minor": 6400}}
    h = key_headers(world.key_a) | {"Idempotency-Key": "till-1-0001"}
    first = client.post("/api/v1/sales", json=body, headers=h)
    again = client.post("/api/v1/sales", json=body, headers=h)
    assert first.status_code == 201, first.text
    assert again.content == first.content
    receipt = first.json()
    assert receipt["total_minor"] == 6400
    assert receipt["points_earned"] == 64
    assert receipt["points_pending"] == 64
    points = client.get(f"/api/v1/members/{member_id}/points",
                        headers=key_headers(world.key_a)).json()
    assert points["pending"] == 64
    assert len([e for e in points["entries"] if e["kind"] == "earn"]) == 1


def test_refund_over_http_and_store_scoping(
    client: TestClient, db: Database, clock: FixedClock, world: World
) -> None:
    member_id = _setup(db, clock, world)
    body = {"member_id": member_id, "lines": [{"sku": "LATTE", "quantity": 3}],
            "payments": {"cash_minor": 9600}}
    sale = client.post("/api/v1/sales", json=body,
                       headers=key_headers(world.key_a) | {"Idempotency-Key": "s-1"}).json()
    line_id = sale["lines"][0]["id"]
    assert client.get(f"/api/v1/sales/{sale['sale_id']}",
                      headers=key_headers(world.key_b)).status_code == 403
    r = client.post(f"/api/v1/sales/{sale['sale_id']}/refunds",
                    json={"lines": [{"line_id": line_id, "quantity": 1}]},
                    headers=key_headers(world.key_a) | {"Idempotency-Key": "r-1"})
    assert r.status_code == 201, r.text
    refund = r.json()
    assert refund["amount_minor"] == 3200
    assert refund["returned"] == [{"method": "cash", "amount_minor": 3200,
                                   "refunded_minor": 3200}]
    assert refund["points_clawed_back"] == 32
    r = client.post(f"/api/v1/sales/{sale['sale_id']}/refunds",
                    json={"lines": [{"line_id": line_id, "quantity": 3}]},
                    headers=key_headers(world.key_a) | {"Idempotency-Key": "r-2"})
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "lines.0.quantity"


def test_bad_basket_is_problem_json_naming_the_field(
    client: TestClient, db: Database, clock: FixedClock, world: World
) -> None:
    _setup(db, clock, world)
    h = key_headers(world.key_a)
    r = client.post("/api/v1/sales", headers=h | {"Idempotency-Key": "b-1"},
                    json={"lines": [{"sku": "GHOST", "quantity": 1}],
                          "payments": {"cash_minor": 100}})
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "lines.0.sku"
    r = client.post("/api/v1/sales", headers=h | {"Idempotency-Key": "b-2"},
                    json={"lines": [{"sku": "LATTE", "quantity": -1}]})
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "lines.0.quantity"
    r = client.post("/api/v1/sales", headers=h | {"Idempotency-Key": "b-3"},
                    json={"lines": [{"sku": "LATTE", "quantity": 1}],
                          "payments": {"cash_minor": 3200},
                          "occurred_at": "2026-11-25T10:00:00+08:00"})
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "occurred_at"


def test_offline_till_reports_a_sale_late_once(
    client: TestClient, db: Database, clock: FixedClock, world: World
) -> None:
    _setup(db, clock, world)
    body = {"lines": [{"sku": "LATTE", "quantity": 1}], "payments": {"cash_minor": 3200},
            "occurred_at": "2026-11-20T09:30:00+08:00", "receipt_no": "A-OFF-77"}
    h = key_headers(world.key_a)
    r = client.post("/api/v1/sales", json=body, headers=h | {"Idempotency-Key": "off-77"})
    assert r.status_code == 201
    assert r.json()["occurred_at"].startswith("2026-11-20T01:30:00")
    r2 = client.post("/api/v1/sales", json=body, headers=h | {"Idempotency-Key": "off-77"})
    assert r2.content == r.content
    r3 = client.post("/api/v1/sales", json=body, headers=h | {"Idempotency-Key": "off-77-b"})
    assert r3.status_code == 409
    assert r3.json()["errors"][0]["field"] == "receipt_no"
