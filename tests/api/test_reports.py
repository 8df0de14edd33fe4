"""Report endpoints over a small history in the test database: figures, scoping, CSV."""

from __future__ import annotations

import csv
import io
import uuid
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient

from patron.analytics import economics
from patron.analytics.economics import EconomicsInputs
from patron.core.clock import FixedClock
from patron.core.db import Database
from tests import factories
from tests.analytics.history import History, at

PERIOD = {"from": "2026-01-01", "to": "2026-11-22"}


@dataclass
class Seeded:
    m1: uuid.UUID
    m2: uuid.UUID
    m3: uuid.UUID


@pytest.fixture
def seeded(db: Database, world: factories.World) -> Seeded:
    a, b = world.store_a.id, world.store_b.id
    with db.engine.begin() as conn:
        h = History(conn)
        m1 = h.member(a, at("2026-01-05"))
        m2 = h.member(b, at("2026-02-01"))
        m3 = h.member(a, at("2025-06-01"))
        h.sale(m1, a, at("2026-01-10"), total=5000)
        h.sale(m1, a, at("2026-03-10"), total=3000)
        h.sale(m2, b, at("2026-02-02"), total=2000)
        h.sale(m3, b, at("2025-06-02"), total=1000)  # before the period
        h.sale(m3, a, at("2026-06-01"), total=1000)
        h.sale(None, a, at("2026-05-01"), total=1000)
    return Seeded(m1, m2, m3)


def get(client: TestClient, user: str, path: str, **params: object) -> Any:
    factories.login(client, user)
    response = client.get(f"/api/v1/reports/{path}", params={**PERIOD, **params})
    assert response.status_code == 200, response.text
    return response.json()


def test_owner_sees_every_store_and_a_manager_their_own(client: TestClient,
                                                         seeded: Seeded) -> None:
    everything = get(client, "owner", "pareto")
    assert (everything["total_revenue_minor"], everything["member_revenue_minor"],
            everything["walk_in_revenue_minor"], everything["purchasing_members"]) == (
        12000, 11000, 1000, 3)
    store_a = get(client, "manager-a", "pareto")  # revenue made at store A
    assert (store_a["total_revenue_minor"], store_a["purchasing_members"]) == (10000, 2)
    repeat_b = get(client, "manager-b", "repeat-rate")  # members of store B: m2
    assert (repeat_b["purchasers"], repeat_b["repeaters"]) == (1, 0)
    repeat_all = get(client, "owner", "repeat-rate")
    assert (repeat_all["purchasers"], repeat_all["repeaters"]) == (3, 1)


def test_a_manager_cannot_ask_for_another_store(client: TestClient, seeded: Seeded,
                                                world: factories.World) -> None:
    factories.login(client, "manager-a")
    response = client.get("/api/v1/reports/pareto",
                          params={**PERIOD, "store_id": str(world.store_b.id)})
    assert response.status_code == 403


def test_cashiers_and_api_keys_get_no_reports(client: TestClient, seeded: Seeded,
                                              world: factories.World) -> None:
    factories.login(client, "cashier-a")
    assert client.get("/api/v1/reports/churn").status_code == 403
    client.cookies.clear()
    assert client.get("/api/v1/reports/churn",
                      headers=factories.key_headers(world.key_a)).status_code == 403


def test_leaky_bucket_json_and_csv(client: TestClient, seeded: Seeded) -> None:
    body = get(client, "owner", "leaky-bucket")
    periods = body["periods"]
    assert isinstance(periods, list) and len(periods) == 11  # January to November
    for p in periods:
        assert p["active_end"] == p["active_start"] + p["new"] + p["reactivated"] - p["lapsed"]
    assert [p["new"] for p in periods][:3] == [1, 1, 0]  # m1 in January, m2 in February
    response = client.get("/api/v1/reports/leaky-bucket", params={**PERIOD, "format": "csv"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert len(rows) == 11
    assert rows[0]["starts_on"] == "2026-01-01" and rows[0]["new"] == "1"


def test_cohorts_and_churn(client: TestClient, seeded: Seeded) -> None:
    cohorts = get(client, "owner", "cohorts")
    got = {c["month"]: (c["size"], c["active"][:3]) for c in cohorts["cohorts"]}
    assert got["2026-01-01"] == (1, [1, 0, 1])
    assert got["2026-02-01"] == (1, [1, 0, 0])
    churn = get(client, "owner", "churn", grain="quarter")
    assert [p["starts_on"] for p in churn["periods"]] == [
        "2026-01-01", "2026-04-01", "2026-07-01", "2026-10-01"]


def test_retention_economics_from_given_inputs(client: TestClient, seeded: Seeded) -> None:
    body = get(client, "owner", "retention-economics", retention_rate=0.8,
               annual_margin_minor=10000, acquisition_cost_minor=15000,
               purchases_per_year=4, retention_cost_minor=3000)
    expected = economics.project(EconomicsInputs(
        retention_rate=0.8, annual_margin_minor=10000, acquisition_cost_minor=15000,
        purchases_per_year=4, retention_cost_minor=3000))
    result = body["economics"]
    assert body["measured"] is None
    assert result["uplift_5_points_pct"] == pytest.approx(
        expected.uplift_5_points_pct)
    assert result["acquisition_to_retention_ratio"] == 5.0


def test_retention_economics_measures_what_is_not_given(client: TestClient,
                                                        seeded: Seeded) -> None:
    body = get(client, "owner", "retention-economics", margin_pct=40)
    measured = body["measured"]
    # the year before last: m3 alone, who bought again last year
    assert measured["retention"]["rate"] == 1.0
    assert measured["revenue_per_member_year_minor"] == 3667
    assert body["economics"]["inputs"]["annual_margin_minor"] == 1467
    factories.login(client, "owner")
    missing = client.get("/api/v1/reports/retention-economics", params=PERIOD)
    assert missing.status_code == 422
    assert "margin_pct" in missing.text


def test_tier_migration_counts_moves_between_the_periods_ends(
        client: TestClient, db: Database, seeded: Seeded) -> None:
    with db.engine.begin() as conn:
        h = History(conn)
        for code in ("silver", "gold"):
            h.tier_id(code)
        h.tier(seeded.m3, "silver", at("2025-07-01"))  # silver all year
        h.tier(seeded.m1, "silver", at("2026-01-06"))  # joined in the period
        h.tier(seeded.m1, "gold", at("2026-03-11"), from_code="silver")
        h.tier(seeded.m2, "silver", at("2026-02-03"))
    body = get(client, "owner", "tier-migration")
    flows = {(f["from_tier"], f["to_tier"]): f["members"] for f in body["flows"]}
    assert flows == {("silver", "silver"): 1, (None, "gold"): 1, (None, "silver"): 1}
    assert body["tiers"][:2] == ["silver", "gold"]
    assert body["matrix"][:2] == [[1, 0], [0, 0]]
    store_b = get(client, "manager-b", "tier-migration")
    assert [(f["from_tier"], f["to_tier"], f["members"]) for f in store_b["flows"]] == [
        (None, "silver", 1)]


def test_liabilities_add_up_points_and_stored_value_per_store(
        client: TestClient, db: Database, clock: FixedClock, world: factories.World) -> None:
    from patron.auth import service as auth
    from patron.loyalty import service as loyalty
    from patron.wallet import service as wallet
    from patron.wallet.enums import SpendOrder

    with db.write() as s:
        owner = auth.principal_for_user(world.owner)
        a = factories.make_member(s, clock, world.store_a)
        b = factories.make_member(s, clock, world.store_b)
        loyalty.adjust(s, clock=clock, actor=owner, member_id=a.id, points=2550,
                       reason="welcome", tz="Asia/Shanghai")
        wallet.top_up(s, clock=clock, actor=owner, member_id=a.id, amount_minor=10_000,
                      store_id=world.store_a.id)
        wallet.top_up(s, clock=clock, actor=owner, member_id=b.id, amount_minor=5_000,
                      store_id=world.store_b.id)
        wallet.spend(s, clock=clock, actor=owner, member_id=b.id, amount_minor=1_200,
                     order=SpendOrder.PRINCIPAL_FIRST, store_id=world.store_b.id)
    today = clock.now().astimezone(ZoneInfo("Asia/Shanghai")).date().isoformat()
    factories.login(client, "owner")
    body = client.get("/api/v1/reports/liabilities", params={"to": today}).json()
    # 100 points redeem for 1 yuan: 2,550 points are 25.50 owed
    assert (body["points"]["outstanding_points"], body["points"]["liability_minor"]) \
        == (2550, 2550)
    assert (body["stored_value"]["accounts"], body["stored_value"]["total_minor"]) \
        == (2, 13_800)
    client.cookies.clear()
    factories.login(client, "manager-b")
    store_b = client.get("/api/v1/reports/liabilities", params={"to": today}).json()
    assert store_b["points"]["outstanding_points"] == 0
    assert store_b["stored_value"]["total_minor"] == 3_800
    yesterday = client.get("/api/v1/reports/liabilities").json()  # before any of it
    assert yesterday["stored_value"]["total_minor"] == 0
