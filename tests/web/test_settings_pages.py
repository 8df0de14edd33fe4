"""The programme settings pages: owners change points rules, tiers, plans, bonus rules and
messaging; managers look and manage coupon templates; bad input names the field and
changes nothing; every page reads in both languages."""

from __future__ import annotations

from datetime import time

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from patron.auth import service as auth
from patron.auth.models import AuditEntry
from patron.core.clock import FixedClock
from patron.core.db import Database
from patron.loyalty import membership
from patron.loyalty import service as loyalty
from patron.loyalty.models import LoyaltyProgram, MembershipPlan, Tier
from patron.messaging import service as messaging
from patron.messaging.models import Message, MessagingPolicy
from patron.offers import service as offers
from patron.offers.models import CouponTemplate
from patron.offers.schemas import CouponTemplateCreate
from patron.wallet.models import BonusRule
from patron.web import i18n
from tests.factories import World, make_product
from tests.web.helpers import web_login

PAGES = ("/settings", "/settings/points", "/settings/tiers", "/settings/plans",
         "/settings/coupons", "/settings/wallet", "/settings/messaging")


def _count(db: Database, model: type) -> int:
    with db.read() as s:
        return int(s.scalar(select(func.count()).select_from(model)) or 0)


def _tiers(db: Database) -> list[tuple[str, int, int]]:
    with db.read() as s:
        return [(t.code, t.rank, t.threshold)
                for t in s.scalars(select(Tier).order_by(Tier.rank))]


def _seed_tiers(db: Database, clock: FixedClock, world: World) -> None:
    with db.write() as s:
        owner = auth.principal_for_user(world.owner)
        loyalty.create_tier(s, clock=clock, actor=owner, code="silver", name="Silver", rank=0,
                            threshold=0)
        loyalty.create_tier(s, clock=clock, actor=owner, code="gold", name="Gold", rank=2,
                            threshold=500_000, discount_pct=5)


@pytest.mark.parametrize("language", ["en", "zh_CN"])
def test_every_settings_page_renders_for_owner_and_manager(
        client: TestClient, db: Database, clock: FixedClock, world: World,
        language: str) -> None:
    _seed_tiers(db, clock, world)
    for user in ("owner", "manager-a"):
        web_login(client, user)
        client.cookies.set(i18n.LANG_COOKIE, language)
        for path in PAGES:
            r = client.get(path)
            assert r.status_code == 200, (user, path, r.text[:500])
            assert ("设置" if language == "zh_CN" else "Settings") in r.text
    tiers = client.get("/settings/tiers").text
    assert "Gold" in tiers and "Silver" in tiers
    assert ("¥5,000.00" in tiers) or ("5,000.00" in tiers)


def test_settings_are_not_for_cashiers(client: TestClient, world: World) -> None:
    web_login(client, "cashier-a")
    assert "/settings" not in client.get("/").text
    for path in PAGES:
        assert client.get(path).status_code == 403, path


def test_owner_changes_points_rules_and_bad_input_changes_nothing(
        client: TestClient, db: Database, world: World) -> None:
    csrf = web_login(client, "owner")
    form = {"csrf_token": csrf, "points_per_major": "2", "rounding": "half_up",
            "pending_days": "7", "expiry_policy": "months", "expiry_months": "24",
            "expiring_notice_days": "30", "points_per_major_redeemed": "100",
            "birthday_multiplier_pct": "200", "tier_basis": "spend",
            "downgrade_grace_days": "30"}
    r = client.post("/settings/points", data=form, follow_redirects=False)
    assert r.status_code == 303, r.text
    with db.read() as s:
        p = s.get(LoyaltyProgram, 1)
        assert p is not None
        assert (p.points_per_major, p.rounding, p.pending_days, p.expiry_months,
                p.birthday_multiplier_pct) == (2, "half_up", 7, 24, 200)
        audits = s.scalar(select(func.count()).select_from(AuditEntry).where(
            AuditEntry.action == "loyalty.program_updated"))
        assert audits == 1
    bad = client.post("/settings/points", data=form | {"points_per_major": "-1",
                                                        "pending_days": "7"})
    assert bad.status_code == 422
    assert 'id="e-points_per_major"' in bad.text and "Must be at least 0" in bad.text
    word = client.post("/settings/points", data=form | {"expiry_months": "soon",
                                                         "points_per_major": "9"})
    assert word.status_code == 422 and 'id="e-expiry_months"' in word.text
    with db.read() as s:
        p = s.get(LoyaltyProgram, 1)
        assert p is not None and p.points_per_major == 2


def test_manager_may_not_change_points_rules(client: TestClient, db: Database,
                                             world: World) -> None:
    csrf = web_login(client, "manager-a")
    r = client.post("/settings/points", data={
        "csrf_token": csrf, "points_per_major": "5", "rounding": "floor", "pending_days": "0",
        "expiry_policy": "never", "expiry_months": "24", "expiring_notice_days": "30",
        "points_per_major_redeemed": "100", "birthday_multiplier_pct": "100",
        "tier_basis": "spend", "downgrade_grace_days": "0"})
    assert r.status_code == 403 and "This needs the owner role" in r.text
    with db.read() as s:
        p = s.get(LoyaltyProgram, 1)
        assert p is None or p.points_per_major != 5


def test_owner_creates_and_edits_tiers_in_order(client: TestClient, db: Database,
                                                clock: FixedClock, world: World) -> None:
    _seed_tiers(db, clock, world)
    csrf = web_login(client, "owner")
    tier = {"csrf_token": csrf, "code": "silver-plus", "name": "Silver+", "rank": "1",
            "threshold": "1000.00", "points_multiplier_pct": "120", "discount_pct": "2"}
    out_of_order = client.post("/settings/tiers", data=tier | {"threshold": "6000"})
    assert out_of_order.status_code == 422
    assert 'id="e-threshold"' in out_of_order.text
    assert "below every higher tier" in out_of_order.text
    too_much = client.post("/settings/tiers", data=tier | {"discount_pct": "101"})
    assert too_much.status_code == 422 and 'id="e-discount_pct"' in too_much.text
    assert "Must be at most 100" in too_much.text
    fen = client.post("/settings/tiers", data=tier | {"threshold": "1000.001"})
    assert fen.status_code == 422 and 'id="e-threshold"' in fen.text
    assert len(_tiers(db)) == 2
    ok = client.post("/settings/tiers", data=tier, follow_redirects=False)
    assert ok.status_code == 303, ok.text
    assert _tiers(db) == [("silver", 0, 0), ("silver-plus", 1, 100_000), ("gold", 2, 500_000)]
    dup = client.post("/settings/tiers", data=tier | {"rank": "3", "threshold": "9000"})
    assert dup.status_code == 422 and 'id="e-code"' in dup.text
    with db.read() as s:
        gold = s.scalar(select(Tier).where(Tier.code == "gold"))
        assert gold is not None
        gold_id = gold.id
    edit = client.get(f"/settings/tiers/{gold_id}")
    assert 'value="5000.00"' in edit.text
    below = client.post(f"/settings/tiers/{gold_id}", data={
        "csrf_token": csrf, "name": "Gold", "threshold": "500", "points_multiplier_pct": "150",
        "discount_pct": "5"})
    assert below.status_code == 422 and "above every lower tier" in below.text
    saved = client.post(f"/settings/tiers/{gold_id}", data={
        "csrf_token": csrf, "name": "Gold 金卡", "threshold": "8000",
        "points_multiplier_pct": "150", "discount_pct": "8"}, follow_redirects=False)
    assert saved.status_code == 303
    with db.read() as s:
        gold = s.get(Tier, gold_id)
        assert gold is not None
        assert (gold.name, gold.threshold, gold.points_multiplier_pct, gold.discount_pct) == \
            ("Gold 金卡", 800_000, 150, 8)
    client.cookies.set(i18n.LANG_COOKIE, "zh_CN")
    zh = client.post("/settings/tiers", data=tier | {"code": "x", "rank": "5",
                                                      "threshold": "100"})
    assert zh.status_code == 422 and "门槛必须高于所有较低等级的门槛" in zh.text


def test_manager_cannot_create_a_tier(client: TestClient, db: Database,
                                      world: World) -> None:
    csrf = web_login(client, "manager-a")
    assert "Add a tier" not in client.get("/settings/tiers").text
    r = client.post("/settings/tiers", data={
        "csrf_token": csrf, "code": "vip", "name": "VIP", "rank": "0", "threshold": "0",
        "points_multiplier_pct": "100", "discount_pct": "0"})
    assert r.status_code == 403 and "This needs the owner role" in r.text
    assert _tiers(db) == []


def test_owner_creates_a_paid_membership_plan(client: TestClient, db: Database,
                                              clock: FixedClock, world: World) -> None:
    _seed_tiers(db, clock, world)
    with db.write() as s:
        make_product(s, price_minor=19_900, sku="PLUS-1Y")
    csrf = web_login(client, "owner")
    plan = {"csrf_token": csrf, "code": "plus", "name": "Plus", "sku": "PLUS-1Y",
            "duration_days": "365", "tier_id": "", "benefits": "Free delivery"}
    unknown = client.post("/settings/plans", data=plan | {"sku": "NOPE"})
    assert unknown.status_code == 422 and 'id="e-sku"' in unknown.text
    zero = client.post("/settings/plans", data=plan | {"duration_days": "0"})
    assert zero.status_code == 422 and 'id="e-duration_days"' in zero.text
    assert _count(db, MembershipPlan) == 0
    ok = client.post("/settings/plans", data=plan, follow_redirects=False)
    assert ok.status_code == 303, ok.text
    with db.read() as s:
        plans = membership.list_plans(s)
        assert [(p.code, p.duration_days, p.benefits) for p in plans] == \
            [("plus", 365, "Free delivery")]
    listed = client.get("/settings/plans").text
    assert "PLUS-1Y" in listed and "199.00" in listed


def test_coupon_templates_by_manager(client: TestClient, db: Database, clock: FixedClock,
                                     world: World) -> None:
    csrf = web_login(client, "manager-a")
    base = {"csrf_token": csrf, "name": "¥10 off ¥100", "kind": "fixed", "amount": "10",
            "min_spend": "100", "scope": "all", "validity": "days", "valid_days": "30"}
    bad = client.post("/settings/coupons", data=base | {"kind": "percent", "percent": "150"})
    assert bad.status_code == 422 and 'id="e-percent"' in bad.text
    assert "Must be at most 100" in bad.text
    neg = client.post("/settings/coupons", data=base | {"amount": "-5"})
    assert neg.status_code == 422 and 'id="e-amount"' in neg.text
    assert _count(db, CouponTemplate) == 0
    ok = client.post("/settings/coupons", data=base, follow_redirects=False)
    assert ok.status_code == 303, ok.text
    with db.read() as s:
        t = s.scalar(select(CouponTemplate))
        assert t is not None
        assert (t.kind, t.amount_minor, t.min_spend_minor, t.valid_days) == \
            ("fixed", 1_000, 10_000, 30)
        template_id = t.id
    assert "¥10 off ¥100" in client.get("/settings/coupons").text
    window = client.post(f"/settings/coupons/{template_id}", data=base | {
        "validity": "fixed", "starts_on": "2026-12-01", "ends_on": "2026-12-31",
        "active": "on"}, follow_redirects=False)
    assert window.status_code == 303, window.text
    with db.read() as s:
        t = s.get(CouponTemplate, template_id)
        assert t is not None and t.validity == "fixed" and t.ends_at is not None
    # once issued, the discount terms are frozen: the form says so and nothing changes
    with db.write() as s:
        offers.issue_coupons(s, clock=clock, actor=None, template_id=template_id,
                             member_id=None)
    frozen = client.post(f"/settings/coupons/{template_id}", data=base | {
        "amount": "20", "validity": "fixed", "starts_on": "2026-12-01",
        "ends_on": "2026-12-31", "active": "on"})
    assert frozen.status_code == 422 and 'id="e-amount"' in frozen.text
    with db.read() as s:
        t = s.get(CouponTemplate, template_id)
        assert t is not None and t.amount_minor == 1_000
    stop = client.post(f"/settings/coupons/{template_id}", data=base | {
        "validity": "fixed", "starts_on": "2026-12-01", "ends_on": "2026-12-31"},
        follow_redirects=False)
    assert stop.status_code == 303
    with db.read() as s:
        t = s.get(CouponTemplate, template_id)
        assert t is not None and t.active is False


def test_cashier_cannot_create_a_coupon_template(client: TestClient, db: Database,
                                                 world: World) -> None:  # refused at the door
    csrf = web_login(client, "cashier-a")
    r = client.post("/settings/coupons", data={
        "csrf_token": csrf, "name": "Free", "kind": "percent", "percent": "100",
        "scope": "all", "validity": "days", "valid_days": "1"})
    assert r.status_code == 403
    assert _count(db, CouponTemplate) == 0


def test_owner_manages_top_up_bonus_rules(client: TestClient, db: Database,
                                          world: World) -> None:
    csrf = web_login(client, "owner")
    rule = {"csrf_token": csrf, "name": "Top up 500 get 50", "min_topup": "500",
            "bonus": "50"}
    too_big = client.post("/settings/wallet", data=rule | {"bonus": "600"})
    assert too_big.status_code == 422 and 'id="e-bonus"' in too_big.text
    neg = client.post("/settings/wallet", data=rule | {"min_topup": "-1"})
    assert neg.status_code == 422 and 'id="e-min_topup"' in neg.text
    assert _count(db, BonusRule) == 0
    ok = client.post("/settings/wallet", data=rule, follow_redirects=False)
    assert ok.status_code == 303
    with db.read() as s:
        r = s.scalar(select(BonusRule))
        assert r is not None and (r.min_topup_minor, r.bonus_minor, r.active) == \
            (50_000, 5_000, True)
        rule_id = r.id
    assert "Top up 500 get 50" in client.get("/settings/wallet").text
    stop = client.post(f"/settings/wallet/{rule_id}/active",
                       data={"csrf_token": csrf, "active": "0"}, follow_redirects=False)
    assert stop.status_code == 303
    with db.read() as s:
        r = s.get(BonusRule, rule_id)
        assert r is not None and r.active is False
    mcsrf = web_login(client, "manager-a")
    refused = client.post(f"/settings/wallet/{rule_id}/active",
                          data={"csrf_token": mcsrf, "active": "1"})
    assert refused.status_code == 403 and "This needs the owner role" in refused.text
    with db.read() as s:
        r = s.get(BonusRule, rule_id)
        assert r is not None and r.active is False


def test_owner_sets_quiet_hours_and_cap_and_sends_a_test(
        client: TestClient, db: Database, clock: FixedClock, world: World) -> None:
    csrf = web_login(client, "owner")
    page = client.get("/settings/messaging").text
    assert "log" in page and 'value="21:00"' in page
    assert 'name="log_retention_days"' in page and 'value="730"' in page
    policy = {"csrf_token": csrf, "quiet_start": "22:00", "quiet_end": "08:30",
              "weekly_cap": "2", "max_attempts": "5", "log_retention_days": "365"}
    same = client.post("/settings/messaging", data=policy | {"quiet_end": "22:00"})
    assert same.status_code == 422 and 'id="e-quiet_end"' in same.text
    neg = client.post("/settings/messaging", data=policy | {"weekly_cap": "-1"})
    assert neg.status_code == 422 and 'id="e-weekly_cap"' in neg.text
    clock_time = client.post("/settings/messaging", data=policy | {"quiet_start": "25:00"})
    assert clock_time.status_code == 422 and 'id="e-quiet_start"' in clock_time.text
    short = client.post("/settings/messaging", data=policy | {"log_retention_days": "30"})
    assert short.status_code == 422 and 'id="e-log_retention_days"' in short.text
    assert "between 90 and 3650 days" in short.text
    with db.read() as s:
        default = messaging.get_policy(s, clock=clock)
        assert (default.quiet_start, default.weekly_cap) == (time(21, 0), 3)
    ok = client.post("/settings/messaging", data=policy, follow_redirects=False)
    assert ok.status_code == 303
    with db.read() as s:
        p = s.get(MessagingPolicy, 1)
        assert p is not None
        assert (p.quiet_start, p.quiet_end, p.weekly_cap, p.max_attempts,
                p.log_retention_days) == (time(22, 0), time(8, 30), 2, 5, 365)
    bad_phone = client.post("/settings/messaging/test", data={
        "csrf_token": csrf, "channel": "sms", "recipient": "12"})
    assert bad_phone.status_code == 422 and 'id="e-recipient"' in bad_phone.text
    assert _count(db, Message) == 0
    sent = client.post("/settings/messaging/test", data={
        "csrf_token": csrf, "channel": "sms", "recipient": "139 1234 5678"},
        follow_redirects=False)
    assert sent.status_code == 303
    with db.read() as s:
        m = s.scalar(select(Message))
        assert m is not None
        assert (m.recipient, m.purpose, m.member_id, m.status) == \
            ("+8613912345678", "transactional", None, "queued")
    mcsrf = web_login(client, "manager-a")
    refused = client.post("/settings/messaging", data=policy | {"csrf_token": mcsrf,
                                                                "weekly_cap": "9"})
    assert refused.status_code == 403
    with db.read() as s:
        p = s.get(MessagingPolicy, 1)
        assert p is not None and p.weekly_cap == 2


def test_languages_card_says_the_default_is_a_deployment_setting(
        client: TestClient, world: World) -> None:
    web_login(client, "owner")
    page = client.get("/settings").text
    assert "PATRON_DEFAULT_LANGUAGE" in page and "English" in page


def test_existing_template_seeded_through_service_is_listed(
        client: TestClient, db: Database, clock: FixedClock, world: World) -> None:
    with db.write() as s:
        offers.create_template(s, clock=clock, actor=auth.principal_for_user(world.owner),
                               data=CouponTemplateCreate(name="Birthday 15%", kind="percent",
                                                         percent=15, validity="days",
                                                         valid_days=7))
    web_login(client, "manager-a")
    assert "Birthday 15%" in client.get("/settings/coupons").text


def test_manager_adds_and_stops_a_double_points_day(client: TestClient, db: Database,
                                                    world: World) -> None:
    from patron.loyalty.models import PointsMultiplier

    with db.write() as s:
        make_product(s, price_minor=3_200, sku="COF")
    csrf = web_login(client, "manager-a")
    day = {"csrf_token": csrf, "m_name": "Double points weekend", "m_scope": "all",
           "m_pct": "200", "m_starts_on": "2026-12-05", "m_ends_on": "2026-12-06"}
    neg = client.post("/settings/points/multipliers", data=day | {"m_pct": "-100"})
    assert neg.status_code == 422 and 'id="e-m_pct"' in neg.text
    backwards = client.post("/settings/points/multipliers", data=day | {
        "m_starts_on": "2026-12-07"})
    assert backwards.status_code == 422 and 'id="e-m_ends_on"' in backwards.text
    no_sku = client.post("/settings/points/multipliers", data=day | {
        "m_scope": "product", "m_sku": "NOPE"})
    assert no_sku.status_code == 422 and 'id="e-m_sku"' in no_sku.text
    assert _count(db, PointsMultiplier) == 0
    ok = client.post("/settings/points/multipliers", data=day | {
        "m_scope": "product", "m_sku": "COF"}, follow_redirects=False)
    assert ok.status_code == 303, ok.text
    with db.read() as s:
        m = s.scalar(select(PointsMultiplier))
        assert m is not None and (m.scope, m.pct, m.active) == ("product", 200, True)
        assert m.ends_at is not None and m.starts_at is not None
        multiplier_id = m.id
    assert "Double points weekend" in client.get("/settings/points").text
    stop = client.post(f"/settings/points/multipliers/{multiplier_id}/active",
                       data={"csrf_token": csrf, "active": "0"}, follow_redirects=False)
    assert stop.status_code == 303
    with db.read() as s:
        m = s.get(PointsMultiplier, multiplier_id)
        assert m is not None and m.active is False
