"""Stamp cards, packages and gift cards through the HTTP API: roles, problem+json naming
the field, Idempotency-Keys on every value-moving call, the PIN header and its lockout."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from patron.cards import service as cards
from patron.core.clock import FixedClock
from patron.core.db import Database
from tests.cards.support import Shop, coffees, make_sale, make_shop
from tests.factories import World, key_headers, login

PIN = "X-Gift-Card-PIN"


class Caller:
    """A client signed in as one user (cookie + CSRF) or holding one POS key."""

    def __init__(self, client: TestClient, headers: dict[str, str]) -> None:
        self.client, self.headers = client, headers

    def __call__(self, method: str, path: str, *, key: str | None = None,
                 pin: str | None = None, **kw: Any) -> httpx.Response:
        headers = self.headers | ({"Idempotency-Key": key} if key else {}) \
            | ({PIN: pin} if pin else {})
        return self.client.request(method, "/api/v1" + path, headers=headers, **kw)


@pytest.fixture
def callers(app: FastAPI, world: World) -> Iterator[dict[str, Caller]]:
    clients = [TestClient(app) for _ in range(2)]
    try:
        out = {}
        for c, user in zip(clients, ("manager-a", "cashier-a"), strict=True):
            out[user.split("-")[0]] = Caller(c, {"X-CSRF-Token": login(c, user)})
        out["pos"] = Caller(clients[0], key_headers(world.key_a))
        yield out
    finally:
        for c in clients:
            c.close()


@pytest.fixture
def shop(db: Database) -> Shop:
    with db.write() as s:
        return make_shop(s)


def _member(pos: Caller) -> str:
    r = pos("POST", "/members", json={"name": "Han Meimei", "phone": "13912345678"})
    assert r.status_code == 201, r.text
    member_id: str = r.json()["id"]
    return member_id


def _created(r: httpx.Response) -> dict[str, Any]:
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


def _problem(r: httpx.Response, status: int, code: str, field: str | None = None) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["code"] == code, body
    if field is not None:
        assert body["errors"][0]["field"] == field, body


def _batch(manager: Caller, key: str, count: int = 1, value: int = 10_000) -> list[Any]:
    body = _created(manager("POST", "/gift-cards", key=key,
                            json={"name": "Spring", "count": count, "face_value_minor": value}))
    cards_: list[Any] = body["cards"]
    return cards_


def test_cashiers_and_tills_get_403_on_manager_calls(
    callers: dict[str, Caller], shop: Shop
) -> None:
    programme = {"name": "Coffee", "basis": "item", "stamps_needed": 9,
                 "reward_kind": "free_item", "category_ids": [str(shop.coffee.id)]}
    package = {"name": "10 cuts", "visits": 10, "price_minor": 80_000, "valid_days": 365,
               "service_ids": [str(shop.haircut.id)]}
    (card,) = _batch(callers["manager"], "b1")
    for who in ("cashier", "pos"):
        call = callers[who]
        for r in (call("POST", "/stamp-programmes", json=programme),
                  call("POST", "/package-products", json=package),
                  call("POST", "/gift-cards", key=f"{who}-1",
                       json={"name": "x", "count": 1, "face_value_minor": 100}),
                  call("POST", f"/gift-cards/{card['code']}/void", key=f"{who}-2",
                       json={"reason": "x"})):
            _problem(r, 403, "forbidden")
    _created(callers["manager"]("POST", "/stamp-programmes", json=programme))
    _created(callers["manager"]("POST", "/package-products", json=package))
    assert len(callers["pos"]("GET", "/stamp-programmes").json()) == 1


def test_a_reward_is_redeemed_once_and_a_retry_replays_the_answer(
    callers: dict[str, Caller], shop: Shop, db: Database, clock: FixedClock, world: World
) -> None:
    manager, pos = callers["manager"], callers["pos"]
    _created(manager("POST", "/stamp-programmes", json={
        "name": "Coffee", "basis": "item", "stamps_needed": 3, "reward_kind": "free_item",
        "category_ids": [str(shop.coffee.id)]}))
    member_id = _member(pos)
    with db.write() as s:
        m = uuid.UUID(member_id)
        cards.stamps_for_sale(s, clock=clock, member_id=m,
                              sale_id=make_sale(s, clock, world.store_a, m),
                              store_id=world.store_a.id, lines=coffees(shop, 4))
    (card,) = pos("GET", f"/members/{member_id}/stamp-cards").json()
    assert (card["stamps"], card["stamps_needed"], len(card["rewards"])) == (1, 3, 1)
    path = f"/members/{member_id}/stamp-rewards/{card['rewards'][0]['id']}/redeem"
    _problem(pos("POST", path), 422, "idempotency_key_required", "Idempotency-Key")
    first = pos("POST", path, key="r1")
    again = pos("POST", path, key="r1")
    assert first.status_code == again.status_code == 201
    assert first.content == again.content and again.headers["Idempotent-Replayed"] == "true"
    assert first.json()["reward_kind"] == "free_item"
    assert first.json()["category_ids"] == [str(shop.coffee.id)]
    _problem(pos("POST", path, key="r2"), 409, "reward_already_redeemed", "reward_id")
    assert pos("GET", f"/members/{member_id}/stamp-cards").json()[0]["rewards"] == []


def test_packages_are_sold_and_used_once_per_key_and_refused_when_empty_or_expired(
    callers: dict[str, Caller], shop: Shop, clock: FixedClock
) -> None:
    manager, pos = callers["manager"], callers["pos"]
    product = _created(manager("POST", "/package-products", json={
        "name": "2 cuts", "visits": 2, "price_minor": 16_000, "valid_days": 30,
        "service_ids": [str(shop.haircut.id)]}))
    member_id = _member(pos)
    sell = {"package_product_id": product["id"]}
    first = pos("POST", f"/members/{member_id}/packages", key="s1", json=sell)
    assert pos("POST", f"/members/{member_id}/packages", key="s1", json=sell).content \
        == first.content
    pkg = _created(first)
    assert (pkg["visits_left"], pkg["usable_now"]) == (2, True)
    visits = f"/members/{member_id}/packages/{pkg['id']}/visits"
    used = _created(pos("POST", visits, key="v1", json={"product_id": str(shop.haircut.id)}))
    assert pos("POST", visits, key="v1", json={"product_id": str(shop.haircut.id)}).content \
        == pos("POST", visits, key="v1", json={"product_id": str(shop.haircut.id)}).content
    assert used["package"]["visits_left"] == 1
    _problem(pos("POST", visits, key="v2", json={"product_id": str(shop.colour.id)}), 422,
             "service_not_covered", "product_id")
    assert _created(pos("POST", visits, key="v3"))["entry"]["visits_left_after"] == 0
    _problem(pos("POST", visits, key="v4"), 422, "no_visits_left", "package_id")
    other = _created(pos("POST", f"/members/{member_id}/packages", key="s2", json=sell))
    clock.advance(timedelta(days=30))
    _problem(pos("POST", f"/members/{member_id}/packages/{other['id']}/visits", key="v5"),
             422, "package_expired", "package_id")
    listed = pos("GET", f"/members/{member_id}/packages").json()
    assert sorted((p["status"], p["visits_left"]) for p in listed) == \
        [("active", 2), ("used_up", 0)]


def test_a_package_refund_answers_the_pro_rata_amount_for_managers_only(
    callers: dict[str, Caller], shop: Shop
) -> None:
    manager, pos = callers["manager"], callers["pos"]
    product = _created(manager("POST", "/package-products", json={
        "name": "3 cuts", "visits": 3, "price_minor": 10_000, "valid_days": 30,
        "service_ids": [str(shop.haircut.id)]}))
    member_id = _member(pos)
    pkg = _created(pos("POST", f"/members/{member_id}/packages", key="s1",
                       json={"package_product_id": product["id"]}))
    _created(pos("POST", f"/members/{member_id}/packages/{pkg['id']}/visits", key="v1"))
    path = f"/members/{member_id}/packages/{pkg['id']}/refund"
    _problem(pos("POST", path, key="f1"), 403, "forbidden")
    done = _created(manager("POST", path, key="f2", json={"reason": "moving"}))
    assert (done["refund_minor"], done["visits_refunded"]) == (6_667, 2)
    assert done["package"]["status"] == "refunded"


def test_gift_cards_through_the_api_move_value_once_per_key(
    callers: dict[str, Caller]
) -> None:
    manager, pos = callers["manager"], callers["pos"]
    first = manager("POST", "/gift-cards", key="b1",
                    json={"name": "Spring", "count": 2, "face_value_minor": 10_000})
    assert manager("POST", "/gift-cards", key="b1", json={
        "name": "Spring", "count": 2, "face_value_minor": 10_000}).content == first.content
    card, _second = _created(first)["cards"]
    code, pin = card["display_code"], card["pin"]
    _problem(pos("GET", f"/gift-cards/{code}"), 422, "pin_required", PIN)
    got = pos("GET", f"/gift-cards/{code}", pin=pin).json()
    assert (got["balance_minor"], got["status"], got["usable_now"]) == (10_000, "active", True)
    assert "pin" not in got
    redeem = f"/gift-cards/{code}/redemptions"
    r1 = pos("POST", redeem, key="g1", pin=pin, json={"amount_minor": 2_500})
    r2 = pos("POST", redeem, key="g1", pin=pin, json={"amount_minor": 2_500})
    assert r1.content == r2.content and r2.headers["Idempotent-Replayed"] == "true"
    assert _created(r1)["card"]["balance_minor"] == 7_500
    _problem(pos("POST", redeem, key="g1", pin=pin, json={"amount_minor": 1}), 422,
             "idempotency_key_reused", "Idempotency-Key")
    _problem(pos("POST", redeem, key="g2", pin=pin, json={"amount_minor": 7_501}), 422,
             "insufficient_balance", "amount_minor")
    _problem(pos("POST", redeem, key="g3", pin=pin, json={"amount_minor": 0}), 422,
             "validation_failed", "amount_minor")
    moved = _created(pos("POST", f"/gift-cards/{code}/transfer", key="t1", pin=pin))
    new = moved["new_card"]
    assert (moved["card"]["status"], new["balance_minor"]) == ("closed", 7_500)
    _problem(pos("POST", redeem, key="g4", pin=pin, json={"amount_minor": 1}), 422,
             "gift_card_closed", "code")
    void = _created(manager("POST", f"/gift-cards/{new['code']}/void", key="x1",
                            json={"reason": "stolen"}))
    assert (void["status"], void["balance_minor"]) == ("void", 0)
    _problem(pos("GET", "/gift-cards/2222-2222-2222-2222", pin=pin), 404, "gift_card_unknown",
             "code")


def test_five_wrong_pins_lock_a_card_for_fifteen_minutes_through_the_api(
    callers: dict[str, Caller], clock: FixedClock
) -> None:
    manager, pos = callers["manager"], callers["pos"]
    (card,) = _batch(manager, "b1")
    code, pin = card["code"], card["pin"]
    redeem = f"/gift-cards/{code}/redemptions"
    for i in range(4):
        _problem(pos("POST", redeem, key=f"w{i}", pin="WRONG222", json={"amount_minor": 100}),
                 422, "wrong_pin", "pin")
    _problem(pos("GET", f"/gift-cards/{code}", pin="WRONG222"), 429, "gift_card_locked", "pin")
    _problem(pos("GET", f"/gift-cards/{code}", pin=pin), 429, "gift_card_locked")
    _problem(pos("POST", redeem, key="ok", pin=pin, json={"amount_minor": 100}), 429,
             "gift_card_locked")
    clock.advance(timedelta(minutes=15))
    assert _created(pos("POST", redeem, key="ok", pin=pin,
                        json={"amount_minor": 100}))["card"]["balance_minor"] == 9_900
