"""The campaigns API: who may, errors that name the field, and the builder-to-results flow."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from patron.core.clock import FixedClock
from patron.core.db import Database
from tests.campaigns.test_service import add_members
from tests.factories import World, login

API = "/api/v1"


def _as(client: TestClient, username: str) -> dict[str, str]:
    return {"X-CSRF-Token": login(client, username)}


def _fields(response: Any) -> set[str]:
    return {e["field"] for e in response.json().get("errors", [])}


def test_campaigns_need_a_manager_or_owner(client: TestClient, world: World) -> None:
    assert client.get(f"{API}/campaigns").status_code == 401
    assert client.get(f"{API}/segments").status_code == 401
    _as(client, "cashier-a")
    for path in ("/campaigns", "/segments", "/campaign-plays", "/segments/fields"):
        response = client.get(f"{API}{path}")
        assert response.status_code == 403, path
        assert response.headers["content-type"].startswith("application/problem+json")


def test_rule_and_message_errors_name_the_field(client: TestClient, world: World) -> None:
    headers = _as(client, "owner")
    response = client.post(f"{API}/segments", headers=headers, json={"name": "x", "rules": {
        "op": "all", "children": [{"field": "sms_consent"}, {"field": "tier", "value": ["g"]},
                                  {"field": "p_alive", "op": "<", "value": 7}]}})
    assert response.status_code == 422
    assert _fields(response) == {"rules.children.2.value"}
    response = client.post(f"{API}/segments/count", headers=headers,
                           json={"rules": {"field": "nope"}})
    assert response.status_code == 422 and _fields(response) == {"rules.field"}
    segment = client.post(f"{API}/segments", headers=headers, json={
        "name": "A", "rules": {"field": "home_store", "value": [str(world.store_a.id)]}})
    assert segment.status_code == 201, segment.text
    base = {"name": "c", "segment_id": segment.json()["id"], "channel": "sms"}
    response = client.post(f"{API}/campaigns", headers=headers,
                           json=base | {"messages": {"en": {"body": "Hi {{ member.nmae }}"}}})
    assert response.status_code == 422 and _fields(response) == {"messages.en.body"}
    response = client.post(f"{API}/campaigns", headers=headers,
                           json=base | {"messages": {"en": {"body": "hi"}}, "holdout_pct": 80,
                                        "attribution_days": 0})
    assert response.status_code == 422
    assert _fields(response) == {"attribution_days", "holdout_pct"}
    response = client.post(f"{API}/campaigns", headers=headers,
                           json=base | {"messages": {"zh_CN": {"body": " "}}})
    assert response.status_code == 422 and _fields(response) == {"messages.zh_CN.body"}
    response = client.post(f"{API}/campaigns", headers=headers, json=base | {
        "messages": {"en": {"body": "Your code {{ coupon.code }}"}}})
    assert response.status_code == 422 and _fields(response) == {"messages.en.body"}
    response = client.post(f"{API}/campaigns", headers=headers, json=base | {
        "messages": {"en": {"body": "hi"}}, "schedule": "weekly"})
    assert response.status_code == 422 and _fields(response) == {"weekday"}


def test_a_manager_sees_and_targets_only_their_stores(
        client: TestClient, db: Database, clock: FixedClock, world: World) -> None:
    with db.write() as s:
        add_members(s, clock, world.store_a.id, 3)
        add_members(s, clock, world.store_b.id, 4)
    headers = _as(client, "manager-a")
    response = client.post(f"{API}/segments/count", headers=headers,
                           json={"rules": {"field": "sms_consent"}})
    assert response.status_code == 200
    assert response.json()["count"] == 3
    assert response.json()["restricted_to_stores"] == [str(world.store_a.id)]
    sample = client.post(f"{API}/segments/sample", headers=headers,
                         json={"rules": {"field": "sms_consent"}}).json()["members"]
    assert len(sample) == 3 and all("****" in m["phone"] for m in sample)
    refused = client.post(f"{API}/segments", headers=headers,
                          json={"name": "all", "rules": {"field": "sms_consent"}})
    assert refused.status_code == 422 and refused.json()["code"] == "store_restriction_required"
    assert _fields(refused) == {"rules"}
    # the owner sees everyone, with full phones
    owner = _as(client, "owner")
    response = client.post(f"{API}/segments/sample", headers=owner,
                           json={"rules": {"field": "sms_consent"}})
    members = response.json()["members"]
    assert len(members) == 7 and all(m["phone"].startswith("+86") for m in members)


def test_from_play_to_results(client: TestClient, db: Database, clock: FixedClock,
                              world: World) -> None:
    with db.write() as s:
        add_members(s, clock, world.store_a.id, 30)
    headers = _as(client, "owner")
    plays = client.get(f"{API}/campaign-plays").json()
    assert {p["code"] for p in plays} == {"win_back_cant_lose", "welcome_series",
                                          "second_purchase", "birthday_month",
                                          "replenishment_due", "vip_early_access"}
    assert all(set(p["messages"]) == {"en", "zh_CN"} for p in plays)
    draft = client.post(f"{API}/campaign-plays/welcome_series/campaigns", headers=headers,
                        json={"channel": "sms", "holdout_pct": 20})
    assert draft.status_code == 201, draft.text
    assert draft.json()["status"] == "draft" and draft.json()["schedule"] == "weekly"
    # a one-shot campaign on everyone in store A
    segment = client.post(f"{API}/segments", headers=headers, json={
        "name": "A", "rules": {"op": "all", "children": [
            {"field": "home_store", "value": [str(world.store_a.id)]},
            {"field": "joined", "op": "within_days", "value": 90}]}}).json()
    assert client.get(f"{API}/segments/{segment['id']}/count").json()["count"] == 30
    campaign = client.post(f"{API}/campaigns", headers=headers, json={
        "name": "Autumn", "segment_id": segment["id"], "channel": "sms",
        "messages": {"en": {"body": "Autumn teas at {{ store.name }}"},
                     "zh_CN": {"body": "秋茶到{{ store.name }}了"}}}).json()
    test = client.post(f"{API}/campaigns/{campaign['id']}/test-send", headers=headers,
                       json={"to": "13912345678", "language": "zh_CN"})
    assert test.status_code == 202, test.text
    assert test.json()["body"].startswith("【Patron】") and test.json()["body"].endswith("退订回T")
    launched = client.post(f"{API}/campaigns/{campaign['id']}/launch", headers=headers)
    assert launched.status_code == 200, launched.text
    body = launched.json()
    assert body["status"] == "sent"
    assert body["assigned"]["treatment"] + body["assigned"]["control"] == 30
    again = client.post(f"{API}/campaigns/{campaign['id']}/launch", headers=headers)
    assert again.status_code == 409
    edit = client.patch(f"{API}/campaigns/{campaign['id']}", headers=headers, json={"name": "x"})
    assert edit.status_code == 409
    results = client.get(f"{API}/campaigns/{campaign['id']}/results")
    assert results.status_code == 200, results.text
    report = results.json()
    assert report["treatment"]["members"] == body["assigned"]["treatment"]
    assert report["delivery"]["messages"] == {"queued": body["assigned"]["treatment"]}
    assert report["verdict"]["code"] in ("no_measurable_effect", "insufficient_data")
    assert "Newcombe" in report["methods"]["conversion"]
    paused = client.post(f"{API}/campaigns/{campaign['id']}/pause", headers=headers).json()
    assert paused["status"] == "paused"
    report = client.get(f"{API}/campaigns/{campaign['id']}/results").json()
    assert report["delivery"]["suppressed"] == {"campaign_paused": body["assigned"]["treatment"]}
    cancelled = client.post(f"{API}/campaigns/{campaign['id']}/cancel", headers=headers).json()
    assert cancelled["status"] == "cancelled"
    listed = client.get(f"{API}/campaigns", params={"status": "cancelled"}).json()
    assert [c["id"] for c in listed] == [campaign["id"]]
    fields = client.get(f"{API}/segments/fields").json()
    assert {"p_alive", "bought", "tier", "next_purchase_on"} <= {f["field"] for f in fields}
    archived = client.delete(f"{API}/segments/{segment['id']}", headers=headers)
    assert archived.status_code == 200 and archived.json()["archived"]
    assert segment["id"] not in {s["id"] for s in client.get(f"{API}/segments").json()}
