"""The messaging API: who may see and re-send messages, webhook endpoints with a secret shown
once, the sending policy, care rules, template previews, provider callbacks and one-click
unsubscribe."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from patron.core.clock import FixedClock
from patron.core.db import Database
from patron.core.settings import Settings
from patron.members import service as members
from patron.messaging import service as messaging
from patron.messaging.channels import twilio
from patron.messaging.channels.base import SendResult
from tests.factories import World, key_headers, login, make_member


def _dead_letter(db: Database, clock: FixedClock, world: World) -> str:
    with db.write() as s:
        m = make_member(s, clock, world.store_a)
        [mid] = messaging.enqueue(s, clock=clock, messages=[messaging.Outgoing(
            dedupe_key="t:1", channel="sms", purpose="transactional", template="receipt",
            language="en", recipient=m.phone or "", body="hi", member_id=m.id,
            store_id=world.store_a.id)])
        policy = messaging.get_policy(s, clock=clock)
        policy.max_attempts = 1
    with db.write() as s:
        messaging.claim_due(s, clock=clock)
        messaging.record_result(s, clock=clock, message_id=mid,
                                result=SendResult.retry("x", "503"))
    return str(mid)


def test_dead_letters_are_listed_and_resent_by_managers_of_the_store(
        client: TestClient, db: Database, clock: FixedClock, world: World) -> None:
    mid = _dead_letter(db, clock, world)
    csrf = login(client, "manager-b")
    assert client.get(f"/api/v1/messages/{mid}").status_code == 403
    client.post("/api/v1/session/logout", headers={"X-CSRF-Token": csrf})
    csrf = login(client, "manager-a")
    dead = client.get("/api/v1/messages", params={"status": "dead"}).json()
    assert [m["id"] for m in dead] == [mid]
    assert "****" in dead[0]["recipient"]  # managers see masked numbers
    detail = client.get(f"/api/v1/messages/{mid}").json()
    assert [h["status"] for h in detail["history"]] == ["dead"]
    r = client.post(f"/api/v1/messages/{mid}/resend", headers={"X-CSRF-Token": csrf})
    assert r.status_code == 200 and r.json()["status"] == "queued"
    again = client.post(f"/api/v1/messages/{mid}/resend", headers={"X-CSRF-Token": csrf})
    assert again.status_code == 422 and again.json()["errors"][0]["field"] == "message_id"
    assert client.get("/api/v1/messages/summary").json() == {"queued": 1}


def test_cashiers_and_pos_keys_cannot_read_messages(client: TestClient, world: World) -> None:
    assert client.get("/api/v1/messages", headers=key_headers(world.key_a)).status_code == 403
    login(client, "cashier-a")
    assert client.get("/api/v1/messages").status_code == 403


def test_webhook_endpoint_secret_is_shown_once(client: TestClient, world: World) -> None:
    csrf = login(client, "owner")
    created = client.post("/api/v1/webhooks/endpoints", headers={"X-CSRF-Token": csrf},
                          json={"url": "https://pos.example.com/hooks",
                                "event_types": ["sale.completed"]})
    assert created.status_code == 201
    assert created.json()["secret"].startswith("whsec_")
    listed = client.get("/api/v1/webhooks/endpoints").json()
    assert listed[0]["secret"] is None
    bad = client.post("/api/v1/webhooks/endpoints", headers={"X-CSRF-Token": csrf},
                      json={"url": "not a url"})
    assert bad.status_code == 422 and "url" in bad.text


def test_policy_is_changed_by_owners_only(client: TestClient, world: World) -> None:
    csrf = login(client, "manager-a")
    assert client.get("/api/v1/messaging/policy").json()["quiet_start"] == "21:00"
    denied = client.patch("/api/v1/messaging/policy", headers={"X-CSRF-Token": csrf},
                          json={"weekly_cap": 1})
    assert denied.status_code == 403
    client.post("/api/v1/session/logout", headers={"X-CSRF-Token": csrf})
    csrf = login(client, "owner")
    ok = client.patch("/api/v1/messaging/policy", headers={"X-CSRF-Token": csrf},
                      json={"weekly_cap": 1, "quiet_start": "22:00"})
    assert ok.json()["weekly_cap"] == 1 and ok.json()["quiet_start"] == "22:00"
    bad = client.patch("/api/v1/messaging/policy", headers={"X-CSRF-Token": csrf},
                       json={"weekly_cap": -1})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "weekly_cap"
    assert ok.json()["log_retention_days"] == 730
    kept = client.patch("/api/v1/messaging/policy", headers={"X-CSRF-Token": csrf},
                        json={"log_retention_days": 365})
    assert kept.json()["log_retention_days"] == 365
    short = client.patch("/api/v1/messaging/policy", headers={"X-CSRF-Token": csrf},
                         json={"log_retention_days": 7})
    assert short.status_code == 422
    assert short.json()["errors"][0]["field"] == "log_retention_days"
    assert client.get("/api/v1/messaging/policy").json()["log_retention_days"] == 365


def test_care_rules_brand_wide_and_per_store(client: TestClient, world: World) -> None:
    csrf = login(client, "manager-a")
    rules = {r["code"]: r for r in client.get("/api/v1/care/rules").json()}
    assert rules["receipt"]["enabled"] and rules["winback"]["config"]["days_away"] == 90
    brand = client.put("/api/v1/care/rules/winback", headers={"X-CSRF-Token": csrf},
                       json={"enabled": True, "config": {"days_away": 60}})
    assert brand.status_code == 403  # brand-wide settings are the owner's
    mine = client.put("/api/v1/care/rules/winback", headers={"X-CSRF-Token": csrf},
                      json={"enabled": True, "config": {"days_away": 60},
                            "store_id": str(world.store_a.id)})
    assert mine.status_code == 200 and mine.json()["config"]["days_away"] == 60
    theirs = client.put("/api/v1/care/rules/winback", headers={"X-CSRF-Token": csrf},
                        json={"enabled": False, "store_id": str(world.store_b.id)})
    assert theirs.status_code == 403
    per_store = client.get("/api/v1/care/rules", params={"store_id": str(world.store_b.id)})
    assert {r["code"]: r for r in per_store.json()}["winback"]["config"]["days_away"] == 90
    bad = client.put("/api/v1/care/rules/winback", headers={"X-CSRF-Token": csrf},
                     json={"enabled": True, "config": {"days_away": "soon"},
                           "store_id": str(world.store_a.id)})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "config.days_away"


def test_template_preview_in_both_languages(client: TestClient, world: World) -> None:
    login(client, "manager-a")
    zh = client.get("/api/v1/messaging/templates/birthday/preview",
                    params={"language": "zh_CN"}).json()
    assert zh["sms_text"].startswith("【") and "退订回T" in zh["sms_text"]
    assert zh["sms_encoding"] == "ucs2" or zh["sms_encoding"].lower().startswith("ucs")
    en = client.get("/api/v1/messaging/templates/receipt/preview",
                    params={"language": "en"}).json()
    assert en["purpose"] == "transactional" and "STOP" not in en["sms_text"]
    assert client.get("/api/v1/messaging/templates/nope/preview").status_code == 404


@pytest.fixture
def token_settings(settings: Settings) -> Settings:
    settings.callback_token = SecretStr("cb-secret")
    return settings


def test_gateway_reply_td_withdraws_consent(client: TestClient, db: Database,
                                            clock: FixedClock, world: World,
                                            token_settings: Settings) -> None:
    with db.write() as s:
        m = make_member(s, clock, world.store_a, sms_consent=True)
        phone, member_id = m.phone, m.id
    refused = client.post("/api/v1/messaging/providers/gateway/inbound",
                          params={"token": "wrong"}, json={"from": phone, "text": "TD"})
    assert refused.status_code == 403
    ok = client.post("/api/v1/messaging/providers/gateway/inbound",
                     params={"token": "cb-secret"}, json={"from": phone, "text": "TD"})
    assert ok.status_code == 204
    with db.read() as s:
        assert members.get_member(s, member_id=member_id).sms_consent is False


def test_twilio_status_callback_is_verified_and_marks_delivery(
        client: TestClient, db: Database, clock: FixedClock, world: World,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATRON_TWILIO_AUTH_TOKEN", "tw-token")
    with db.write() as s:
        m = make_member(s, clock, world.store_a)
        [mid] = messaging.enqueue(s, clock=clock, messages=[messaging.Outgoing(
            dedupe_key="tw:1", channel="sms", purpose="transactional", template="receipt",
            language="en", recipient=m.phone or "", body="hi", member_id=m.id)])
        messaging.claim_due(s, clock=clock)
        messaging.record_result(s, clock=clock, message_id=mid,
                                result=SendResult.accepted("twilio", "SM123"))
    url = "http://testserver/api/v1/messaging/providers/twilio/status"
    form = {"MessageSid": "SM123", "MessageStatus": "delivered", "To": m.phone or ""}
    forged = client.post(url, data=form, headers={"X-Twilio-Signature": "bad"})
    assert forged.status_code == 403
    signature = twilio.compute_signature("tw-token", url, form)
    ok = client.post(url, data=form, headers={"X-Twilio-Signature": signature})
    assert ok.status_code == 204
    with db.read() as s:
        row = s.get(messaging.Message, mid)
        assert row is not None and row.status == "delivered"


def test_one_click_unsubscribe(client: TestClient, db: Database, clock: FixedClock,
                               world: World, settings: Settings) -> None:
    with db.write() as s:
        m = make_member(s, clock, world.store_a, email="u@example.com", email_consent=True)
        member_id = m.id
        messaging.enqueue(s, clock=clock, messages=[messaging.Outgoing(
            dedupe_key="mk:1", channel="email", purpose="marketing", template="campaign",
            language="en", recipient="u@example.com", body="sale!", member_id=m.id,
            not_before=clock.now() + timedelta(days=1))])
    token = messaging.unsubscribe_token(settings.secret_key.get_secret_value(), member_id,
                                        "email")
    assert client.post(f"/api/v1/public/unsubscribe/{token}x").status_code == 422
    assert client.post(f"/api/v1/public/unsubscribe/{token}").status_code == 204
    with db.read() as s:
        assert members.get_member(s, member_id=member_id).email_consent is False
        assert messaging.status_counts(s) == {"suppressed": 1}
