"""A tier's birthday coupon and included plan perks over HTTP: owners only, fields named."""

from __future__ import annotations

import uuid

from fastapi.testclient import TestClient

from tests.factories import World, login


def test_owner_sets_and_reads_tier_perks_others_are_refused(
        client: TestClient, world: World) -> None:
    csrf = {"X-CSRF-Token": login(client, "owner")}
    tier = client.post("/api/v1/tiers", headers=csrf, json={
        "code": "gold", "name": "Gold", "rank": 1, "threshold": 500_000}).json()
    template = client.post("/api/v1/coupon-templates", headers=csrf, json={
        "name": "Gold birthday", "kind": "fixed", "amount_minor": 5000,
        "validity": "days", "valid_days": 30})
    assert template.status_code == 201, template.text
    body = {"birthday_coupon_template_id": template.json()["id"], "plan_ids": []}
    r = client.put(f"/api/v1/tiers/{tier['id']}/perks", headers=csrf, json=body)
    assert r.status_code == 200, r.text
    assert r.json() == body
    assert client.get(f"/api/v1/tiers/{tier['id']}/perks").json() == body
    listed = {t["code"]: t for t in client.get("/api/v1/tiers").json()}
    assert listed["gold"]["birthday_coupon_template_id"] == body["birthday_coupon_template_id"]

    bad = client.put(f"/api/v1/tiers/{tier['id']}/perks", headers=csrf,
                     json={"plan_ids": [str(uuid.uuid4())]})
    assert bad.status_code == 422
    assert [p["field"] for p in bad.json()["errors"]] == ["plan_ids.0"]
    assert client.get(f"/api/v1/tiers/{tier['id']}/perks").json() == body  # unchanged
    assert client.put(f"/api/v1/tiers/{uuid.uuid4()}/perks", headers=csrf,
                      json={}).status_code == 404

    client.delete("/api/v1/session", headers=csrf)
    csrf = {"X-CSRF-Token": login(client, "manager-a")}
    assert client.put(f"/api/v1/tiers/{tier['id']}/perks", headers=csrf,
                      json={}).status_code == 403
