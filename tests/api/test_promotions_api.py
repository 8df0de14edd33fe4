"""Promotions over HTTP: definitions with problem+json naming the field, store scoping,
quotes that need no Idempotency-Key, receipts that list promotions, refunds and reports."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from patron.core.clock import FixedClock
from patron.core.db import Database
from tests.factories import World, key_headers, login, make_member, make_product

THREE_FOR_TWO: dict[str, Any] = {"kind": "buy_x_get_y", "buy_quantity": 2, "get_quantity": 1}


class Caller:
    """A client signed in as one user (cookie + CSRF) or holding one POS key."""

    def __init__(self, client: TestClient, headers: dict[str, str]) -> None:
        self.client, self.headers = client, headers

    def __call__(self, method: str, path: str, *, key: str | None = None,
                 **kw: Any) -> httpx.Response:
        headers = self.headers | ({"Idempotency-Key": key} if key else {})
        return self.client.request(method, "/api/v1" + path, headers=headers, **kw)


@pytest.fixture
def callers(app: FastAPI, world: World) -> Iterator[dict[str, Caller]]:
    clients = [TestClient(app) for _ in range(4)]
    try:
        out = {name: Caller(c, {"X-CSRF-Token": login(c, name)})
               for c, name in zip(clients, ("owner", "manager-a", "manager-b", "cashier-a"),
                                  strict=False)}
        out["pos"] = Caller(clients[3], key_headers(world.key_a))
        yield out
    finally:
        for c in clients:
            c.close()


@pytest.fixture
def catalogue(db: Database, clock: FixedClock, world: World) -> dict[str, str]:
    with db.write() as s:
        a = make_product(s, sku="A", price_minor=1000, category_code="FOOD")
        member = make_member(s, clock, world.store_a)
        return {"A": str(a.id), "member": str(member.id)}


def _create(caller: Caller, body: dict[str, Any]) -> dict[str, Any]:
    r = caller("POST", "/promotions", json=body)
    assert r.status_code == 201, r.text
    created: dict[str, Any] = r.json()
    return created


def test_promotions_are_created_changed_and_stopped_over_http(
    callers: dict[str, Caller], catalogue: dict[str, str]
) -> None:
    owner = callers["owner"]
    body = {"name": "3 for 2", "config": THREE_FOR_TWO | {"buy": {"products": [catalogue["A"]]}},
            "limits": {"total": 100}}
    p = _create(owner, body)
    assert (p["kind"], p["version"], p["active"]) == ("buy_x_get_y", 1, True)
    assert p["usage"] == {"uses": 0, "budget_spent_minor": 0, "budget_left_minor": None}
    r = owner("PATCH", f"/promotions/{p['id']}", json={"priority": 5})
    assert r.status_code == 200 and r.json()["version"] == 2
    assert [x["id"] for x in owner("GET", "/promotions").json()] == [p["id"]]
    assert callers["pos"]("GET", f"/promotions/{p['id']}").json()["priority"] == 5
    r = owner("POST", f"/promotions/{p['id']}/deactivate")
    assert r.status_code == 200 and r.json()["active"] is False
    assert owner("GET", "/promotions").json() == []
    assert len(owner("GET", "/promotions?include_inactive=true").json()) == 1
    assert owner("POST", f"/promotions/{p['id']}/activate").json()["version"] == 4
    assert owner("GET", "/promotions/01a20a96-0ed0-7cb6-88fa-0fdec6bacdd8").status_code == 404


@pytest.mark.parametrize(("patch", "field"), [
    ({"config": {"kind": "spend_discount", "steps": [
        {"spend_minor": 1000, "amount_off_minor": 100}, {"spend_minor": 0,
                                                         "amount_off_minor": 1}]}},
     "config.steps.1.spend_minor"),
    ({"config": {"kind": "spend_discount", "steps": [{"spend_minor": 1000}]}},
     "config.steps.0.percent_off"),
    ({"schedule": {"hours": [{"start": "10:00", "end": "10:00"}]}}, "schedule.hours.0.end"),
    ({"limits": {"total": 0}}, "limits.total"),
    ({"colour": "red"}, "colour"),
])
def test_bad_definitions_are_problem_json_naming_the_field(
    callers: dict[str, Caller], catalogue: dict[str, str], patch: dict[str, Any], field: str
) -> None:
    body = {"name": "Spend", "config": {"kind": "spend_discount",
                                        "steps": [{"spend_minor": 1000,
                                                   "amount_off_minor": 100}]}} | patch
    r = callers["owner"]("POST", "/promotions", json=body)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["errors"][0]["field"] == field, r.json()
    assert callers["owner"]("GET", "/promotions?include_inactive=true").json() == []


def test_managers_see_and_change_only_their_stores_promotions(
    callers: dict[str, Caller], catalogue: dict[str, str], world: World
) -> None:
    body = {"name": "A only", "config": THREE_FOR_TWO | {"buy": {"products": [catalogue["A"]]}}}
    r = callers["manager-a"]("POST", "/promotions", json=body)
    assert r.status_code == 403  # every store: the owner's call
    mine = _create(callers["manager-a"], body | {"audience": {"stores": [str(world.store_a.id)]}})
    assert callers["manager-b"]("GET", f"/promotions/{mine['id']}").status_code == 404
    assert callers["manager-b"]("GET", "/promotions").json() == []
    assert callers["manager-b"]("PATCH", f"/promotions/{mine['id']}",
                                json={"priority": 1}).status_code == 403
    assert callers["cashier-a"]("POST", "/promotions", json=body).status_code == 403
    assert callers["pos"]("POST", "/promotions", json=body).status_code == 403


def test_a_quote_needs_no_key_and_the_sale_and_refund_follow_it(
    callers: dict[str, Caller], catalogue: dict[str, str]
) -> None:
    owner, pos = callers["owner"], callers["pos"]
    p = _create(owner, {"name": "3 for 2",
                        "config": THREE_FOR_TWO | {"buy": {"products": [catalogue["A"]]}}})
    basket = {"member_id": catalogue["member"], "lines": [{"sku": "A", "quantity": 2}]}
    q = pos("POST", "/sales/quote", json=basket)
    assert q.status_code == 200, q.text
    (hint,) = q.json()["near_misses"]
    assert hint["texts"] == {"en": "Add 1 more to get 1 free", "zh_CN": "再买1件，1件免费"}
    basket["lines"] = [{"sku": "A", "quantity": 3}]
    q = pos("POST", "/sales/quote", json=basket).json()
    assert (q["total_minor"], q["promotion_discount_minor"], q["near_misses"]) == (2000, 1000, [])
    assert q["promotions"] == [{"id": p["id"], "name": "3 for 2", "kind": "buy_x_get_y",
                                "saving_minor": 1000, "gift_value_minor": 0,
                                "cashback_minor": 0}]
    r = pos("POST", "/sales", key="sale-1",
            json=basket | {"payments": {"card_minor": q["total_minor"]}})
    assert r.status_code == 201, r.text
    receipt = r.json()
    assert receipt["promotions"] == q["promotions"]
    assert {"kind": "promotion", "label": "3 for 2", "amount_minor": 1000} \
        in receipt["discounts"]
    line = receipt["lines"][0]["id"]
    r = pos("POST", f"/sales/{receipt['sale_id']}/refunds", key="refund-1",
            json={"lines": [{"line_id": line, "quantity": 1}]})
    assert r.status_code == 201, r.text
    assert r.json()["amount_minor"] == 0  # the two kept units cost what was paid
    r = pos("POST", f"/sales/{receipt['sale_id']}/refunds", key="refund-2", json={})
    assert r.json()["amount_minor"] == 2000
    r = owner("GET", f"/promotions/{p['id']}/report")
    assert r.status_code == 200, r.text
    report = r.json()
    assert (report["redemptions"], report["savings_minor"], report["returned_minor"],
            report["cost_minor"]) == (1, 1000, 1000, 0)
    assert callers["cashier-a"]("GET", f"/promotions/{p['id']}/report").status_code == 403
    r = owner("GET", f"/promotions/{p['id']}/report",
              params={"since": "2026-11-24T00:00:00+08:00", "until": "2026-11-23T00:00:00Z"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "until"
