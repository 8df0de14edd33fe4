"""Coupons and referrals through the HTTP API: roles, problem+json, Idempotency-Keys."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from patron.offers import rules
from tests.factories import World, key_headers, login

TEMPLATE = {"name": "10 off", "kind": "fixed", "amount_minor": 1_000, "validity": "days",
            "valid_days": 30}
BASKET = {"lines": [{"product_id": str(uuid.uuid4()), "quantity": 2,
                     "unit_price_minor": 2_500}]}


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
    clients = [TestClient(app) for _ in range(3)]  # staff sessions; tills send no cookies
    try:
        out = {}
        for c, user in zip(clients[:2], ("manager-a", "cashier-a"), strict=True):
            out[user.split("-")[0]] = Caller(c, {"X-CSRF-Token": login(c, user)})
        out["pos"] = Caller(clients[2], key_headers(world.key_a))
        out["pos_b"] = Caller(clients[2], key_headers(world.key_b))
        yield out
    finally:
        for c in clients:
            c.close()


def _template(manager: Caller, **overrides: Any) -> dict[str, Any]:
    r = manager("POST", "/coupon-templates", json=TEMPLATE | overrides)
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


def _member(pos: Caller, phone: str = "13912345678") -> str:
    r = pos("POST", "/members", json={"name": "Han Meimei", "phone": phone})
    assert r.status_code == 201, r.text
    member_id: str = r.json()["id"]
    return member_id


def _issue(caller: Caller, template_id: str, key: str, **body: Any) -> httpx.Response:
    return caller("POST", f"/coupon-templates/{template_id}/issue", key=key, json=body)


def test_cashiers_and_tills_get_403_on_template_writes_issue_void_and_rules(
    callers: dict[str, Caller]
) -> None:
    t = _template(callers["manager"])
    (c,) = _issue(callers["manager"], t["id"], "k1").json()["coupons"]
    for who in ("cashier", "pos"):
        call = callers[who]
        writes = [
            call("POST", "/coupon-templates", json=TEMPLATE),
            call("PATCH", f"/coupon-templates/{t['id']}", json={"name": "x"}),
            call("DELETE", f"/coupon-templates/{t['id']}"),
            _issue(call, t["id"], f"{who}-issue"),
            call("POST", f"/coupons/{c['code']}/void", json={"reason": "x"}),
            call("PUT", "/referral-rule", json={"active": False}),
        ]
        for r in writes:
            assert r.status_code == 403, r.text
            assert r.headers["content-type"].startswith("application/problem+json")
    assert callers["cashier"]("GET", "/coupon-templates").status_code == 200


def test_template_crud_for_managers(callers: dict[str, Caller]) -> None:
    manager = callers["manager"]
    t = _template(manager, kind="percent", amount_minor=None, percent=15, cap_minor=3_000,
                  min_spend_minor=10_000, restore_on_refund=True)
    assert (t["percent"], t["cap_minor"], t["active"], t["issued_count"]) == (15, 3_000,
                                                                            True, 0)
    r = manager("PATCH", f"/coupon-templates/{t['id']}", json={"name": "15% off"})
    assert r.status_code == 200 and r.json()["name"] == "15% off"
    assert [x["id"] for x in manager("GET", "/coupon-templates").json()] == [t["id"]]
    r = manager("DELETE", f"/coupon-templates/{t['id']}")
    assert r.status_code == 200 and r.json()["active"] is False
    assert manager("GET", "/coupon-templates").json() == []
    listed = manager("GET", "/coupon-templates?include_inactive=true").json()
    assert [x["id"] for x in listed] == [t["id"]]
    assert manager("GET", f"/coupon-templates/{uuid.uuid4()}").status_code == 404


def test_bad_templates_are_problem_json_naming_the_field(callers: dict[str, Caller]) -> None:
    for body, field in [
        (TEMPLATE | {"amount_minor": None}, "amount_minor"),
        (TEMPLATE | {"kind": "percent", "amount_minor": None, "percent": 101}, "percent"),
        (TEMPLATE | {"scope": "products"}, "target_ids"),
        (TEMPLATE | {"validity": "fixed"}, "ends_at"),
        (TEMPLATE | {"valid_days": 0}, "valid_days"),
    ]:
        r = callers["manager"]("POST", "/coupon-templates", json=body)
        assert r.status_code == 422
        assert r.headers["content-type"].startswith("application/problem+json")
        assert [e["field"] for e in r.json()["errors"]] == [field]
    assert callers["manager"]("GET", "/coupon-templates").json() == []


def test_issue_runs_once_per_idempotency_key(callers: dict[str, Caller]) -> None:
    manager, pos = callers["manager"], callers["pos"]
    t = _template(manager, per_member_limit=3)
    m = _member(pos)
    first = _issue(manager, t["id"], "issue-1", member_id=m, count=2)
    again = _issue(manager, t["id"], "issue-1", member_id=m, count=2)
    assert first.status_code == again.status_code == 201
    assert first.content == again.content
    assert again.headers["Idempotent-Replayed"] == "true"
    assert len(pos("GET", f"/members/{m}/coupons").json()) == 2
    r = _issue(manager, t["id"], "issue-2", member_id=m, count=2)
    assert r.status_code == 422
    assert r.json()["errors"][0] == {"field": "member_id", "code": "member_limit_reached",
                                     "message": r.json()["errors"][0]["message"]}
    r = manager("POST", f"/coupon-templates/{t['id']}/issue", json={})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "Idempotency-Key"


def test_a_till_checks_quotes_and_redeems_a_coupon_once(callers: dict[str, Caller]) -> None:
    manager, pos = callers["manager"], callers["pos"]
    t = _template(manager, min_spend_minor=4_000)
    m = _member(pos)
    (c,) = _issue(manager, t["id"], "i", member_id=m).json()["coupons"]
    typed = c["display_code"].lower()
    seen = pos("GET", f"/coupons/{typed}").json()
    assert (seen["code"], seen["status"], seen["usable_now"], seen["member_id"]) == (
        c["code"], "issued", True, m)
    q = pos("POST", f"/coupons/{typed}/quote", json=BASKET | {"member_id": m})
    assert q.status_code == 200, q.text
    assert (q.json()["discount_minor"], q.json()["line_discounts"]) == (1_000, [1_000])
    small = {"member_id": m, "lines": [BASKET["lines"][0] | {"quantity": 1}]}
    r = pos("POST", f"/coupons/{typed}/quote", json=small)
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "coupon_codes"
    assert r.json()["code"] == "coupon_min_spend_not_met"

    body = BASKET | {"member_id": m, "reference": "R-1001"}
    first = pos("POST", f"/coupons/{c['code']}/redemptions", key="red-1", json=body)
    assert first.status_code == 201, first.text
    assert first.json()["redemption"]["reference"] == "R-1001"
    replay = pos("POST", f"/coupons/{c['code']}/redemptions", key="red-1", json=body)
    assert replay.content == first.content
    again = pos("POST", f"/coupons/{c['code']}/redemptions", key="red-2", json=body)
    assert again.status_code == 409
    assert again.headers["content-type"].startswith("application/problem+json")
    assert again.json()["code"] == "coupon_already_redeemed"
    assert again.json()["errors"][0]["field"] == "coupon_codes"
    used = pos("GET", f"/coupons/{c['code']}").json()
    assert used["status"] == "redeemed" and used["redemption"]["discount_minor"] == 1_000


def test_refusals_name_the_coupon_codes_field(callers: dict[str, Caller]) -> None:
    pos = callers["pos"]
    unknown = rules.new_coupon_code()
    r = pos("POST", f"/coupons/{unknown}/redemptions", key="u", json=BASKET)
    assert r.status_code == 422 and r.json()["code"] == "coupon_unknown"
    assert r.json()["errors"][0]["field"] == "coupon_codes"
    assert pos("GET", f"/coupons/{unknown}").status_code == 404
    r = pos("POST", f"/coupons/{unknown}/quote", json={"lines": []})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "lines"


def test_another_stores_till_cannot_redeem_for_this_store(
    callers: dict[str, Caller], world: World
) -> None:
    t = _template(callers["manager"])
    (c,) = _issue(callers["manager"], t["id"], "i").json()["coupons"]
    r = callers["pos_b"]("POST", f"/coupons/{c['code']}/redemptions", key="x",
                         json=BASKET | {"store_id": str(world.store_a.id)})
    assert r.status_code == 403
    r = callers["pos_b"]("POST", f"/coupons/{c['code']}/redemptions", key="y", json=BASKET)
    assert r.status_code == 201
    assert r.json()["redemption"]["store_id"] == str(world.store_b.id)


def test_void_and_restore_through_the_api(callers: dict[str, Caller]) -> None:
    manager, pos = callers["manager"], callers["pos"]
    t = _template(manager, restore_on_refund=True)
    a, b = _issue(manager, t["id"], "i", count=2).json()["coupons"]
    r = manager("POST", f"/coupons/{a['code']}/void", json={"reason": "misprint"})
    assert r.status_code == 200 and r.json()["status"] == "void"
    r = pos("POST", f"/coupons/{a['code']}/quote", json=BASKET)
    assert r.json()["code"] == "coupon_void"
    assert pos("POST", f"/coupons/{b['code']}/redemptions", key="r",
               json=BASKET).status_code == 201
    r = manager("POST", f"/coupons/{b['code']}/void", json={"reason": "late"})
    assert r.status_code == 409
    r = pos("POST", f"/coupons/{b['code']}/restorations", key="back", json={"reason": "return"})
    assert r.status_code == 201, r.text
    (new,) = r.json()["replacements"]
    assert (new["source"], new["replaces_coupon_id"], new["usable_now"]) == (
        "restore", b["id"], True)
    r = pos("POST", f"/coupons/{b['code']}/restorations", key="back-2", json={})
    assert r.status_code == 201 and r.json()["replacements"] == []


def test_referral_rule_and_codes(callers: dict[str, Caller]) -> None:
    manager, pos = callers["manager"], callers["pos"]
    assert pos("GET", "/referral-rule").json()["active"] is False
    t = _template(manager)
    r = manager("PUT", "/referral-rule", json={"active": True, "referrer_template_id": t["id"],
                                               "referred_template_id": t["id"]})
    assert r.status_code == 200 and r.json()["referrer_template_id"] == t["id"]
    r = manager("PUT", "/referral-rule", json={"active": True,
                                               "referrer_template_id": str(uuid.uuid4())})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "referrer_template_id"
    referrer, friend = _member(pos), _member(pos, "13912345679")
    code = pos("GET", f"/members/{referrer}/referral-code").json()["code"]
    assert pos("GET", f"/members/{referrer}/referral-code").json()["code"] == code
    assert pos("GET", f"/members/{uuid.uuid4()}/referral-code").status_code == 404
    r = pos("PUT", f"/members/{friend}/referrer", json={"code": code})
    assert r.status_code == 200 and r.json()["referrer_member_id"] == referrer
    r = pos("PUT", f"/members/{referrer}/referrer", json={"code": code})
    assert r.status_code == 422 and r.json()["code"] == "self_referral"
    r = pos("PUT", f"/members/{friend}/referrer", json={"code": "NOPE1234"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "code"


def test_operation_ids_are_stable(client: TestClient) -> None:
    spec = client.get("/api/v1/openapi.json").json()
    ids = {op["operationId"] for path in spec["paths"].values() for op in path.values()}
    assert {"list_coupon_templates", "create_coupon_template", "get_coupon_template",
            "update_coupon_template", "deactivate_coupon_template", "issue_coupons",
            "list_member_coupons", "get_coupon", "quote_coupon", "redeem_coupon",
            "void_coupon", "restore_coupon", "get_referral_rule", "set_referral_rule",
            "get_referral_code", "attribute_referral"} <= ids
